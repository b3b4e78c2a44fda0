"""HandleDailyCleanup: forgets the processed orders older than 30 days.

Runs on cron `0 3 * * *` (UTC) as schedule `daily-cleanup`, and now with
`nimbus schedules run daily-cleanup`. It reads `processed_orders` through its
`processedAt` index (declared under [tables.processed_orders] in nimbus.toml), so it
touches only the rows it deletes, and logs how many it deleted. The cut-off is
`RETENTION_DAYS` (env, default 30) before the schedule's time. One run deletes at most
MAX_DELETES rows (one invocation's writes are bounded); it says so when more are left,
and the next run (or another `schedules run`) takes the rest.
"""

import nimbus

DAY_MS = 86_400_000
MAX_DELETES = 900


def handle(event: nimbus.Event):
    now = getattr(event, "scheduled_ms", 0) or nimbus.now_ns() // 1_000_000
    days = int(event.env.get("RETENTION_DAYS", "30"))
    cutoff = now - days * DAY_MS
    deleted, cursor = 0, None
    while deleted < MAX_DELETES:
        rows, cursor = nimbus.tables.query(
            "processed_orders",
            "processedAt",
            end=cutoff,
            limit=min(100, MAX_DELETES - deleted),
            cursor=cursor,
        )
        for key, _value, version in rows:
            nimbus.tables.delete("processed_orders", key, if_version=version)
            deleted += 1
        if cursor is None:
            break
    more = " (more are left for the next run)" if cursor is not None else ""
    nimbus.log.info(
        f"cleanup: deleted {deleted} processed order(s) older than {days} days{more}"
    )
    return {"output": {"deleted": deleted, "cutoffMs": cutoff, "more": cursor is not None}}
