"""The shared Python runtime: one component for every Python function on a host.

componentize-py snapshots this module's interpreter once (with the standard library
modules functions use most already imported, and the bytecode of the rest of the
pure-Python standard library at hand); the host compiles that component once per
engine and hands each invocation the function's own code bundle. ``handle`` installs
the bundle as an importer, imports ``handler`` and calls it: every invocation runs in
a fresh instance of the snapshot, so nothing of one call or one function reaches
another.

``compile`` runs once per function at deploy or load time: it turns the function's
sources into this interpreter's bytecode (a bundle), or says which file does not
compile.
"""

from __future__ import annotations

import array
import dataclasses
import gc
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import os
import random
import sys
import traceback
import zlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import msgpack
import wit_world

from nimbus import _pack, log
from nimbus.events import Event, decode, from_map
from nimbus.response import to_map

#: imported into the snapshot, so a function importing them pays nothing
PRELOADED = (
    "abc array base64 binascii bisect calendar collections collections.abc contextlib "
    "copy csv dataclasses datetime decimal difflib enum fnmatch fractions functools "
    "hashlib heapq hmac html html.parser http io ipaddress itertools json keyword "
    "logging math numbers operator pprint random re secrets shlex statistics string "
    "struct textwrap time traceback types typing unicodedata urllib.parse uuid warnings "
    "weakref zlib zoneinfo email.utils"
).split()

#: error kinds the host turns into FunctionCrashed / FunctionOutOfMemory (a function
#: that *returns* {"error": …} fails with FunctionFailed instead)
CRASHED = "nimbus.UnhandledException"
OUT_OF_MEMORY = "nimbus.MemoryError"
#: an event starting with this byte is the envelope marshalled by the host (which has
#: already decoded it; marshal is the interpreter's own C codec, pure-Python msgpack
#: took a quarter of a small call); any other event is the envelope in msgpack
MARSHALLED_EVENT = b"\0"
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


def _preload() -> list[str]:
    missing = []
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


class _Importer(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from a bundle's index, with their sources for tracebacks."""

    def __init__(
        self, index: dict[str, tuple[Any, ...]], data: memoryview | bytes, packed: bool
    ) -> None:
        self.index = index
        self.data = data
        self.packed = packed  # code is zlib-compressed (the standard library's)

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        entry = self.index.get(fullname)
        if entry is None:
            return None
        spec = importlib.machinery.ModuleSpec(
            fullname, self, origin=entry[1], is_package=entry[0]
        )
        spec.has_location = True
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        _, filename, at, n, _, _ = self.index[module.__name__]
        module.__file__ = filename
        code = self.data[at : at + n]
        exec(marshal.loads(zlib.decompress(code) if self.packed else code), module.__dict__)  # noqa: S102

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


def _pack_bundle(modules: dict[str, tuple[bool, str, bytes, bytes]], packed: bool) -> bytes:
    index: dict[str, tuple[Any, ...]] = {}
    chunks: list[bytes] = []
    at = 0
    for name, (is_pkg, filename, code, source) in sorted(modules.items()):
        index[name] = (is_pkg, filename, at, len(code), at + len(code), len(source))
        chunks += [code, source]
        at += len(code) + len(source)
    head = marshal.dumps(index)
    magic = importlib.util.MAGIC_NUMBER
    flags = b"Z" if packed else b"-"
    return BUNDLE_MAGIC + magic + flags + len(head).to_bytes(4, "big") + head + b"".join(chunks)


def _open_bundle(bundle: bytes) -> _Importer:
    if not bundle.startswith(_BUNDLE_HEAD):
        raise ImportError("the code bundle was compiled for another runtime: redeploy it")
    n = int.from_bytes(bundle[9:13], "big")
    data = memoryview(bundle)
    return _Importer(marshal.loads(data[13 : 13 + n]), data[13 + n :], bundle[8:9] == b"Z")


def _compile_tree(root: str) -> bytes:
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
            modules[name] = (is_pkg, path, zlib.compress(marshal.dumps(code), 9), b"")
    return _pack_bundle(modules, packed=True)


def _stdlib_dir() -> str:
    # componentize-py mounts the standard library at build time only (and reports
    # os.__file__ under another name): find the sys.path entry that holds it
    for entry in sys.path:
        if os.path.isfile(os.path.join(entry, "os.py")):
            return entry
    raise ImportError(f"the standard library is not on sys.path: {sys.path}")


MISSING = _preload()
#: the rest of the standard library, imported on demand from the snapshot
STDLIB = _open_bundle(_compile_tree(_stdlib_dir()))
sys.meta_path.append(STDLIB)


def compile_sources(sources: bytes) -> bytes:
    """msgpack {module: [is_package, filename, source]} -> msgpack [error, bundle]."""
    modules: dict[str, tuple[bool, str, bytes, bytes]] = {}
    try:
        for name, (is_pkg, filename, source) in msgpack.unpackb(sources, raw=False).items():
            code = compile(source, filename, "exec", dont_inherit=True)
            if name == "handler" and "handle" not in code.co_names:
                return msgpack.packb([f"{filename} defines no handle(event) function", b""])
            modules[name] = (bool(is_pkg), filename, marshal.dumps(code), source)
    except SyntaxError as e:
        where = f"{e.filename}:{e.lineno}" if e.lineno else str(e.filename)
        return msgpack.packb([f"{where}: {e.msg}", b""])
    except Exception as e:
        return msgpack.packb([f"cannot compile the function: {type(e).__name__}: {e}", b""])
    return msgpack.packb([None, _pack_bundle(modules, packed=False)], use_bin_type=True)


def _install(code: bytes) -> _Importer:
    importer = _open_bundle(code)
    for name in importer.index:  # the function's own modules shadow preloaded ones
        if name in sys.modules and name.partition(".")[0] != "nimbus":
            del sys.modules[name]
    sys.meta_path.insert(0, importer)
    # the snapshot's seed is the same in every instance; 256 fresh bits replace it
    # (random.seed() would draw 2.5 KB from the host, twice the time)
    random.seed(int.from_bytes(os.urandom(32)))
    return importer


class WitWorld(wit_world.WitWorld):
    def compile(self, sources: str) -> str:
        # bytes carried as characters U+0000 to U+00FF (see the world in nimbus.wit)
        return compile_sources(sources.encode("latin-1")).decode("latin-1")

    def warm(self) -> None:
        warm_up()

    def handle(self, code: str, event: str) -> str:
        # bytes carried as characters U+0000 to U+00FF (see the world in nimbus.wit)
        return run(code.encode("latin-1"), event.encode("latin-1")).decode("latin-1")


def run(code: bytes, event: bytes) -> bytes:
    """One invocation: the bundle's ``handler.handle`` applied to ``event``."""
    try:
        handler = _install(code).load("handler")
        result = to_map(handler.handle(_event(event)))
    except MemoryError:
        result = {"error": {"kind": OUT_OF_MEMORY, "message": "MemoryError"}}
    except BaseException as e:  # the function crashed: its traceback goes to the log
        log.error("".join(traceback.format_exception(e)).strip())
        result = {"error": {"kind": CRASHED, "message": f"{type(e).__name__}: {e}"}}
    try:
        return _pack.packb(result)
    except Exception:  # a type only msgpack converts (or refuses): it decides
        pass
    try:
        return msgpack.packb(result, use_bin_type=True, default=_default)
    except Exception as e:  # a result msgpack cannot carry
        log.error(f"the function returned what cannot be sent: {e}")
        error = {"kind": CRASHED, "message": f"unsendable result: {e}"}
        return msgpack.packb({"error": error})


def _event(event: bytes) -> Event:
    if event[:1] == MARSHALLED_EVENT:
        return from_map(marshal.loads(event[1:]))
    return decode(event)


def _default(value: object) -> object:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot send a {type(value).__name__} to the host")


def _warm_up_bundle() -> tuple[bytes, bytes]:
    """The code and event of the warm-up invocation: a handler doing what most do,
    and an event as the host hands it in (marshalled)."""
    source = b"import nimbus\ndef handle(event):\n    return nimbus.Response.text('hi')\n"
    error, code = msgpack.unpackb(
        compile_sources(msgpack.packb({"handler": [False, "warm.py", source]}))
    )
    if error:
        raise RuntimeError(f"warm-up failed: {error}")
    envelope = {"kind": "http", "id": "", "request_id": "", "function": "", "deadline_ms": 0}
    envelope |= {"env": {}, "method": "GET", "path": "/", "params": {}, "query": {}}
    envelope |= {"raw_query": "", "headers": {"host": "localhost"}, "body": b""}
    return code, MARSHALLED_EVENT + marshal.dumps(envelope)


#: compiled once, in the snapshot
WARM_UP = _warm_up_bundle()


def warm_up() -> None:
    """Run the warm-up invocation, then undo it: once while the snapshot is taken (so
    the code every call runs is already specialised and its memory laid out), and
    again in each instance the host makes ahead of a request (so the pages every
    call writes are already written when the request comes). No function's code or
    data is involved, and what it leaves is what the snapshot holds already."""
    saved = list(sys.meta_path)
    run(*WARM_UP)
    sys.meta_path[:] = saved
    sys.modules.pop("handler", None)


def _take_free_chunks() -> list[bytes]:
    """The small free chunks of the snapshot's heap, taken for good (~0.8 MiB): what
    an invocation allocates then comes from memory the allocator carves in order,
    packed a few objects to a page, instead of from the small chunks the imports and
    the warm-up left free all over the image, where the first write to each page is a
    copy-on-write fault (a hello made 159 faults a call, 105 of them in the allocator
    alone; 70 with this).

    Each size, largest first, is taken until one lands at or above the heap's top (an
    address past every free chunk: that of a 1 MiB object, freed at once); ``id`` is
    an object's address in linear memory, and a ``bytes`` object is one allocation of
    its header and contents. The large free chunks are held while the small ones are
    taken, so that small sizes are not carved from them, then freed again: a large
    chunk is carved in order, its pages written one after the other."""
    top = id(bytes(1 << 20))

    def take(sizes: Iterable[int]) -> list[bytes]:
        taken = []
        for size in sizes:
            while True:
                chunk = bytes(size)
                if id(chunk) >= top:
                    break
                taken.append(chunk)
        return taken

    held = take(1 << n for n in range(18, 9, -1))
    kept = take(range(600, 0, -8))
    del held
    return kept


def _census() -> tuple[list[object], bytes]:
    """Every object of the snapshot that is not immortal yet, kept alive for good, and
    their census for the host: ``CENSUS_MAGIC``, the interpreter's major and minor
    version (a byte each, two zero bytes), the count and the CRC-32 of what follows,
    then each object's address and its type's address (u32 little-endian; ``id`` is an
    address in linear memory).

    The host's build (``host/toolchain/immortal.py``) finds the census in the
    component's memory image and makes every object in it immortal there (refcount
    ``5 << 28`` on this 32-bit CPython 3.14), checking each address against its type:
    an invocation then never writes the refcount of a snapshot object, and the page
    holding it stays shared with the image instead of taking a copy-on-write fault on
    the first ``Py_INCREF``. Objects are found from the collector's list and through
    their referents (strings, numbers and other untracked objects included)."""
    todo = gc.get_objects()  # first: what follows is the census's own, left out
    seen: set[int] = set()
    kept: list[object] = []
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if not sys._is_immortal(obj):
            kept.append(obj)
        todo.extend(gc.get_referents(obj))
    pairs = array.array("I")
    for obj in kept:
        pairs.append(id(obj))
        pairs.append(id(type(obj)))
    if sys.byteorder != "little":
        pairs.byteswap()
    raw = pairs.tobytes()
    version = bytes((sys.version_info.major, sys.version_info.minor, 0, 0))
    head = version + len(kept).to_bytes(4, "little") + zlib.crc32(raw).to_bytes(4, "little")
    return kept, CENSUS_MAGIC + head + raw


#: what the census starts with (made at run time, so that the bytes are not also a
#: constant of this module's code in the image)
CENSUS_MAGIC = bytes(reversed(b"2v-susnec-latrommi-submin"))

warm_up()
gc.collect()
#: never freed, and immortal in the image (see ``_census``)
IMMORTAL, CENSUS = _census()
#: never freed (see ``_take_free_chunks``)
FREE_CHUNKS_TAKEN = _take_free_chunks()
gc.freeze()  # the snapshot's objects are never scanned by a collection again
