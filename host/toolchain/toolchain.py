"""What a guest language's toolchain must provide so the builder can drive it.

One module per language (``zig.py``, ``c.py``, …) implements this; the builder never
knows which compiler it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Toolchain(Protocol):
    """A guest language: how to recognise its sources and compile them to wasm."""

    #: the name used in ``function.toml``'s ``language`` key and in messages
    language: str

    def detects(self, src_dir: Path) -> bool:
        """True when ``src_dir`` holds this language's entry file."""
        ...

    def inputs(self, src_dir: Path) -> list[Path]:
        """Every file whose change requires a rebuild (sources, the SDK files used)."""
        ...

    def fingerprint(self) -> str:
        """A string that changes when the compiler or its flags change."""
        ...

    def compile(self, src_dir: Path, out_wasm: Path) -> None:
        """Compile into ``out_wasm``; raise ``BuildError`` with the compiler's output."""
        ...
