"""``kv_query`` as functions and operators use it: real .wasm (Zig, C, Python) on a
real platform, a manifest's ``[tables]`` applied, the admin API and ``nimbus kv query``
against a real server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.errors import FunctionCrashed, FunctionFailed, ManifestError
from host.hostcalls.kv import MAX_PAGE_BYTES
from host.manifest.app import load_manifest
from host.manifest.functions import FunctionSpec, function_spec_from_dict
from host.manifest.grants import Grants
from host.platform.apply import apply_manifest, define_indexes
from host.platform.platform import Platform
from tests.conftest import GUESTS, Server, python_data_dir
from tests.hostile import guest, packb
from tests.test_cli import nimbus

Build = Callable[[str], Path]
GRANTS = {"tables": {"orders": "read-write", "ro": "read"}}


@pytest.fixture
def zig(platform: Platform, build: Build) -> Callable[..., list[dict[str, Any]]]:
    platform.services.indexes.define({"orders": {"at": "int", "who": "string", "raw": "bytes"}})
    spec = function_spec_from_dict("q", {"wasm": "q.wasm", "grants": GRANTS, "timeout": "5s"})
    platform.deploy(spec, build("services_zig").read_bytes())

    def run(*ops: dict[str, Any], then: str = "ok") -> list[dict[str, Any]]:
        result = platform.invoke("q", {"kind": "invoke", "input": {"ops": list(ops), "then": then}})
        out: list[dict[str, Any]] = result.response["output"]
        return out

    return run


def put(key: str, **value: Any) -> dict[str, Any]:
    return {"op": "kv_put", "table": "orders", "key": key, "value": value}


def q(**fields: Any) -> dict[str, Any]:
    return {"op": "kv_query", "table": "orders", **fields}


def keys(result: dict[str, Any]) -> list[bytes]:
    assert "ok" in result, result
    return [item[0] for item in result["ok"]["items"]]


def test_a_zig_guest_queries_with_paging_reverse_and_its_own_writes(zig: Any) -> None:
    r = zig(
        put("a", at=5, who="x", raw=b"\x02"),
        put("b", at=-3, who="y", raw=b"\x01"),
        put("c", at=5, who="x", raw=b"\x00"),
        q(index="at", eq=5),  # staged writes are queried too
    )
    assert keys(r[3]) == [b"a", b"c"]
    r = zig(
        put("d", at=100, who="z", raw=b""),
        q(index="at", limit=2),
        q(index="at", reverse=True),
        q(index="who", start="x", end="z"),
        q(index="raw", start=b"\x01"),
        q(index="at", start=0, end=100),
    )
    assert keys(r[1]) == [b"b", b"a"] and r[1]["ok"]["cursor"]
    assert keys(r[2]) == [b"d", b"c", b"a", b"b"] and r[2]["ok"]["cursor"] is None
    assert keys(r[3]) == [b"a", b"c", b"b"]
    assert keys(r[4]) == [b"b", b"a"]
    assert keys(r[5]) == [b"a", b"c"]
    assert msgpack.unpackb(msgpack.packb(r[5]["ok"]["items"][0][1])) == {
        "at": 5,
        "who": "x",
        "raw": b"\x02",
    }
    cursor = r[1]["ok"]["cursor"]
    r = zig(q(index="at", limit=2, cursor=cursor), q(index="at", limit=2, cursor=b"forged"))
    assert keys(r[0]) == [b"c", b"d"] and r[0]["ok"]["cursor"] is None
    assert r[1] == {"err": "Invalid"}


def test_a_zig_guest_gets_invalid_for_bad_writes_and_queries(zig: Any) -> None:
    r = zig(
        put("nofield", who="x", raw=b""),
        put("mistyped", at="5", who="x", raw=b""),
        {"op": "kv_put", "table": "orders", "key": "scalar", "value": 7},
        q(index="nope"),
        q(index="at", eq="five"),
        q(index="at", eq=1, start=0),
        {"op": "kv_query", "table": "other", "index": "at"},  # no grant
        {"op": "kv_query", "table": "ro", "index": "at"},  # a read grant, no index
        put("fine", at=1, who="x", raw=b""),
    )
    assert [x.get("err") for x in r[:6]] == ["Invalid"] * 6
    assert r[6] == {"err": "PermissionDenied"}
    assert r[7] == {"err": "Invalid"}
    assert "ok" in r[8]


def test_a_failed_zig_invocation_leaves_the_index_untouched(zig: Any) -> None:
    zig(put("a", at=1, who="x", raw=b""))
    with pytest.raises(FunctionFailed):
        zig(put("a", at=9, who="x", raw=b""), put("b", at=2, who="x", raw=b""), then="fail")
    with pytest.raises(FunctionCrashed):
        zig(
            put("c", at=3, who="x", raw=b""),
            {"op": "kv_delete", "table": "orders", "key": "a"},
            then="panic",
        )
    assert keys(zig(q(index="at"))[0]) == [b"a"]
    assert keys(zig(q(index="at", eq=1))[0]) == [b"a"]


def test_a_page_stops_at_its_byte_cap_with_a_cursor(zig: Any) -> None:
    big = "x" * (900 * 1024)
    for i in range(6):
        zig(
            {
                **put(f"k{i}", at=i, who="w", raw=b""),
                "value": {"at": i, "who": "w", "raw": b"", "pad": big},
            }
        )
    r = zig(q(index="at", limit=1000))
    n = len(keys(r[0]))
    assert 1 <= n < 6 and n * 900 * 1024 <= MAX_PAGE_BYTES + 900 * 1024
    assert r[0]["ok"]["cursor"]
    rest = zig(q(index="at", limit=1000, cursor=r[0]["ok"]["cursor"]))
    assert keys(r[0]) + keys(rest[0]) == [f"k{i}".encode() for i in range(6)]


def test_a_c_guest_writes_and_queries(platform: Platform, build: Build) -> None:
    platform.services.indexes.define({"orders": {"at": "int"}})
    spec = function_spec_from_dict("c", {"wasm": "c.wasm", "grants": GRANTS})
    platform.deploy(spec, build("query_c").read_bytes())
    out = platform.invoke("c", {"kind": "invoke", "input": None}).response["output"]
    statuses = [status for status, _ in out]
    assert statuses[:3] == [0, 0, 0]
    assert statuses[3] == 2 and "lacks the indexed field 'at'" in out[3][1]
    assert [i[0] for i in out[4][1]["items"]] == [b"c3"]
    assert [i[0] for i in out[5][1]["items"]] == [b"c2"] and out[5][1]["cursor"]
    assert [i[0] for i in out[6][1]["items"]] == [b"c3"] and out[6][1]["cursor"] is None
    assert [i[0] for i in out[7][1]["items"]] == [b"c1", b"c3", b"c2"]
    assert statuses[8] == 2 and "no index 'missing'" in out[8][1]
    assert statuses[9] == 2 and "not one this query" in out[9][1]  # reverse ≠ its query


@pytest.fixture(scope="module")
def py(tmp_path_factory: pytest.TempPathFactory, python_cache: Path) -> Iterator[Platform]:
    from host.toolchain.builder import build_function

    p = Platform(python_data_dir(tmp_path_factory.mktemp("pyq"), python_cache))
    p.services.indexes.define({"orders": {"at": "int", "who": "string"}})
    wasm = build_function(GUESTS / "query_py").wasm.read_bytes()
    p.deploy(function_spec_from_dict("pq", {"wasm": "p.wasm", "grants": GRANTS}), wasm)
    yield p
    p.close()


def test_a_python_guest_writes_and_queries(py: Platform) -> None:
    def run(*ops: dict[str, Any], fail: bool = False) -> Any:
        event = {"kind": "invoke", "input": {"ops": list(ops), "fail": fail}}
        return py.invoke("pq", event).response.get("output")

    writes = [
        {"op": "put", "key": f"p{i}", "value": {"at": i % 4, "who": f"w{i}"}} for i in range(10)
    ]
    out = run(*writes, {"op": "all", "index": "at", "eq": 2, "limit": 1})
    assert out[-1] == {"ok": [b"p2", b"p6"]}
    out = run(
        {"op": "query", "index": "at", "start": 1, "end": 3, "limit": 3},
        {"op": "all", "index": "at", "reverse": True, "limit": 4},
        {"op": "query", "index": "who", "eq": "w7"},
        {"op": "put", "key": "bad", "value": {"at": 1}},
        {"op": "query", "index": "nope"},
        {"op": "query", "index": "at", "eq": "1"},
    )
    page = out[0]["ok"]
    assert [i[0] for i in page["items"]] == [b"p1", b"p5", b"p9"] and page["cursor"]
    assert out[1]["ok"][:4] == [b"p7", b"p3", b"p6", b"p2"] and len(out[1]["ok"]) == 10
    assert out[2]["ok"]["items"][0][1] == {"at": 3, "who": "w7"}
    assert out[3]["err"] == "Invalid" and "lacks the indexed field 'who'" in out[3]["message"]
    assert out[4]["err"] == "Invalid" and out[5]["err"] == "Invalid"
    # a failing invocation's writes are not indexed
    with pytest.raises(FunctionCrashed):
        run(
            {"op": "delete", "key": "p2"},
            {"op": "put", "key": "n", "value": {"at": 2, "who": ""}},
            fail=True,
        )
    assert run({"op": "all", "index": "at", "eq": 2})[0] == {"ok": [b"p2", b"p6"]}


# --- the manifest, the admin API and the CLI ------------------------------------------------

APP = """
[functions.q]
wasm = "{wasm}"
grants = {{ tables = {{ orders = "read-write" }} }}

[tables.orders]
indexes = {{ {indexes} }}
"""


def write_app(root: Path, wasm: Path, indexes: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / "nimbus.toml").write_text(APP.format(wasm=wasm, indexes=indexes))
    return root


def test_applying_a_manifest_defines_back_fills_and_refuses(
    platform: Platform, build: Build, tmp_path: Path
) -> None:
    wasm = build("services_zig")
    app = write_app(tmp_path / "app", wasm, 'at = "int"')
    e = platform.services.begin("seed")
    for i in range(20):
        e.kv_put("orders", f"o{i}".encode(), msgpack.packb({"at": 20 - i, "who": f"w{i}"}))
    assert e.commit()
    apply_manifest(platform, load_manifest(app))
    assert platform.services.indexes.defined() == {"orders": {"at": "int"}}
    out = platform.invoke(
        "q", {"kind": "invoke", "input": {"ops": [q(index="at", end=3)]}}
    ).response["output"]
    assert keys(out[0]) == [b"o19", b"o18"]
    write_app(app, wasm, 'at = "int", missing = "string"')
    with pytest.raises(ManifestError, match=r"(?s)\[tables\].*lacks the indexed field 'missing'"):
        define_indexes(platform, load_manifest(app))
    assert platform.services.indexes.defined() == {"orders": {"at": "int"}}
    (app / "nimbus.toml").write_text(f'[functions.q]\nwasm = "{wasm}"\n')
    define_indexes(platform, load_manifest(app))  # the section removed: the index goes
    assert platform.services.indexes.defined() == {}


def test_the_manifest_refuses_bad_index_declarations(tmp_path: Path) -> None:
    (tmp_path / "nimbus.toml").write_text(
        '[tables.orders]\nindexes = { at = "float", "a b" = "int" }\nsort = "at"\n'
        '[tables."bad name!"]\nindexes = {}\n'
    )
    with pytest.raises(ManifestError) as raised:
        load_manifest(tmp_path)
    message = str(raised.value)
    assert "tables.orders.indexes.at" in message and "expected one of int, string, bytes" in message
    assert "index name 'a b' is invalid" in message
    assert "tables.orders.sort: unknown key" in message
    assert "not a valid table name" in message


def test_admin_api_and_cli_query(
    start_server: Callable[..., Server], build: Build, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "app", build("services_zig"), 'at = "int", who = "string"')
    server = start_server("up", str(app), "--data", str(tmp_path / "data"))
    remote = ["--url", server.url, "--token", "test-token"]
    auth = {"authorization": "Bearer test-token"}
    for i in range(5):
        value = json.dumps({"at": i * 10, "who": "ab"[i % 2]})
        assert nimbus("kv", "put", "orders", f"o{i}", value, *remote).returncode == 0
    r = nimbus("kv", "put", "orders", "bad", '{"at": "x", "who": "a"}', *remote)
    assert r.returncode == 1 and "400" in r.stderr and "must be an integer" in r.stderr

    base = f"{server.url}/_admin/tables/orders/query"
    page = httpx.get(base, params={"index": "at", "start": "10", "limit": "2"}, headers=auth)
    assert page.status_code == 200, page.text
    assert [i["key"] for i in page.json()["items"]] == ["o1", "o2"]
    nxt = httpx.get(
        base,
        params={"index": "at", "start": "10", "limit": "2", "cursor": page.json()["cursor"]},
        headers=auth,
    ).json()
    assert [i["key"] for i in nxt["items"]] == ["o3", "o4"] and nxt["cursor"] is None
    assert nxt["items"][0]["value"] == {"at": 30, "who": "b"}
    for params in (
        {"index": "nope"},
        {},
        {"index": "at", "eq": "ten"},
        {"index": "at", "eq": "1", "end": "2"},
        {"index": "at", "cursor": "zz"},
        {"index": "at", "cursor": "00"},
        {"index": "at", "reverse": "maybe"},
    ):
        bad = httpx.get(base, params=params, headers=auth)
        assert bad.status_code == 400, (params, bad.text)
    assert httpx.get(base, params={"index": "at"}).status_code == 401

    r = nimbus("kv", "query", "orders", "who", "--eq", "a", "--json", *remote)
    assert r.returncode == 0, r.stderr
    assert [i["key"] for i in json.loads(r.stdout)["items"]] == ["o0", "o2", "o4"]
    r = nimbus("kv", "query", "orders", "at", "--reverse", "--limit", "2", *remote)
    assert "o4" in r.stdout and "o3" in r.stdout and "o2" not in r.stdout and "--cursor" in r.stdout
    r = nimbus("kv", "indexes", "orders", *remote)
    assert json.loads(r.stdout) == {"at": "int", "who": "string"}
    r = nimbus("kv", "query", "orders", "nope", *remote)
    assert r.returncode == 1 and "no index 'nope'" in r.stderr


# --- an attacker's requests ------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.binary(max_size=300),
)
TYPED = {
    "at": st.integers(min_value=-20, max_value=20),
    "who": st.sampled_from(["", "w1", "w2", "w3\x00", "x"]),
    "raw": st.binary(max_size=2),
}


@st.composite
def plausible(draw: st.DrawFn) -> dict[str, Any]:
    """A request that is right but for at most one field: a real index, bounds of its
    type, a limit, a direction."""
    index = draw(st.sampled_from(sorted(TYPED)))
    req: dict[str, Any] = {"table": "orders", "index": index}
    if draw(st.booleans()):
        req["eq"] = draw(TYPED[index])
    else:
        for bound in ("start", "end"):
            if draw(st.booleans()):
                req[bound] = draw(TYPED[index])
    req["limit"] = draw(st.integers(min_value=0, max_value=40))
    req["reverse"] = draw(st.booleans())
    wrong = draw(st.sampled_from([None, None, None, "eq", "start", "limit", "reverse", "cursor"]))
    if wrong:
        req[wrong] = draw(scalars)
    return req


wild = st.fixed_dictionaries(
    {"table": st.sampled_from(["orders", "ro", "other", "", 5])},
    optional={
        "index": st.one_of(st.sampled_from(["at", "who", "raw", "nope", ""]), scalars),
        "eq": scalars,
        "start": scalars,
        "end": scalars,
        "limit": st.one_of(st.integers(min_value=-5, max_value=1 << 40), scalars),
        "cursor": scalars,
        "reverse": scalars,
        "extra": scalars,
    },
)
requests = st.one_of(plausible(), wild)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = Platform(tmp_path_factory.mktemp("hostile"))
    p.services.indexes.define({"orders": {"at": "int", "who": "string", "raw": "bytes"}})
    e = p.services.begin("seed")
    for i in range(30):
        value = {"at": i - 15, "who": f"w{i % 4}", "raw": bytes([i % 5])}
        e.kv_put("orders", f"k{i:02}".encode(), msgpack.packb(value))
    assert e.commit()
    yield p
    p.close()


@settings(
    max_examples=int(os.environ.get("NIMBUS_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(req=requests)
def test_random_query_requests_answer_a_status(hostile: Platform, req: dict[str, Any]) -> None:
    spec = FunctionSpec(name="h", grants=Grants(tables={"orders": "read", "ro": "read"}))
    wasm = guest(call=("kv_query", packb(req)))
    status, value = hostile.invoke_module(spec, wasm, {"kind": "invoke"}).response["output"]
    assert status in (0, 1, 2), value
    if status == 0:
        assert len(value["items"]) <= 1000
        field = req["index"]
        got = [(v[field], k) for k, v, _ in value["items"]]
        assert got == sorted(got, reverse=req.get("reverse") is True)
        lo, hi = (req.get("eq"), req.get("eq")) if "eq" in req else (None, None)
        lo, hi = req.get("start", lo), req.get("end", hi)
        assert all((lo is None or v >= lo) and (hi is None or v <= hi) for v, _ in got)


def test_the_admin_api_shows_values_whose_map_keys_are_not_strings(platform: Platform) -> None:
    from host.gateway.tables_api import TablesApi

    platform.services.indexes.define({"orders": {"at": "int"}})
    e = platform.services.begin("guest")
    e.kv_put("orders", b"k", msgpack.packb({"at": 1, 7: "seven"}))  # as a guest may
    assert e.commit()
    api = TablesApi(platform.services, "admin")
    page = api.query_table("orders", "at", {"eq": "1"}, None, 10)
    assert page["items"] == [{"key": "k", "value": {"at": 1, "7": "seven"}, "version": 1}]
    assert api.scan_table("orders", "", None, 10)["items"] == page["items"]
