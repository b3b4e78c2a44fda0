"""Wake-ups from other hosts: ``LISTEN`` on one connection of its own.

A commit that sends messages or appends records announces itself on
``nimbus_commit``; a deploy on ``nimbus_deploy``; an API key's change on
``nimbus_apikeys``. This thread turns them into the
local wake-ups the LMDB backend gets from its own process: consumers waiting in
``wait_for_commit`` wake at once, and the deployments' and API keys' generations
are re-read. It also re-reads them every ``POLL_S`` (a notification sent while the
connection was down is not replayed), and reconnects after a failure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from host.services.pg.apikeys import CHANNEL as APIKEYS_CHANNEL
from host.services.pg.store import PgStore

log = logging.getLogger("nimbus.storage")

COMMIT_CHANNEL = "nimbus_commit"
#: the longest a deploy by another host goes unnoticed if its notification is lost
POLL_S = 0.25


class Listener:
    """A daemon thread relaying ``NOTIFY`` to callbacks."""

    def __init__(
        self, store: PgStore, on_commit: Callable[[], None], on_deploy: Callable[[], object]
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._on_deploy = on_deploy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nimbus-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._store.connect() as conn:
                    conn.execute(f"LISTEN {COMMIT_CHANNEL}")
                    conn.execute("LISTEN nimbus_deploy")
                    conn.execute(f"LISTEN {APIKEYS_CHANNEL}")
                    self._on_deploy()
                    while not self._stop.is_set():
                        commit = deploy = False
                        for n in conn.notifies(timeout=POLL_S, stop_after=64):
                            commit |= n.channel == COMMIT_CHANNEL
                            deploy |= n.channel != COMMIT_CHANNEL
                        if commit:
                            self._on_commit()
                        self._on_deploy()
            except Exception:
                if not self._stop.is_set():
                    log.warning("listening for other hosts failed; retrying", exc_info=True)
                    self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
