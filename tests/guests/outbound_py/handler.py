"""The Python SDK's outbound HTTP and secrets: one POST with a granted secret as its
authorization, one denied host, one secret not granted; the results as the output."""

import nimbus


def handle(event: nimbus.InvokeEvent):
    out = {}
    key = nimbus.secrets.get("PAY_KEY")
    r = nimbus.http.fetch(
        event.input["url"],
        method="POST",
        headers={"authorization": f"Bearer {key}"},
        json={"amount": 42},
    )
    out["status"], out["echo"], out["x-echo"] = r.status, r.json(), r.headers["x-echo"]
    try:
        nimbus.http.fetch(event.input["denied"])
    except nimbus.PermissionDenied as e:
        out["denied"] = str(e)
    try:
        nimbus.secrets.get("NOT_GRANTED")
    except nimbus.PermissionDenied as e:
        out["secret_denied"] = str(e)
    return {"output": out}
