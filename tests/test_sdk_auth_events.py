"""The Python SDK's typed events for the caller (``auth``) and the ``authorizer`` kind,
decoded from the envelopes the gateway sends (guest_sdk/python/nimbus/events.py)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import msgpack

from tests.conftest import ROOT


def sdk(name: str) -> ModuleType:
    """One SDK module, loaded alone (the package needs the component world's imports)."""
    path = ROOT / "guest_sdk" / "python" / "nimbus" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"nimbus_sdk_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


COMMON = {"id": "req-1", "request_id": "req-1", "function": "f", "deadline_ms": 1, "env": {}}


def test_http_event_carries_the_caller() -> None:
    events = sdk("events")
    auth = {"kind": "jwt", "subject": "u-1", "claims": {"scope": "a"}, "key_id": None}
    ev = events.decode(msgpack.packb({**COMMON, "kind": "http", "path": "/x", "auth": auth}))
    assert isinstance(ev, events.HttpEvent)
    assert ev.auth == events.Auth("jwt", "u-1", {"scope": "a"}, None)
    plain = events.decode(msgpack.packb({**COMMON, "kind": "http", "path": "/x"}))
    assert plain.auth is None


def test_authorizer_event_and_answer() -> None:
    events, response = sdk("events"), sdk("response")
    raw = {
        **COMMON,
        "kind": "authorizer",
        "method": "GET",
        "path": "/orders/7",
        "route": "/orders/{id}",
        "params": {"id": "7"},
        "query": {},
        "headers": {"authorization": "Bearer t"},
        "source_ip": "127.0.0.1",
        "identity": "Bearer t",
    }
    ev = events.decode(msgpack.packb(raw))
    assert isinstance(ev, events.AuthorizerEvent)
    assert (ev.identity, ev.route, ev.source_ip) == ("Bearer t", "/orders/{id}", "127.0.0.1")
    answer = response.Response.authorize(True, "alice", {"role": "admin"}).to_map()
    assert answer["output"] == {"allow": True, "subject": "alice", "context": {"role": "admin"}}
    assert response.Response.authorize(False).to_map()["output"]["allow"] is False
