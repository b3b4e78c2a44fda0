"""Zig functions: ``main.zig`` with a ``pub fn handle``, compiled against the Zig SDK.

The SDK's ``entry.zig`` is the root module (it exports the ABI symbols); the
function's ``main.zig`` is module ``app`` and the SDK module ``nimbus``, so a
function author writes only ``handle``. The compiler is the ``ziglang`` package's.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from host.errors import BuildError

SDK = Path(__file__).resolve().parent.parent.parent / "guest_sdk" / "zig"
FLAGS = (
    "-target",
    "wasm32-freestanding",
    "-fno-entry",
    "-rdynamic",
    "-O",
    "ReleaseSmall",
)


@cache
def _zig_command() -> tuple[str, ...]:
    """The ziglang package's compiler binary, run directly: ``python -m ziglang`` would
    start an interpreter only to exec it, a cost paid on every save in ``nimbus dev``."""
    spec = importlib.util.find_spec("ziglang")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "zig"
        if os.access(binary, os.X_OK):
            return (str(binary),)
    return (sys.executable, "-m", "ziglang")


def zig(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_zig_command(), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


@cache
def zig_version() -> str:
    result = zig("version")
    if result.returncode != 0:
        raise BuildError(
            "the Zig compiler (the ziglang package, which builds Zig and C functions) does not "
            f"run: {result.stderr.strip() or 'no output'}; reinstall it into this environment "
            "(`make .venv/.installed`, or `pip install ziglang`), then `nimbus doctor`",
            result.stderr,
        )
    return result.stdout.strip()


class ZigToolchain:
    """Builds ``main.zig`` functions to wasm32-freestanding."""

    language = "zig"
    entry = "main.zig"

    def detects(self, src_dir: Path) -> bool:
        return (src_dir / self.entry).is_file()

    def inputs(self, src_dir: Path) -> list[Path]:
        own = [p for p in src_dir.rglob("*.zig") if "build" not in p.relative_to(src_dir).parts]
        return own + sorted(SDK.glob("*.zig"))

    def fingerprint(self) -> str:
        return f"zig {zig_version()} {' '.join(FLAGS)}"

    def compile(self, src_dir: Path, out_wasm: Path) -> None:
        main = src_dir / self.entry
        if not main.is_file():
            raise BuildError(f"{src_dir}: no {self.entry}")
        build_dir = out_wasm.parent
        with tempfile.TemporaryDirectory(dir=build_dir, prefix=".zig-") as tmp:
            result = zig(
                "build-exe",
                *FLAGS,
                "--dep",
                "app",
                "--dep",
                "nimbus",
                f"-Mroot={SDK / 'entry.zig'}",
                "--dep",
                "nimbus",
                f"-Mapp={main}",
                f"-Mnimbus={SDK / 'nimbus.zig'}",
                "--cache-dir",
                str(Path(tmp) / "cache"),
                "--global-cache-dir",
                str(Path(tempfile.gettempdir()) / "nimbus-zig-cache"),
                f"-femit-bin={out_wasm}",
                cwd=Path(tmp),
            )
        if result.returncode != 0:
            raise BuildError(
                f"{main}: the Zig compiler failed:\n{result.stderr.strip()}", result.stderr
            )
