"""Python functions: ``handler.py`` with ``def handle(event)``, built into a bundle.

Every Python function runs in the host's one shared runtime module (see
``host/toolchain/python_runtime.py``), so building one only gathers what is the
function's own: its modules and its pure-Python requirements (``requirements =
["pkg==1.0"]`` in ``function.toml``, installed with pip), packed by
``host/common/python_bundle.py``. No compiler runs: a build takes milliseconds plus
pip's time, and the host compiles the sources to bytecode when it deploys them.
Anything with a C extension is refused with the offending files named, since it
cannot run in wasm; so is a module named ``nimbus``, which would hide the SDK.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from host.common import python_bundle
from host.errors import BuildError

NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
ENTRY = "handler.py"
#: folders of a function or of an installed requirement that hold no importable code
_NOT_CODE = {"build", "__pycache__", "bin"}


def _requirements(src_dir: Path) -> list[str]:
    from host.toolchain.builder import read_function_toml

    reqs = read_function_toml(src_dir).get("requirements", [])
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise BuildError(f"{src_dir / 'function.toml'}: requirements must be a list of strings")
    return reqs


def _native_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in NATIVE_SUFFIXES)


def _is_code_dir(rel: Path) -> bool:
    return all(
        part.isidentifier() and part not in _NOT_CODE and not part.startswith(".")
        for part in rel.parts
    )


def collect_modules(root: Path, label: str) -> dict[str, python_bundle.Module]:
    """Every importable ``.py`` under ``root``, by module name; a folder of modules
    without ``__init__.py`` becomes a namespace package, as it would on disk."""
    modules: dict[str, python_bundle.Module] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not _is_code_dir(rel.parent) or not path.stem.isidentifier():
            continue
        parts = rel.parent.parts
        is_pkg = path.stem == "__init__"
        name = ".".join(parts if is_pkg else (*parts, path.stem))
        if not name:
            continue
        modules[name] = (is_pkg, f"{label}{rel.as_posix()}", path.read_bytes())
        for i in range(1, len(parts) + (0 if is_pkg else 1)):
            package = ".".join(parts[:i])
            if package not in modules:  # a namespace package (or its __init__ comes later)
                modules[package] = (True, f"{label}{'/'.join(parts[:i])}/", b"")
    return modules


class PythonToolchain:
    """Gathers a ``handler.py`` function and its requirements into a Python bundle."""

    language = "python"
    entry = ENTRY

    def detects(self, src_dir: Path) -> bool:
        return (src_dir / ENTRY).is_file()

    def inputs(self, src_dir: Path) -> list[Path]:
        return [
            p
            for p in src_dir.rglob("*")
            if p.is_file()
            and "build" not in p.relative_to(src_dir).parts
            and "__pycache__" not in p.parts
        ]

    def fingerprint(self) -> str:
        return f"nimbus python bundle {python_bundle.FORMAT}"

    def compile(self, src_dir: Path, out_wasm: Path) -> None:
        src_dir = src_dir.resolve()
        native = [p for p in _native_files(src_dir) if "build" not in p.parts]
        if native:
            raise BuildError(
                f"{src_dir}: C extensions cannot run in a Python function: "
                + ", ".join(str(p.relative_to(src_dir)) for p in native)
            )
        with tempfile.TemporaryDirectory(prefix="nimbus-py-") as tmp:
            deps = Path(tmp)
            self._install(_requirements(src_dir), deps, src_dir)
            modules = collect_modules(deps, "site-packages/")
            modules.update(collect_modules(src_dir, ""))  # the function's own win
        for name in modules:
            if name.partition(".")[0] == "nimbus":
                raise BuildError(
                    f"{src_dir}: a module named {name!r} would hide the Nimbus SDK; rename it"
                )
        if "handler" not in modules:
            raise BuildError(f"{src_dir}: no {ENTRY} (a Python function defines handle there)")
        out_wasm.write_bytes(python_bundle.encode(modules))

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
                "--no-compile",
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
