"""A generation published through an 8-byte memory-mapped file beside the environment.

Readers on every request (the gateway's route table, the registry's decoded
deployments, the API key cache) must notice a change made by any process on the data
dir without an LMDB transaction per request. A writer counts its generation inside
its write transaction and publishes it here after the commit; a read is 8 bytes of
shared memory, no system call. A reader that saw value ``g`` before reading LMDB
cannot miss a later change: that change publishes its own, never-repeated value after
the reader's look, so the mapped value differs from ``g`` from then on.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

_VALUE = struct.Struct("<q")


class GenerationSignal:
    """One published generation, shared by the processes that map ``path``."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _VALUE.size:
                os.ftruncate(fd, _VALUE.size)
            self._map = mmap.mmap(fd, _VALUE.size)
        finally:
            os.close(fd)

    def read(self) -> int:
        value: int = _VALUE.unpack_from(self._map, 0)[0]
        return value

    def publish(self, generation: int) -> None:
        _VALUE.pack_into(self._map, 0, generation)

    def close(self) -> None:
        self._map.close()
