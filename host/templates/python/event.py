"""{{name}}: runs on bus events whose topic matches "{{resource}}".

Try it: nimbus publish {{topic}} '{"id": 1}'   (or: nimbus invoke {{name}} --trigger event)
"""

import nimbus


def handle(event: nimbus.BusEvent) -> dict:
    nimbus.log.info(f"{event.kind} event: topic {event.topic} from {event.source}")
    return {"kind": event.kind, "topic": event.topic, "payload": event.payload}
