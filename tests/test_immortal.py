"""The Python runtime's image patch (host/toolchain/immortal.py), on small components
built here byte by byte: what it patches, what it leaves alone, what it refuses."""

from __future__ import annotations

import struct
import zlib

import pytest

from host.common import leb128
from host.errors import BuildError
from host.toolchain.immortal import CENSUS_MAGIC, IMMORTAL_REFCNT, immortalize

TYPE = 0x0009_1230  # the address of a type object, as the census gives it
OTHER_TYPE = 0x0009_4560


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        done = (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def _component(segments: list[tuple[int, bytes]]) -> bytes:
    """A component holding one core module with a memory and these active data
    segments (address, bytes)."""
    memory = leb128.encode(1) + b"\x00" + leb128.encode(1)  # one memory, min 1 page
    data = leb128.encode(len(segments)) + b"".join(
        b"\x00\x41" + _sleb(addr) + b"\x0b" + leb128.encode(len(raw)) + raw
        for addr, raw in segments
    )
    module = b"\0asm\x01\0\0\0" + b"\x05" + leb128.encode(len(memory)) + memory
    module += b"\x0b" + leb128.encode(len(data)) + data
    return b"\0asm\x0d\x00\x01\x00" + b"\x01" + leb128.encode(len(module)) + module


def _census(pairs: list[tuple[int, int]], python: tuple[int, int] = (3, 14)) -> bytes:
    raw = b"".join(struct.pack("<II", a, t) for a, t in pairs)
    return CENSUS_MAGIC + struct.pack("<BBxxII", *python, len(pairs), zlib.crc32(raw)) + raw


def _obj(refcnt: int, type_address: int) -> bytes:
    return struct.pack("<II", refcnt, type_address) + b"payload!"


def _refcnt(component: bytes, marker: bytes) -> int:
    at = component.index(marker)
    count: int = struct.unpack_from("<I", component, at - 8)[0]
    return count


def test_census_objects_become_immortal_and_the_rest_is_left_alone() -> None:
    objects = (
        _obj(3, TYPE)
        + b"A"  # 0x100: in the census, matches: patched
        + _obj(1, OTHER_TYPE)
        + b"B"  # 0x111: the census says another type: left
        + _obj(IMMORTAL_REFCNT + 7, TYPE)
        + b"C"  # 0x122: not a mortal count: left
        + _obj(2, TYPE)
        + b"D"  # 0x133: not in the census: left
    )
    census = _census([(0x100, TYPE), (0x111, TYPE), (0x122, TYPE), (0x4000, TYPE)])
    decoy = CENSUS_MAGIC + b"\xff\xff\x00\x00\x01\x02\x03\x04"  # the SDK's own copy
    # a copy of the magic in memory left with zeros after it: count 0, CRC-32 of
    # nothing 0, so it reads as an empty census of "CPython 0.0" unless refused
    zeroed = CENSUS_MAGIC + bytes(12)  # version, count and CRC all zero
    before = _component([(0x100, objects), (0x800, decoy), (0x900, zeroed), (0x1000, census)])
    after, made, skipped = immortalize(before)
    assert (made, skipped) == (1, 3)  # 0x4000 lies in no segment
    assert len(after) == len(before)
    assert _refcnt(after, b"payload!A") == IMMORTAL_REFCNT
    assert _refcnt(after, b"payload!B") == 1
    assert _refcnt(after, b"payload!C") == IMMORTAL_REFCNT + 7
    assert _refcnt(after, b"payload!D") == 2
    assert after.replace(struct.pack("<I", IMMORTAL_REFCNT), struct.pack("<I", 3), 1) == before


def test_a_census_split_over_segments_is_read_whole() -> None:
    """The image leaves runs of zeros out of its segments: the census's count (1, so
    three zero bytes after the version's four) is read across such a gap."""
    census = _census([(0x100, TYPE)])
    cut = len(CENSUS_MAGIC) + 5
    assert census[cut : cut + 3] == b"\0\0\0"
    before = _component(
        [(0x100, _obj(9, TYPE)), (0x2000, census[:cut]), (0x2000 + cut + 3, census[cut + 3 :])]
    )
    _, made, skipped = immortalize(before)
    assert (made, skipped) == (1, 0)


def test_an_image_without_a_census_is_refused() -> None:
    with pytest.raises(BuildError, match="no census"):
        immortalize(_component([(0x100, _obj(3, TYPE) + CENSUS_MAGIC + b"\x01\0\0\0\0\0\0\0")]))


def test_a_component_it_cannot_read_is_refused() -> None:
    with pytest.raises(BuildError, match="cannot be read"):
        immortalize(_component([(0x100, _census([(0x100, TYPE)]))])[:-12])


def test_the_census_of_another_interpreter_is_left_unapplied() -> None:
    """Another CPython may mark immortal objects otherwise: nothing is patched."""
    before = _component([(0x100, _obj(3, TYPE)), (0x1000, _census([(0x100, TYPE)], (3, 15)))])
    assert immortalize(before) == (before, 0, 1)
