"""Code bundles: a function's modules (or the standard library's), compiled to this
interpreter's bytecode, in one buffer with an index; and the importer that runs them.

A bundle is ``BUNDLE_MAGIC``, the interpreter's bytecode magic, the index's length
(u32 big-endian), the marshalled index ``{module: (is_package, filename, code_at,
code_len, src_at, src_len)}`` and the code and sources it points into.

The standard library's bundle is compiled at build time by the runtime itself, in an
instance of its own (``write_stdlib``), and read whole by the instance that is
snapshotted: the compiler's garbage never reaches the snapshot.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import os
import sys
from types import ModuleType
from typing import Any

#: a code bundle: this magic, the interpreter's bytecode magic, the index length, the
#: marshalled index {module: (is_package, filename, code_at, code_len, src_at, src_len)}
#: and the code and sources it points into
BUNDLE_MAGIC = b"NPYB"
#: what a bundle compiled by this interpreter starts with
_BUNDLE_HEAD = BUNDLE_MAGIC + importlib.util.MAGIC_NUMBER
#: standard-library modules a function never imports or that cannot work in wasm
#: (no processes, no threads, no C libraries): left out of the snapshot
_SKIP = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
_SKIP |= {"site-packages", "__pycache__", "venv", "pydoc_data", "__phello__", "pydoc"}
_SKIP |= {"multiprocessing", "concurrent", "ctypes", "curses", "dbm", "sqlite3", "turtle"}
_SKIP |= {"distutils", "msilib", "_pyrepl", "antigravity", "this", "_android_support"}


#: where the build puts the standard library's bundle (``write_stdlib``) for the
#: snapshotted instance to read
STDLIB_BUNDLE = "/sdk/stdlib.bundle"


class Importer(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from a bundle's index, with their sources for tracebacks."""

    def __init__(self, index: dict[str, tuple[Any, ...]], data: memoryview | bytes) -> None:
        self.index = index
        self.data = data

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        entry = self.index.get(fullname)
        if entry is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=entry[1], is_package=entry[0])
        spec.has_location = True
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        _, filename, at, n, _, _ = self.index[module.__name__]
        module.__file__ = filename
        code = self.data[at : at + n]
        exec(marshal.loads(code), module.__dict__)

    def load(self, name: str) -> ModuleType:
        """Import ``name``, a top-level module, straight from this bundle: what
        ``import`` would do, without the import system's general machinery (in a
        fresh instance each of its steps touches memory for the first time)."""
        entry = self.index.get(name)
        if entry is None:
            raise ImportError(f"the function has no module {name!r}")
        if entry[0]:  # a package: __path__ and the rest, as import sets them
            module = importlib.util.module_from_spec(self.find_spec(name))
        else:
            module = ModuleType(name)
            module.__spec__ = spec = importlib.machinery.ModuleSpec(name, self, origin=entry[1])
            spec.has_location = True
            module.__loader__ = self
            module.__package__ = ""
        sys.modules[name] = module
        self.exec_module(module)
        return module

    def get_source(self, fullname: str) -> str | None:
        entry = self.index.get(fullname)
        if entry is None:
            return None
        return bytes(self.data[entry[4] : entry[4] + entry[5]]).decode("utf-8", "replace")


def pack(modules: dict[str, tuple[bool, str, bytes, bytes]]) -> bytes:
    index: dict[str, tuple[Any, ...]] = {}
    chunks: list[bytes] = []
    at = 0
    for name, (is_pkg, filename, code, source) in sorted(modules.items()):
        index[name] = (is_pkg, filename, at, len(code), at + len(code), len(source))
        chunks += [code, source]
        at += len(code) + len(source)
    head = marshal.dumps(index)
    magic = importlib.util.MAGIC_NUMBER
    return BUNDLE_MAGIC + magic + len(head).to_bytes(4, "big") + head + b"".join(chunks)


def open_bundle(bundle: bytes | memoryview) -> Importer:
    data = memoryview(bundle)
    if data[:8] != _BUNDLE_HEAD:
        raise ImportError("the code bundle was compiled for another runtime: redeploy it")
    n = int.from_bytes(data[8:12], "big")
    return Importer(marshal.loads(data[12 : 12 + n]), data[12 + n :])


def compile_tree(root: str) -> bytes:
    """The bytecode of every pure-Python module under ``root`` (the standard library)."""
    modules: dict[str, tuple[bool, str, bytes, bytes]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and "-" not in d)
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, ".") + "."
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            stem = file[:-3]
            is_pkg = stem == "__init__"
            name = prefix[:-1] if is_pkg else prefix + stem
            if not name or name in sys.modules:
                continue
            path = os.path.join(folder, file)
            try:
                with open(path, "rb") as f:
                    source = f.read()
                code = compile(source, path, "exec", dont_inherit=True)
            except (SyntaxError, OSError, ValueError):
                continue
            modules[name] = (is_pkg, path, marshal.dumps(code), b"")
    return pack(modules)


def _stdlib_dir() -> str:
    # the build mounts the standard library at build time only: find the sys.path
    # entry that holds it
    for entry in sys.path:
        if os.path.isfile(os.path.join(entry, "os.py")):
            return entry
    raise ImportError(f"the standard library is not on sys.path: {sys.path}")


def write_stdlib() -> None:
    """The build's first step: the standard library's bundle, to ``STDLIB_BUNDLE``."""
    with open(STDLIB_BUNDLE, "wb") as f:
        f.write(compile_tree(_stdlib_dir()))


def read_stdlib() -> Importer:
    """The build's second step: the bundle ``write_stdlib`` left, read whole."""
    with open(STDLIB_BUNDLE, "rb") as f:
        return open_bundle(f.read())
