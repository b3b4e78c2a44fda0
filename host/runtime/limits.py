"""The per-function limits the engine enforces on every invocation."""

from __future__ import annotations

from msgspec import Struct

MIB = 1024 * 1024


class Limits(Struct, frozen=True):
    """Wall-clock, memory and payload caps; Lambda-like defaults."""

    timeout_s: float = 10.0
    memory_bytes: int = 128 * MIB
    max_request_bytes: int = 6 * MIB
    max_response_bytes: int = 6 * MIB
