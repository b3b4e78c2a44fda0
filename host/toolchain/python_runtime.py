"""The shared Python runtime: one component for every Python function on a host.

componentize-py bundles a CPython interpreter, the standard library, the Nimbus SDK
(``guest_sdk/python/nimbus``) and msgpack's pure-Python code into a component of the
``runtime`` world in ``guest_sdk/python/wit``, with the interpreter's initialised
memory snapshotted inside (see ``guest_sdk/python/nimbus/_runtime.py``) and the
snapshot's objects then made immortal in that image (``immortal.py``). It is built
once per machine and version of its inputs (about ten seconds) into
``$NIMBUS_PYTHON_RUNTIME_DIR`` (default ``~/.cache/nimbus/python-runtime``); every
host then compiles it once into its module cache and shares it between all its
Python functions.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import msgpack

from host.common.versions import installed_version
from host.errors import BuildError
from host.toolchain import immortal

SDK = Path(__file__).resolve().parent.parent.parent / "guest_sdk" / "python"
_APP_MODULE = "nimbus_runtime"

log = logging.getLogger("nimbus.build")


@cache
def componentize_version() -> str:
    try:
        return installed_version("componentize_py", "componentize-py")
    except Exception:
        raise BuildError(
            "componentize-py is not installed; Python functions need it "
            "(it is a dependency of Nimbus: reinstall with `make test` or `pip install -e .`)"
        ) from None


def _key() -> str:
    """The sha256 of everything the runtime is built from."""
    h = hashlib.sha256(
        f"componentize-py {componentize_version()} msgpack {msgpack.version}".encode()
    )
    inputs = [*(SDK / "nimbus").rglob("*"), *(SDK / "wit").rglob("*")]  # not the docs
    for path in sorted(p for p in inputs if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(SDK)).encode())
        h.update(path.read_bytes())
    h.update(Path(immortal.__file__).read_bytes())  # what the build does to the image
    return h.hexdigest()[:24]


def runtime_dir() -> Path:
    configured = os.environ.get("NIMBUS_PYTHON_RUNTIME_DIR")
    if configured:
        return Path(configured)
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "nimbus"
        / "python-runtime"
    )


def runtime_wasm() -> Path:
    """The shared runtime component, built first if this machine has none current."""
    out = runtime_dir() / f"runtime-{_key()}.wasm"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per machine; the rest wait for it
        if not out.exists():
            _build(out)
    return out


def _build(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="nimbus-pyrt-") as tmp:
        app, deps = Path(tmp) / "app", Path(tmp) / "deps"
        app.mkdir()
        shutil.copytree(
            SDK / "nimbus", app / "nimbus", ignore=shutil.ignore_patterns("__pycache__")
        )
        (app / f"{_APP_MODULE}.py").write_text("from nimbus._runtime import WitWorld  # noqa\n")
        deps.mkdir()
        shutil.copytree(
            Path(msgpack.__file__).parent,
            deps / "msgpack",
            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
        )
        tmp_out = Path(tmp) / "runtime.wasm"
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from componentize_py import script; sys.exit(script())",
                "-d",
                str(SDK / "wit"),
                "-w",
                "runtime",
                "componentize",
                "-p",
                str(app),
                "-p",
                str(deps),
                _APP_MODULE,
                "-o",
                str(tmp_out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise BuildError(f"building the shared Python runtime failed:\n{output}", output)
        component, made, skipped = immortal.immortalize(tmp_out.read_bytes())
        log.info("Python runtime built: %d snapshot objects made immortal (%d left)", made, skipped)
        tmp_final = out.with_suffix(f".{os.getpid()}.tmp")
        tmp_final.write_bytes(component)
        os.replace(tmp_final, out)
