"""{{name}}: runs when an object is put into or deleted from the bucket "{{resource}}".

Try it: nimbus blob put {{resource}} a.txt ./a.txt   (or: nimbus invoke {{name}} --trigger storage)
"""

import nimbus


def handle(event: nimbus.StorageEvent) -> dict:
    nimbus.log.info(f"{event.kind} event: {event.op} {event.bucket}/{event.key}")
    return {"kind": event.kind, "op": event.op, "bucket": event.bucket, "key": event.key}
