"""LEB128 as the WebAssembly binary format writes it (host/common/leb128.py)."""

from __future__ import annotations

import pytest

from host.common import leb128


@pytest.mark.parametrize("n", [0, 1, 63, 64, 127, 128, 624485, 2**31, 2**32 - 1])
def test_unsigned_numbers_read_back(n: int) -> None:
    raw = b"\xff" + leb128.encode(n) + b"\x00"
    assert leb128.read(raw, 1) == (n, len(raw) - 1)


@pytest.mark.parametrize(
    ("raw", "n"),
    [(b"\x00", 0), (b"\x3f", 63), (b"\x40", -64), (b"\x7f", -1), (b"\xc0\xbb\x78", -123456)],
)
def test_signed_numbers_read(raw: bytes, n: int) -> None:
    assert leb128.read_signed(raw, 0) == (n, len(raw))


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\x80\x80\x80\x80\x80\x01"])
def test_a_number_that_runs_out_or_over_five_bytes_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="bad LEB128"):
        leb128.read(raw, 0)
