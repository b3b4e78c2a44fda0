"""The Python runtime's snapshot objects made immortal in its memory image.

Every Python invocation runs in a fresh instance whose memory is the snapshot's image,
mapped copy-on-write: the first write to a page copies it. CPython writes an object's
reference count each time it takes or drops a reference, so a call touching a few
hundred of the snapshot's objects (modules, functions, types, strings) wrote that many
pages, most of them for nothing but a count. An immortal object's count is never
written (CPython 3.14: ``Py_INCREF``/``Py_DECREF`` skip a count at or above
``1 << 30`` on 32-bit). So the runtime's build makes every snapshot object immortal in
the image itself: the SDK leaves a census of the snapshot's objects in memory
(``_census`` in ``guest_sdk/python/nimbus/_runtime.py``: each object's address and its
type's), and ``immortalize`` finds it in the component's data segments and writes the
immortal count over each object's, in place (no length changes).

An address is patched only where the image holds, at that address, a mortal count
followed by the census's type address: anything else (the census and the image out
of step) is left alone and counted. Those objects are kept alive by the SDK for good,
and are never freed in an instance either (they are all live in the snapshot, and an
instance's memory is dropped whole after its one call).
"""

from __future__ import annotations

import bisect
import logging
import struct
import zlib

from host.common import leb128
from host.errors import BuildError

#: ``_Py_IMMORTAL_INITIAL_REFCNT`` of a 32-bit CPython 3.14 (immortal from ``1 << 30``;
#: ``6 << 28`` and up mark statically allocated objects)
IMMORTAL_REFCNT = 5 << 28
MORTAL_LIMIT = 1 << 30
#: the interpreter versions whose immortal count is the one above; the census of any
#: other is left unapplied (its objects stay mortal: slower, not wrong)
KNOWN_PYTHONS = ((3, 14),)
#: what the SDK's census starts with (``CENSUS_MAGIC`` in ``nimbus/_runtime.py``)
CENSUS_MAGIC = b"nimbus-immortal-census-v2"

_CORE_MODULE = 1  # component section id
_DATA = 11  # core module section id
_PAIR = struct.Struct("<II")
#: after the magic: major, minor, two zero bytes, count, CRC-32 of the pairs
_HEAD = struct.Struct("<BBxxII")

log = logging.getLogger("nimbus.build")


class _Image:
    """A core module's active data segments for memory 0: linear address, file offset
    and length of each, sorted by address."""

    def __init__(self, segments: list[tuple[int, int, int]]) -> None:
        segments.sort()
        self.segments = segments
        self._starts = [s[0] for s in segments]

    def file_offset(self, address: int, length: int) -> int | None:
        """Where ``length`` bytes at ``address`` lie in the file, if one segment holds
        them all."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, at, size = self.segments[i]
        if address + length > start + size:
            return None
        return at + address - start

    def read(self, component: bytes, address: int, length: int) -> bytes:
        """``length`` bytes of linear memory at ``address`` (zero between segments)."""
        out = bytearray(length)
        i = max(bisect.bisect_right(self._starts, address) - 1, 0)
        for start, at, size in self.segments[i:]:
            if start >= address + length:
                break
            lo, hi = max(start, address), min(start + size, address + length)
            if lo < hi:
                out[lo - address : hi - address] = component[at + lo - start : at + hi - start]
        return bytes(out)


def _data_segments(component: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The active segments (memory 0, constant offset) of the core module at
    ``component[start:end]``, as (address, file offset, length)."""
    segments = []
    i = start + 8  # the module's own header
    while i < end:
        section = component[i]
        size, i = leb128.read(component, i + 1)
        if section == _DATA:
            count, j = leb128.read(component, i)
            for _ in range(count):
                flags, j = leb128.read(component, j)
                if flags == 1:  # passive: not part of the image
                    length, j = leb128.read(component, j)
                    j += length
                    continue
                memory = 0
                if flags == 2:
                    memory, j = leb128.read(component, j)
                elif flags != 0:
                    raise ValueError(f"data segment flags {flags}")
                if component[j] != 0x41:  # i32.const
                    raise ValueError("a data segment's offset is not a constant")
                address, j = leb128.read_signed(component, j + 1)
                if component[j] != 0x0B:
                    raise ValueError("a data segment's offset is not a constant")
                length, j = leb128.read(component, j + 1)
                if j + length > end:
                    raise ValueError("a data segment runs past the end of its module")
                if memory == 0:
                    segments.append((address, j, length))
                j += length
        i += size
    return segments


def _images(component: bytes) -> list[_Image]:
    """The data segments of each top-level core module of ``component``."""
    images = []
    i = 8
    while i < len(component):
        section = component[i]
        size, i = leb128.read(component, i + 1)
        if i + size > len(component):
            raise ValueError("a section runs past the end of the component")
        if section == _CORE_MODULE:
            segments = _data_segments(component, i, i + size)
            if segments:
                images.append(_Image(segments))
        i += size
    return images


def _census(component: bytes) -> tuple[_Image, tuple[int, int], list[tuple[int, int]]]:
    """The census and the interpreter version it is for: after its magic (which the
    SDK's own copy of the magic also shows), a count, not zero, whose entries fit in
    memory and match the CRC-32 beside it."""
    for image in _images(component):
        end = max(start + size for start, _, size in image.segments)
        for address, at, size in image.segments:
            found = component.find(CENSUS_MAGIC, at, at + size)
            while found >= 0:
                head = address + found - at + len(CENSUS_MAGIC)
                major, minor, count, crc = _HEAD.unpack(image.read(component, head, _HEAD.size))
                body = head + _HEAD.size
                # (a copy of the magic followed by zeros reads as an empty census whose
                # CRC-32 matches: the SDK's census is never empty)
                if count and body + count * _PAIR.size <= end:
                    raw = image.read(component, body, count * _PAIR.size)
                    if zlib.crc32(raw) == crc:
                        return image, (major, minor), list(_PAIR.iter_unpack(raw))
                found = component.find(CENSUS_MAGIC, found + 1, at + size)
    raise BuildError(
        "the Python runtime's memory image holds no census of its objects (the SDK in "
        "guest_sdk/python and host/toolchain/immortal.py are out of step)"
    )


def immortalize(component: bytes) -> tuple[bytes, int, int]:
    """``component`` with every object of its snapshot's census immortal in the
    image; with the number of objects made immortal and of census entries left
    alone (the image did not hold the object the census describes)."""
    try:
        image, python, census = _census(component)
    except (IndexError, ValueError) as e:
        raise BuildError(f"the Python runtime's component cannot be read: {e}") from None
    if python not in KNOWN_PYTHONS:
        log.warning(
            "the Python runtime's interpreter is CPython %d.%d, whose immortal reference "
            "count this host does not know: its snapshot's objects stay mortal (calls "
            "write more pages)",
            *python,
        )
        return component, 0, len(census)
    out = bytearray(component)
    made = skipped = 0
    for address, type_address in census:
        at = image.file_offset(address, _PAIR.size)
        if at is None:
            skipped += 1
            continue
        refcnt, ob_type = _PAIR.unpack_from(component, at)
        if ob_type != type_address or not 0 < refcnt < MORTAL_LIMIT:
            skipped += 1
            continue
        struct.pack_into("<I", out, at, IMMORTAL_REFCNT)
        made += 1
    return bytes(out), made, skipped
