"""Incremental builds: a function directory in, a .wasm out, recompiled only on change.

The build output lives in ``<src_dir>/build/<name>.wasm`` beside a stamp holding the
sha256 of every input and of the toolchain's fingerprint; an unchanged stamp means no
compiler runs.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tomllib
from pathlib import Path

from msgspec import Struct

from host.errors import BuildError, ManifestError
from host.toolchain.toolchain import Toolchain

BUILD_DIR = "build"


class BuildResult(Struct, frozen=True):
    """Where the module is and whether this call had to compile it."""

    wasm: Path
    rebuilt: bool
    language: str


def _toolchains() -> list[Toolchain]:
    # Imported here so that a language whose toolchain module is broken only fails
    # when a function in that language is built.
    from host.toolchain.c import CToolchain
    from host.toolchain.zig import ZigToolchain

    found: list[Toolchain] = [ZigToolchain(), CToolchain()]
    try:
        python = importlib.import_module("host.toolchain.python")
    except ImportError:
        return found
    found.append(python.PythonToolchain())
    return found


def read_function_toml(src_dir: Path) -> dict[str, object]:
    """The optional ``function.toml`` of a function directory, as a dict."""
    path = src_dir / "function.toml"
    if not path.exists():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from e


def detect_toolchain(src_dir: Path) -> Toolchain:
    """The toolchain named in function.toml, else the one whose entry file is present."""
    toolchains = _toolchains()
    named = read_function_toml(src_dir).get("language")
    if named is not None:
        for tc in toolchains:
            if tc.language == named:
                return tc
        known = ", ".join(tc.language for tc in toolchains)
        raise ManifestError(
            f"{src_dir / 'function.toml'}: language = {named!r} is not one of: {known}"
        )
    for tc in toolchains:
        if tc.detects(src_dir):
            return tc
    raise BuildError(
        f"{src_dir}: no function sources found (expected main.zig, main.c or handler.py, "
        "or a function.toml naming the language)"
    )


def _stamp(tc: Toolchain, src_dir: Path) -> str:
    h = hashlib.sha256(tc.fingerprint().encode())
    for path in sorted(tc.inputs(src_dir)):
        h.update(str(path.relative_to(path.anchor)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_function(src_dir: Path, name: str | None = None) -> BuildResult:
    """Build ``src_dir`` to wasm unless its last build is still current."""
    src_dir = src_dir.resolve()
    if not src_dir.is_dir():
        raise BuildError(f"{src_dir}: not a directory")
    tc = detect_toolchain(src_dir)
    out_dir = src_dir / BUILD_DIR
    wasm = out_dir / f"{name or src_dir.name}.wasm"
    stamp_file = wasm.with_suffix(".stamp")
    stamp = _stamp(tc, src_dir)
    if wasm.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return BuildResult(wasm=wasm, rebuilt=False, language=tc.language)
    out_dir.mkdir(exist_ok=True)
    tmp = wasm.with_suffix(f".{os.getpid()}.tmp.wasm")
    try:
        tc.compile(src_dir, tmp)
        os.replace(tmp, wasm)
    finally:
        tmp.unlink(missing_ok=True)
    stamp_file.write_text(stamp)
    return BuildResult(wasm=wasm, rebuilt=True, language=tc.language)
