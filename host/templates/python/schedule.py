"""{{name}}: runs on the schedule "{{resource}}" (its cron is in nimbus.toml).

Try it: nimbus invoke {{name}} --trigger schedule
"""

import nimbus


def handle(event: nimbus.ScheduleEvent) -> dict:
    nimbus.log.info(f"{event.kind} event: {event.schedule} fired for {event.scheduled_ms}")
    return {"kind": event.kind, "schedule": event.schedule, "scheduled_ms": event.scheduled_ms}
