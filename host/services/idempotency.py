"""The ids of the events whose effects were committed, so a redelivery applies nothing.

A trigger that delivers an event with a stable id passes it to ``Effects.commit``;
the id is recorded in the transaction that applies the effects, so "applied" and
"recorded" cannot disagree after a crash.
"""

from __future__ import annotations

import time
from typing import Any

from host.services.storage import Storage


class Idempotency:
    """Committed event ids, each with the time it was committed (ms)."""

    def __init__(self, storage: Storage) -> None:
        self.db = storage.db(b"idempotency")

    def seen(self, txn: Any, idempotency_id: str) -> bool:
        return txn.get(idempotency_id.encode(), db=self.db) is not None

    def remember(self, txn: Any, idempotency_id: str) -> None:
        txn.put(idempotency_id.encode(), str(int(time.time() * 1000)).encode(), db=self.db)
