"""Each request and response transform operation alone (host/gateway/policies/transforms.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from host.errors import InvalidRequest
from host.gateway.policies import transforms as t
from host.manifest.transforms import RequestTransform, ResponseTransform


def event(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "http",
        "method": "POST",
        "path": "/orders/o-1",
        "params": {"id": "o-1"},
        "query": {"page": "3", "q": "shoes"},
        "headers": {"content-type": "application/json", "content-length": "24", "x-a": "1"},
        "body": b'{"id": 7, "lines": [1, 2]}',
    }
    return {**base, **over}


def test_set_remove_rename_headers() -> None:
    h = {"a": "1", "b": "2"}
    assert t.set_headers(h, {"b": "3", "c": "4"}) == {"a": "1", "b": "3", "c": "4"}
    assert t.remove_headers(h, ("a", "zz")) == {"b": "2"}
    assert t.rename_headers(h, {"a": "x"}) == {"x": "1", "b": "2"}


def test_rewrite_path_fills_params_and_says_which_is_missing() -> None:
    assert (
        t.rewrite_path("/v2/{id}/items/{rest...}", {"id": "7", "rest": "a/b"}) == "/v2/7/items/a/b"
    )
    with pytest.raises(InvalidRequest, match="'nope'"):
        t.rewrite_path("/v2/{nope}", {})


def test_template_paths_literals_and_nesting() -> None:
    context = {"body": {"id": 7, "lines": [{"sku": "a"}]}, "params": {"id": "o-1"}}
    template = {
        "orderId": "$.body.id",
        "first": "$.body.lines.0.sku",
        "missing": "$.body.nope.deeper",
        "fromPath": "$.params.id",
        "source": "api",
        "dollar": "$$.body.id",
        "list": ["$.body.id", 1, True, None],
    }
    assert t.render(template, context) == {
        "orderId": 7,
        "first": "a",
        "missing": None,
        "fromPath": "o-1",
        "source": "api",
        "dollar": "$.body.id",
        "list": [7, 1, True, None],
    }


def test_query_and_params_into_the_body() -> None:
    tr = RequestTransform(query_to_body={"page": "pageNumber"}, params_to_body={"id": "orderId"})
    out = t.transform_event(tr, event())
    assert json.loads(out["body"]) == {
        "id": 7,
        "lines": [1, 2],
        "pageNumber": "3",
        "orderId": "o-1",
    }
    assert "content-length" not in out["headers"]
    with pytest.raises(InvalidRequest, match="object"):
        t.into_body([1], {"a": "1"}, {"a": "a"})


def test_body_template_and_empty_and_bad_bodies() -> None:
    tr = RequestTransform(body={"orderId": "$.body.id", "by": "$.method"})
    assert json.loads(t.transform_event(tr, event())["body"]) == {"orderId": 7, "by": "POST"}
    assert json.loads(t.transform_event(tr, event(body=b""))["body"]) == {
        "orderId": None,
        "by": "POST",
    }
    with pytest.raises(InvalidRequest, match="JSON"):
        t.transform_event(tr, event(body=b"{nope"))


def test_request_transform_order_and_untouched_body() -> None:
    tr = RequestTransform(
        set_headers={"x-b": "set"},
        remove_headers=("x-a",),
        rename_headers={"content-type": "x-original-type"},
        path="/internal/{id}",
    )
    out = t.transform_event(tr, event())
    assert out["path"] == "/internal/o-1"
    assert out["headers"] == {
        "x-original-type": "application/json",
        "content-length": "24",
        "x-b": "set",
    }
    assert out["body"] == event()["body"]  # no body mapping: the bytes pass as they came


def test_pick_is_a_json_pointer() -> None:
    doc = {"a": {"b/c": [10, 20]}, "m~n": 1}
    assert t.pick(doc, "/a/b~1c/1") == 20
    assert t.pick(doc, "/m~0n") == 1
    assert t.pick(doc, "/a/zz") is None
    assert t.pick(doc, "") == doc


def test_response_status_headers_wrap_and_pick() -> None:
    response = {"status": 404, "headers": {"Server": "x", "a": "1"}, "body": b'{"items": [5]}'}
    tr = ResponseTransform(
        set_headers={"cache-control": "no-store"},
        remove_headers=("server",),
        status={404: 200},
        pick="/items/0",
        wrap="data",
    )
    out = t.transform_response(tr, response)
    assert out["status"] == 200
    assert out["headers"] == {"a": "1", "cache-control": "no-store"}
    assert out["body"] == {"data": 5}
    assert t.map_status(500, {404: 200}) == 500
    # a text body is wrapped as a string; an output value as is
    assert t.transform_response(ResponseTransform(wrap="v"), {"body": "hi"})["body"] == {"v": "hi"}
    assert t.transform_response(ResponseTransform(wrap="v"), {"output": [1]})["body"] == {"v": [1]}
