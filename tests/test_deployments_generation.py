"""The deployment generation is read on every request without a transaction, yet a
change made by another process is seen at once (through the published signal), and
one its writer never published is seen within ``RECHECK_S``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from host.services import deployments
from host.services.services import Services
from tests.conftest import ROOT

_CHILD = """
import sys
from pathlib import Path
from host.services.services import Services
from host.services import signal
if sys.argv[2] == "unpublished":  # a writer that dies between its commit and its publish
    signal.GenerationSignal.publish = lambda self, generation: None
s = Services(Path(sys.argv[1]))
s.deployments.set_routes([{"path": "/" + sys.argv[3], "function": "f"}])
s.close()
"""


def _write_in_another_process(db: Path, mode: str, path: str) -> None:
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), mode, path], cwd=ROOT, check=True, timeout=60
    )


def test_a_change_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    s = Services(tmp_path / "db")
    try:
        g = s.deployments.generation()
        assert s.deployments.generation() == g  # nothing changed: the cached answer
        _write_in_another_process(tmp_path / "db", "published", "a")
        assert s.deployments.generation() == g + 1
        assert s.deployments.routes() == [{"path": "/a", "function": "f"}]
    finally:
        s.close()


def test_an_unpublished_change_is_seen_within_the_recheck_time(tmp_path: Path) -> None:
    s = Services(tmp_path / "db")
    try:
        g = s.deployments.generation()
        _write_in_another_process(tmp_path / "db", "unpublished", "b")
        deadline = time.monotonic() + deployments.RECHECK_S + 0.5
        while s.deployments.generation() == g:
            assert time.monotonic() < deadline, "the unpublished change was never seen"
            time.sleep(0.05)
        assert s.deployments.generation() == g + 1
    finally:
        s.close()


def test_a_change_in_this_process_is_seen_at_once(tmp_path: Path) -> None:
    s = Services(tmp_path / "db")
    try:
        g = s.deployments.generation()
        s.deployments.set_app_config("triggers", {"queue": []})
        assert s.deployments.generation() == g + 1
        assert s.deployments.delete_function("nothing") is False
        assert s.deployments.generation() == g + 1
    finally:
        s.close()
