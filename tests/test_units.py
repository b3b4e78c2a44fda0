"""Durations and sizes as written in manifests (host/units.py)."""

from __future__ import annotations

import pytest

from host.common.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        (" 10s ", 10.0),
        ("7", 7.0),
        ("0", 0.0),
        (10, 10.0),
        (0.5, 0.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["soon", "10 parsecs", "10S", "-1s", "s", "", "1.s", True, -3, float("inf"), [1]]
)
def test_bad_durations_say_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError) as e:
        parse_duration(bad)
    assert repr(bad) in str(e.value)
    assert "duration" in str(e.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 64 * 1024),
        ("128MiB", 128 * 1024**2),
        ("1GiB", 1024**3),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("10MB", 10_000_000),
        ("100B", 100),
        ("512", 512),
        (4096, 4096),
        ("6 MiB", 6 * 1024**2),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "1.5", "12 parsecs", "1mib", -1, 1.5, False, "0.3B"])
def test_bad_sizes_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError) as e:
        parse_size(bad)
    assert repr(bad) in str(e.value)


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.25, 1.0, 1.5, 10.0, 300.0, 1e-5, 0.0015])
def test_format_duration_reads_back(seconds: float) -> None:
    text = format_duration(seconds)
    assert isinstance(text, str)
    assert parse_duration(text) == pytest.approx(seconds)


def test_format_duration_is_readable() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(10.0) == "10s"
    assert format_duration(1e-5) == "0.00001s"


@pytest.mark.parametrize("size", [0, 1, 1000, 1024, 64 * 1024, 6 * 1024**2, 3 * 1024**3])
def test_format_size_reads_back(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_format_size_is_readable() -> None:
    assert format_size(128 * 1024**2) == "128MiB"
    assert format_size(1024**3) == "1GiB"
    assert format_size(1500) == "1500"
