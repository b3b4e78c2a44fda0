"""The on-disk cache of compiled modules, so that a new process never recompiles.

An entry is ``<dir>/<engine fingerprint>/<sha256 of the .wasm>.cwasm`` plus a sidecar
``.sum`` holding the artifact's length and XXH3-128 digest (computed over a memory
map: the 48 MB Python runtime checks in ~6 ms, where zlib's CRC-32 took ~16 ms and a
cryptographic hash of a copy would cost more than the load itself; the file's name
already carries the sha256 of its source; a sidecar written with CRC-32 by an older
host is still checked as such). Both are written to a temporary
file and renamed into place, so two processes compiling the same module at once both
leave a whole entry behind. Loading checks the sidecar before handing the artifact to
wasmtime (which trusts what it deserializes), so a corrupt or truncated file is
deleted and rebuilt instead of crashing the host; an artifact wasmtime itself refuses
(another version or settings) is treated the same way.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
import xxhash
from msgspec import Struct

from host.common.files import atomic_write
from host.errors import DeployError

log = logging.getLogger("nimbus.cache")


class CachedModule(Struct, frozen=True):
    """A module ready to link, and whether it came from the disk cache."""

    module: Any
    sha256: str
    cache_hit: bool


class ModuleCache:
    """Compiles a .wasm once per engine fingerprint and loads it from disk afterwards."""

    def __init__(
        self,
        root: Path,
        engine: wasmtime.Engine,
        fingerprint: str,
    ) -> None:
        self.dir = root / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self._engine = engine
        self._lock = threading.Lock()
        self.compiles = 0
        self.hits = 0
        self.rejected = 0

    def path_for(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.cwasm"

    def load(self, wasm: bytes) -> CachedModule:
        """The compiled module for ``wasm``, from the cache when a sound entry exists."""
        sha = hashlib.sha256(wasm).hexdigest()
        module = self._load_cached(sha)
        if module is not None:
            with self._lock:
                self.hits += 1
            return CachedModule(module, sha, cache_hit=True)
        module = self._compile(wasm)
        self._store(sha, module.serialize())
        return CachedModule(module, sha, cache_hit=False)

    def load_named(self, key: str, read: Callable[[], bytes]) -> CachedModule:
        """Like ``load`` for an artifact whose name already says what it holds (the
        shared Python runtime): no hash of its bytes, which are read only to compile."""
        module = self._load_cached(key)
        if module is not None:
            with self._lock:
                self.hits += 1
            return CachedModule(module, key, cache_hit=True)
        module = self._compile(read())
        self._store(key, module.serialize())
        return CachedModule(module, key, cache_hit=False)

    def _compile(self, wasm: bytes) -> Any:
        try:
            module = wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise DeployError(f"not a valid WebAssembly module: {e}") from e
        with self._lock:
            self.compiles += 1
        return module

    def _load_cached(self, sha: str) -> Any:
        path = self.path_for(sha)
        sum_path = path.with_suffix(".sum")
        try:
            expected = sum_path.read_text().split()
            with path.open("rb") as f:
                actual_len = os.fstat(f.fileno()).st_size
                kind = expected[1].partition(":")[0] if len(expected) == 2 else _WRITTEN
                digest = _checksum_file(f.fileno(), actual_len, kind)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # (a sidecar that is not text)
            self._reject(path, f"unreadable: {e}")
            return None
        if expected != [str(actual_len), digest]:
            self._reject(path, "checksum mismatch (corrupt or truncated)")
            return None
        try:
            return wasmtime.Module.deserialize_file(self._engine, str(path))
        except wasmtime.WasmtimeError as e:
            self._reject(path, f"incompatible with this engine: {e}")
            return None

    def _reject(self, path: Path, why: str) -> None:
        log.warning("module cache entry %s rejected (%s); rebuilding", path.name, why)
        with self._lock:
            self.rejected += 1
        for p in (path, path.with_suffix(".sum")):
            p.unlink(missing_ok=True)

    def _store(self, sha: str, artifact: bytes | bytearray) -> None:
        """Keep the compiled artifact for the next process; best effort: a full disk
        costs the next process a compile, never this call."""
        path = self.path_for(sha)
        digest = _checksum(artifact, _WRITTEN)
        try:
            atomic_write(path.with_suffix(".sum"), f"{len(artifact)} {digest}\n".encode())
            atomic_write(path, bytes(artifact))
        except OSError as e:
            log.warning("module cache entry %s not written (%s); serving from memory", sha, e)
            path.with_suffix(".sum").unlink(missing_ok=True)


#: the digest new sidecars carry; the others, what an older host's may carry
_WRITTEN = "xxh3"
_DIGESTS: dict[str, Callable[[Any], str]] = {
    "xxh3": xxhash.xxh3_128_hexdigest,
    "crc32": lambda data: f"{zlib.crc32(data):08x}",
}


def _checksum(data: Any, kind: str) -> str:
    """``kind:digest`` of ``data``; an unknown kind gives one no sidecar matches."""
    digest = _DIGESTS.get(kind)
    return f"{kind}:{digest(data)}" if digest else "unknown:"


def _checksum_file(fd: int, size: int, kind: str) -> str:
    if size == 0:
        return _checksum(b"", kind)
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:
        return _checksum(m, kind)
