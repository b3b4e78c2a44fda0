"""The shared Python runtime: one core module for every Python function on a host.

The host's build imports this module into a CPython interpreter for WASI and
snapshots it (with the standard library modules functions use most already imported,
and the bytecode of the rest of the pure-Python standard library at hand; see
``guest_sdk/python/runtime/nimbus_python.c``); the host compiles that module once per
engine and hands each invocation the function's own code bundle. ``handle`` installs
the bundle as an importer, imports ``handler`` and calls it: every invocation runs in
a fresh instance of the snapshot, so nothing of one call or one function reaches
another.

``compile`` runs once per function at deploy or load time: it turns the function's
sources into this interpreter's bytecode (a bundle), or says which file does not
compile.
"""

from __future__ import annotations

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
from collections.abc import Iterable

import msgpack

from nimbus import _bundles, _pack, log
from nimbus.events import Event, decode, from_map
from nimbus.response import to_map

#: imported into the snapshot, so a function importing them pays nothing
PRELOADED = (
    "abc array base64 binascii bisect calendar collections collections.abc contextlib "
    "copy csv dataclasses datetime decimal difflib enum fnmatch fractions functools "
    "hashlib heapq hmac html html.parser http io ipaddress itertools json keyword "
    "logging math numbers operator pprint random re secrets shlex statistics string "
    "struct textwrap time traceback types typing unicodedata urllib.parse uuid warnings "
    "weakref zoneinfo email.utils"
).split()

#: error kinds the host turns into FunctionCrashed / FunctionOutOfMemory (a function
#: that *returns* {"error": …} fails with FunctionFailed instead)
CRASHED = "nimbus.UnhandledException"
OUT_OF_MEMORY = "nimbus.MemoryError"
#: an event starting with this byte is the envelope marshalled by the host (which has
#: already decoded it; marshal is the interpreter's own C codec, pure-Python msgpack
#: took a quarter of a small call); any other event is the envelope in msgpack
MARSHALLED_EVENT = b"\0"


def _preload() -> list[str]:
    missing = []
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


MISSING = _preload()
#: the rest of the standard library, imported on demand from the snapshot
STDLIB = _bundles.read_stdlib()
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
    return msgpack.packb([None, _bundles.pack(modules)], use_bin_type=True)


def _install(code: bytes) -> _bundles.Importer:
    importer = _bundles.open_bundle(code)
    for name in importer.index:  # the function's own modules shadow preloaded ones
        if name in sys.modules and name.partition(".")[0] != "nimbus":
            del sys.modules[name]
    sys.meta_path.insert(0, importer)
    # the snapshot's seed is the same in every instance; 256 fresh bits replace it
    # (random.seed() would draw 2.5 KB from the host, twice the time)
    random.seed(int.from_bytes(os.urandom(32)))
    return importer


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


def seal() -> None:
    """The last step of the build, before the snapshot: the warm-up run once, the
    heap's small free chunks taken, the snapshot's objects left out of every later
    collection, and the filesystem forgotten (an instance has none: modules the
    snapshot has not imported come from the standard library's bundle)."""
    global FREE_CHUNKS_TAKEN
    warm_up()
    gc.collect()
    FREE_CHUNKS_TAKEN = _take_free_chunks()
    gc.freeze()
    sys.path.clear()
    sys.path_importer_cache.clear()


#: never freed (see ``_take_free_chunks``)
FREE_CHUNKS_TAKEN: list[bytes] = []
