"""{{name}}: runs on each batch of messages sent to the queue "{{resource}}".

Try it: nimbus queue send {{resource}} '{"n": 1}'   (or: nimbus invoke {{name}} --trigger queue)
Returning acks the whole batch; raising an exception retries it.
"""

import nimbus


def handle(event: nimbus.QueueEvent) -> dict:
    nimbus.log.info(
        f"{event.kind} event: {len(event.messages)} message(s) from queue {event.queue}"
    )
    return {"kind": event.kind, "queue": event.queue, "messages": len(event.messages)}
