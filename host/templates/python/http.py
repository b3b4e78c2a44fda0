"""{{name}}: an HTTP function. GET /{{name}}/{name} answers JSON.

Build and try it: nimbus invoke {{name}} --http GET /{{name}}/ada
"""

import nimbus


def handle(event: nimbus.HttpEvent) -> nimbus.Response:
    name = event.params.get("name") or event.query.get("name") or "world"
    nimbus.log.info(f"{event.kind} event: {event.method} {event.path}")
    return nimbus.Response.json(
        {"message": f"hello, {name}", "kind": event.kind, "function": event.function}
    )
