"""Python functions: ``handler.py`` with ``def handle(event)``, built into a component.

componentize-py bundles a CPython interpreter, the function's modules, the Nimbus SDK
(``guest_sdk/python/nimbus``) and msgpack's pure-Python code into a component of the
world in ``guest_sdk/python/wit``. Pure-Python dependencies listed in ``function.toml``
(``requirements = ["pkg==1.0"]``) are installed into the bundle; anything with a C
extension is refused with the offending files named, since it cannot run in wasm.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import cache
from importlib.metadata import version
from pathlib import Path

import msgpack

from host.errors import BuildError

SDK = Path(__file__).resolve().parent.parent.parent / "guest_sdk" / "python"
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
ENTRY = "handler.py"


@cache
def componentize_version() -> str:
    try:
        return version("componentize-py")
    except Exception:
        raise BuildError(
            "componentize-py is not installed; Python functions need it "
            "(it is a dependency of Nimbus: reinstall with `make test` or `pip install -e .`)"
        ) from None


def _requirements(src_dir: Path) -> list[str]:
    from host.toolchain.builder import read_function_toml

    reqs = read_function_toml(src_dir).get("requirements", [])
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise BuildError(f"{src_dir / 'function.toml'}: requirements must be a list of strings")
    return reqs


def _native_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in NATIVE_SUFFIXES)


class PythonToolchain:
    """Builds ``handler.py`` functions into WebAssembly components."""

    language = "python"
    entry = ENTRY

    def detects(self, src_dir: Path) -> bool:
        return (src_dir / ENTRY).is_file()

    def inputs(self, src_dir: Path) -> list[Path]:
        own = [
            p
            for p in src_dir.rglob("*")
            if p.is_file()
            and "build" not in p.relative_to(src_dir).parts
            and "__pycache__" not in p.parts
        ]
        sdk = [p for p in SDK.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        return own + sdk

    def fingerprint(self) -> str:
        return f"componentize-py {componentize_version()} msgpack {msgpack.version}"

    def compile(self, src_dir: Path, out_wasm: Path) -> None:
        src_dir = src_dir.resolve()
        componentize_version()
        native = _native_files(src_dir)
        if native:
            raise BuildError(
                f"{src_dir}: C extensions cannot run in a Python function: "
                + ", ".join(str(p.relative_to(src_dir)) for p in native)
            )
        with tempfile.TemporaryDirectory(prefix="nimbus-py-") as tmp:
            app, deps = Path(tmp) / "app", Path(tmp) / "deps"
            shutil.copytree(
                src_dir, app, ignore=shutil.ignore_patterns("build", "__pycache__", "*.pyc")
            )
            shutil.copytree(SDK / "nimbus", app / "nimbus")
            (app / "nimbus_app.py").write_text("from nimbus._entry import WitWorld  # noqa\n")
            deps.mkdir()
            shutil.copytree(
                Path(msgpack.__file__).parent,
                deps / "msgpack",
                ignore=shutil.ignore_patterns(*[f"*{s}" for s in NATIVE_SUFFIXES], "__pycache__"),
            )
            self._install(_requirements(src_dir), deps, src_dir)
            result = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from componentize_py import script; sys.exit(script())",
                    "-d",
                    str(SDK / "wit"),
                    "-w",
                    "function",
                    "componentize",
                    "-p",
                    str(app),
                    "-p",
                    str(deps),
                    "nimbus_app",
                    "-o",
                    str(out_wasm),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise BuildError(f"{src_dir / ENTRY}: componentize-py failed:\n{output}", output)

    def _install(self, requirements: list[str], deps: Path, src_dir: Path) -> None:
        if not requirements:
            return
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(deps),
                *requirements,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BuildError(
                f"{src_dir / 'function.toml'}: installing requirements failed:\n{result.stderr}",
                result.stderr,
            )
        native = _native_files(deps)
        if native:
            raise BuildError(
                f"{src_dir / 'function.toml'}: these requirements ship C extensions, which "
                "cannot run in a Python function: "
                + ", ".join(sorted({str(p.relative_to(deps)).split("/")[0] for p in native}))
            )
