"""The price of isolation: a fresh instance per call vs one reused instance, in-process."""

from __future__ import annotations

from typing import Any

from bench.runtime import measure
from bench.servers import ROOT
from host.toolchain.builder import build_function


def run(quick: bool) -> dict[str, Any]:
    wasm = build_function(ROOT / "functions" / "hello").wasm.read_bytes()
    return measure(wasm, 2_000 if quick else 20_000)
