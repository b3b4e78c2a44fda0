"""C functions: ``main.c`` with a ``handle``, compiled by ``zig cc`` against nimbus.h.

No libc: the single-header SDK (``guest_sdk/c/nimbus.h``) brings the allocator,
msgpack and the ABI exports. Bulk-memory instructions implement memcpy and memset.
"""

from __future__ import annotations

from pathlib import Path

from host.errors import BuildError
from host.toolchain.zig import zig, zig_version

SDK = Path(__file__).resolve().parent.parent.parent / "guest_sdk" / "c"
STACK_BYTES = 1024 * 1024
FLAGS = (
    "--target=wasm32-freestanding",
    "-Os",
    "-nostdlib",
    "-mbulk-memory",
    "-Wall",
    "-Wno-unused-function",
    "-Wl,--no-entry",
    f"-Wl,-z,stack-size={STACK_BYTES}",
    "-Wl,--strip-all",
)


class CToolchain:
    """Builds ``main.c`` functions (plus any other .c files beside it) to wasm32."""

    language = "c"
    entry = "main.c"

    def detects(self, src_dir: Path) -> bool:
        return (src_dir / self.entry).is_file()

    def _sources(self, src_dir: Path) -> list[Path]:
        return sorted(
            p
            for p in src_dir.rglob("*")
            if p.suffix in {".c", ".h"} and "build" not in p.relative_to(src_dir).parts
        )

    def inputs(self, src_dir: Path) -> list[Path]:
        return [*self._sources(src_dir), SDK / "nimbus.h"]

    def fingerprint(self) -> str:
        return f"zig cc {zig_version()} {' '.join(FLAGS)}"

    def compile(self, src_dir: Path, out_wasm: Path) -> None:
        src_dir = src_dir.resolve()
        units = [str(p) for p in self._sources(src_dir) if p.suffix == ".c"]
        if not units:
            raise BuildError(f"{src_dir}: no {self.entry}")
        result = zig("cc", *FLAGS, f"-I{SDK}", "-o", str(out_wasm), *units, cwd=src_dir)
        if result.returncode != 0:
            raise BuildError(
                f"{src_dir / self.entry}: the C compiler failed:\n{result.stderr.strip()}",
                result.stderr,
            )
