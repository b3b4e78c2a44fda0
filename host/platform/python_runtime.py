"""The shared Python runtime's module as a host uses it: linked by the toolchain,
initialised and snapshotted by the runtime (the one part that runs wasm)."""

from __future__ import annotations

from pathlib import Path

from host.runtime.snapshot import python_runtime
from host.toolchain import python_runtime as toolchain


def runtime_wasm() -> Path:
    """The shared runtime module, built first if this machine has none current."""
    return toolchain.runtime_wasm(python_runtime)
