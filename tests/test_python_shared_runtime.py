"""Many Python functions in one shared runtime: each answers from its own code, with
its own limits and grants, and a redeploy changes only the function redeployed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host.errors import DeployError, FunctionOutOfMemory, FunctionTimeout
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.toolchain.builder import build_function
from tests.conftest import garbage_cycles, python_data_dir

COUNT = 10

HANDLER = """
import nimbus
import util

calls = 0

def handle(event):
    global calls
    calls += 1
    what = event.input.get("do") if isinstance(event.input, dict) else None
    if what == "loop":
        while True:
            pass
    if what == "hoard":
        return len(bytearray(event.input["mib"] << 20))
    if what == "read":
        return nimbus.tables.get("t", "k")
    if what == "write":
        return nimbus.tables.put("t", "k", {{"by": {i}}})
    return {{"me": {i}, "util": util.WHO, "calls": calls, "cached": util.remember()}}
"""

UTIL = """
WHO = "util of function {i}"
seen = []

def remember():
    seen.append(1)
    return len(seen)
"""


def _write(d: Path, i: int, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "handler.py").write_text(HANDLER.format(i=i) + extra)
    (d / "util.py").write_text(UTIL.format(i=i))
    return d


def _spec(i: int, **over: Any) -> Any:
    fields: dict[str, Any] = {"wasm": f"f{i}.wasm", "timeout": "2s", "memory": "64MiB"}
    if i % 2 == 0:  # even functions may read and write table t; odd ones nothing
        fields["grants"] = {"tables": {"t": "read-write"}}
    return function_spec_from_dict(f"f{i}", {**fields, **over})


@pytest.fixture(scope="module")
def ten(
    tmp_path_factory: pytest.TempPathFactory, python_cache: Path
) -> Iterator[tuple[Platform, Path]]:
    root = tmp_path_factory.mktemp("ten")
    p = Platform(python_data_dir(root, python_cache))
    for i in range(COUNT):
        wasm = build_function(_write(root / f"f{i}", i)).wasm.read_bytes()
        p.deploy(_spec(i), wasm)
    yield p, root
    p.close()


@pytest.fixture
def fresh(tmp_path: Path, python_cache: Path) -> Iterator[Platform]:
    p = Platform(python_data_dir(tmp_path / "p", python_cache))
    yield p
    p.close()


def call(p: Platform, name: str, **input: Any) -> Any:
    return p.invoke(name, {"kind": "invoke", "input": input}).response["output"]


def deploy_source(root: Path, p: Platform, source: str, **over: Any) -> None:
    """Deploy, as f0, a function whose handler.py is ``source``."""
    src = root / "fn"
    src.mkdir()
    (src / "handler.py").write_text(source)
    p.deploy(_spec(0, **over), build_function(src).wasm.read_bytes())


def test_each_function_answers_from_its_own_modules(ten: tuple[Platform, Path]) -> None:
    p, _ = ten
    for i in range(COUNT):
        out = call(p, f"f{i}")
        assert out["me"] == i and out["util"] == f"util of function {i}"


def test_module_state_does_not_survive_a_call(ten: tuple[Platform, Path]) -> None:
    p, _ = ten
    outs = [call(p, "f3") for _ in range(3)]
    assert [(o["calls"], o["cached"]) for o in outs] == [(1, 1)] * 3


def test_one_runtime_compiled_once_for_all(ten: tuple[Platform, Path]) -> None:
    p, _ = ten
    host = p.runtime.python()
    assert host.cache.compiles + host.cache.hits == 1  # ten functions, one runtime load
    shas = {d.sha256 for d in p.registry.list()}
    code = [f for f in (host.cache.dir / "python").glob("*.code") if f.name.split(".")[0] in shas]
    assert len(code) == COUNT and all(f.stat().st_size < 64 * 1024 for f in code)


def test_grants_are_per_function(ten: tuple[Platform, Path]) -> None:
    p, _ = ten
    assert call(p, "f0", do="write") == 1
    assert call(p, "f2", do="read")[0] == {"by": 0}
    with pytest.raises(Exception, match="grant"):
        call(p, "f1", do="read")


def test_limits_are_per_function(ten: tuple[Platform, Path]) -> None:
    p, root = ten
    with pytest.raises(FunctionOutOfMemory, match="64 MiB"):
        call(p, "f4", do="hoard", mib=80)
    big = build_function(root / "f5").wasm.read_bytes()
    p.deploy(_spec(5, memory="256MiB"), big)
    assert call(p, "f5", do="hoard", mib=80) == 80 << 20
    with pytest.raises(FunctionTimeout):
        call(p, "f6", do="loop")
    assert call(p, "f6")["me"] == 6  # and the host keeps serving


def test_a_memory_cap_below_the_runtime_is_refused_at_deploy(ten: tuple[Platform, Path]) -> None:
    """The runtime's memory starts at its snapshot's size: a smaller cap could never
    instantiate, so deploying it fails at once, saying what to set."""
    p, root = ten
    wasm = build_function(root / "f3").wasm.read_bytes()
    with pytest.raises(DeployError, match=r'memory cap \(16 MiB\) is below .* memory = "\d+MiB"'):
        p.deploy(_spec(3, memory="16MiB"), wasm)
    assert call(p, "f3")["me"] == 3  # the deployed version still serves


def test_redeploy_changes_only_that_function(ten: tuple[Platform, Path]) -> None:
    p, root = ten
    for i in range(COUNT):
        call(p, f"f{i}")  # all warm
    compiles = p.runtime.python().cache.compiles
    _write(root / "f7", 7, extra="\nWHO_AM_I = 'new'\n")
    (root / "f7" / "util.py").write_text('WHO = "changed"\ndef remember():\n    return 0\n')
    p.deploy(_spec(7), build_function(root / "f7").wasm.read_bytes())
    assert call(p, "f7")["util"] == "changed"
    warm = set(p.pool.keys())
    assert all(any(k.startswith(f"f{i}@") for k in warm) for i in range(COUNT) if i != 7)
    assert call(p, "f8")["util"] == "util of function 8"
    assert p.runtime.python().cache.compiles == compiles  # the runtime was not recompiled


def test_standard_library_on_demand_and_fresh_randomness(tmp_path: Path, fresh: Platform) -> None:
    src = tmp_path / "fn"
    src.mkdir()
    (src / "handler.py").write_text(
        "import random, json, re, datetime, dataclasses\n"
        "def handle(event):\n"
        "    import xml.dom.minidom, tomllib, fractions\n"
        "    doc = xml.dom.minidom.parseString('<a>1</a>')\n"
        "    try:\n"
        "        import sqlite3\n"
        "        sql = 'imported'\n"
        "    except ImportError as e:\n"
        "        sql = 'refused'\n"
        "    return {'tag': doc.documentElement.tagName, 'toml': tomllib.loads('x = 1'),\n"
        "            'r': random.random(), 'sql': sql}\n"
    )
    fresh.deploy(_spec(0), build_function(src).wasm.read_bytes())
    a, b = call(fresh, "f0"), call(fresh, "f0")
    assert a["tag"] == "a" and a["toml"] == {"x": 1} and a["sql"] == "refused"
    assert a["r"] != b["r"]  # each instance reseeds: no two calls share a sequence


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def handle(event)\n    return 1\n", r"handler\.py:1: expected ':'"),
        ("def other(event):\n    return 1\n", r"handler\.py defines no handle"),
    ],
)
def test_bad_sources_are_refused_at_deploy(
    tmp_path: Path, fresh: Platform, source: str, message: str
) -> None:
    src = tmp_path / "fn"
    src.mkdir()
    (src / "handler.py").write_text(source)
    with pytest.raises(DeployError, match=message):
        fresh.deploy(_spec(0), build_function(src).wasm.read_bytes())


def test_a_module_named_nimbus_is_refused(tmp_path: Path) -> None:
    from host.errors import BuildError

    (tmp_path / "handler.py").write_text("def handle(event):\n    return 1\n")
    (tmp_path / "nimbus.py").write_text("X = 1\n")
    with pytest.raises(BuildError, match="hide the Nimbus SDK"):
        build_function(tmp_path)


def test_pure_python_requirements_just_work(tmp_path: Path, fresh: Platform) -> None:
    src = tmp_path / "fn"
    src.mkdir()
    (src / "function.toml").write_text('requirements = ["six==1.16.0", "attrs==23.2.0"]\n')
    (src / "handler.py").write_text(
        "import six\n"
        "from attr import define\n\n"
        "@define\n"
        "class Point:\n"
        "    x: int\n\n"
        "def handle(event):\n"
        "    return {'six': six.PY3, 'attrs': Point(3).x}\n"
    )
    fresh.deploy(_spec(0), build_function(src).wasm.read_bytes())
    assert call(fresh, "f0") == {"six": True, "attrs": 3}


def test_every_byte_crosses_both_ways(tmp_path: Path, fresh: Platform) -> None:
    """Code, event and reply cross linear memory as bytes: every byte value arrives and
    comes back as it was, in a body of a few hundred KiB."""
    deploy_source(
        tmp_path,
        fresh,
        "# non-ASCII in the code bundle too: é€\n"
        "import nimbus\n"
        "def handle(event):\n"
        "    return nimbus.Response.bytes(event.body[::-1] + 'é€'.encode(), 'x/y')\n",
    )
    body = bytes(range(256)) * 1024
    out = fresh.invoke("f0", {"kind": "http", "method": "POST", "path": "/", "body": body})
    assert out.response["body"] == body[::-1] + "é€".encode()


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        ("Reply()", "FunctionCrashed", r"the Python runtime failed"),  # not bytes at all
        ("b'\\xc1'", "AbiError", r"refused|msgpack"),  # bytes, but not msgpack
    ],
)
def test_a_reply_that_is_not_a_response_is_refused(
    tmp_path: Path, fresh: Platform, reply: str, error: str, message: str
) -> None:
    """A handler that tampers with the runtime so that ``handle`` replies with what the
    host never accepts: a clear error, and the host serves on."""
    from host import errors

    deploy_source(
        tmp_path,
        fresh,
        "import nimbus._pack\n"
        "class Reply:\n"
        "    pass\n"
        "def handle(event):\n"
        f"    nimbus._pack.packb = lambda value: {reply}\n"
        "    return 1\n",
    )
    expected = getattr(errors, error)
    with pytest.raises(expected, match=message):
        fresh.invoke("f0", {"kind": "invoke", "input": None})
    with pytest.raises(expected, match=message):  # a fresh instance: it fails the same way
        fresh.invoke("f0", {"kind": "invoke", "input": None})


STATE_PROBE = """
import linecache, random, sys

def handle(event):
    return {
        "modules": sorted(sys.modules),
        "meta_path": [type(f).__name__ for f in sys.meta_path],
        "linecache": sorted(linecache.cache),
        "random": random.random(),
    }
"""


def test_a_warmed_instance_looks_like_a_new_one(tmp_path: Path, python_cache: Path) -> None:
    """An instance made ahead runs the SDK's warm-up before it serves: the function
    then finds the interpreter exactly as in an instance made for it inline (no module,
    importer or cached line of the warm-up), and its own fresh random seed."""
    import time

    from bench.runtime import hello_event
    from host.hostcalls.catalog import all_host_functions
    from host.platform.python_runtime import runtime_wasm
    from host.runtime.invocation import Invocation
    from host.runtime.runtime import Runtime

    (tmp_path / "handler.py").write_text(STATE_PROBE)
    wasm = build_function(tmp_path).wasm.read_bytes()
    seen = []
    for mode in ("made_ahead", "inline"):
        rt = Runtime(
            python_cache, all_host_functions(), python_runtime=runtime_wasm, python_instances=mode
        )
        try:
            fn = rt.load("probe", wasm)
            if mode == "made_ahead":  # wait for them, so that the call takes a warmed one
                ready = fn.ready
                deadline = time.monotonic() + 30
                while len(ready._ready) < 2:
                    assert time.monotonic() < deadline, "no instance was made ahead"
                    time.sleep(0.01)
            else:
                assert fn.ready is None
            seen.append(rt.invoke(fn, hello_event(), Invocation("r", "probe"))["output"])
        finally:
            rt.close()
    warmed, inline = seen
    assert warmed["random"] != inline["random"]
    del warmed["random"], inline["random"]
    assert warmed == inline
    assert "warm" not in str(warmed)


def test_service_values_cross_whole(tmp_path: Path, fresh: Platform) -> None:
    """A service request and reply, and random bytes, cross whole: every byte value of a
    few hundred KiB survives a put and a get."""
    deploy_source(
        tmp_path,
        fresh,
        "import nimbus\n"
        "def handle(event):\n"
        "    value = bytes(range(256)) * 1024\n"
        "    nimbus.tables.put('t', 'k', value)\n"
        "    got = nimbus.tables.get('t', 'k')[0]\n"
        "    noise = nimbus.random_bytes(70000)\n"
        "    return [got == value, len(noise), len(set(noise))]\n",
        memory="128MiB",
    )
    same, n, distinct = call(fresh, "f0")
    assert same and n == 70000 and distinct > 200


def test_a_request_that_is_not_bytes_is_refused(tmp_path: Path, fresh: Platform) -> None:
    """The runtime's ``_nimbus.call`` takes the request as bytes: anything else is the
    function's TypeError (its crash), before the host is called."""
    from host.errors import FunctionCrashed

    deploy_source(
        tmp_path,
        fresh,
        "import _nimbus\ndef handle(event):\n    return _nimbus.call('kv_get', '\\u0100')\n",
    )
    with pytest.raises(FunctionCrashed, match=r"TypeError: .*bytes-like"):
        fresh.invoke("f0", {"kind": "invoke", "input": None})


def test_a_python_invocation_leaves_no_garbage_cycle(ten: tuple[Platform, Path]) -> None:
    """As for a core module (test_invoker.py): what a Python function's invocation made
    is freed by reference counting when it ends, none of it left to the cyclic GC."""
    p, _ = ten
    call(p, "f0", do="write")

    def run() -> None:
        for _ in range(20):
            assert call(p, "f0", do="write") is not None

    assert garbage_cycles(run) == []


def test_a_server_prepares_its_python_functions(tmp_path: Path, fresh: Platform) -> None:
    """The start-up work (``Platform.prepare``) loads every deployed Python function,
    told apart by the first bytes of its module, so that no request pays for it."""
    deploy_source(tmp_path, fresh, "def handle(event):\n    return 1\n")
    fresh.pool.drop("f0@")
    assert "f0@1" not in fresh.pool
    fresh.prepare()
    assert "f0@1" in fresh.pool
    assert call(fresh, "f0") == 1


def test_a_server_loads_its_python_functions_as_it_starts(tmp_path: Path, fresh: Platform) -> None:
    """A server loads its Python functions on a thread of their own as soon as its
    lifespan starts, not after the rest of its start-up work: here that work is held,
    and the function is loaded all the same."""
    import httpx

    from host.gateway.app import create_app
    from host.orchestrator.runner import WorkflowRunner
    from host.triggers.manager import TriggerManager
    from tests.conftest import eventually, serve_in_thread
    from tests.test_start_up import HeldStart

    deploy_source(tmp_path, fresh, "def handle(event):\n    return 7\n")
    fresh.pool.drop("f0@")
    runner = WorkflowRunner(fresh)
    triggers = TriggerManager(fresh, start_workflow=runner.start_run)
    held = HeldStart()
    app = create_app(fresh, runner, triggers, admin_token="t", background=[held])
    with serve_in_thread(app) as url:
        try:
            assert held.entered.wait(10), "the start-up work never began"
            assert eventually(lambda: "f0@1" in fresh.pool), "not loaded while start-up was held"
            assert httpx.get(f"{url}/_admin/ready").status_code == 503
            assert call(fresh, "f0") == 7
        finally:
            held.release.set()


def test_a_failing_host_import_fails_the_call_and_names_itself(
    tmp_path: Path, python_cache: Path
) -> None:
    """A host import that raises (here the clock) ends the guest's call with an error
    naming it, whatever the exception, its traceback in the host's log; the next call,
    in a fresh instance, runs."""
    from bench.runtime import hello_event
    from host.errors import FunctionCrashed
    from host.hostcalls.catalog import all_host_functions
    from host.platform.python_runtime import runtime_wasm
    from host.runtime.imports import HostFunction
    from host.runtime.invocation import Invocation
    from host.runtime.runtime import Runtime

    broken = [True]

    def now(inv: Any) -> int:
        if broken[0]:
            raise RuntimeError("the clock broke")
        return 7

    functions = [
        HostFunction("now", (), ("i64",), now) if hf.name == "now" else hf
        for hf in all_host_functions()
    ]
    (tmp_path / "handler.py").write_text(
        "import _nimbus\ndef handle(event):\n    return _nimbus.now()\n"
    )
    wasm = build_function(tmp_path).wasm.read_bytes()
    rt = Runtime(python_cache, functions, python_runtime=runtime_wasm, python_instances="inline")
    try:
        fn = rt.load("clock", wasm)
        with pytest.raises(FunctionCrashed, match=r"the host import now failed"):
            rt.invoke(fn, hello_event(), Invocation("r", "clock"))
        broken[0] = False
        assert rt.invoke(fn, hello_event(), Invocation("r", "clock"))["output"] == 7
    finally:
        rt.close()


SLEEPER = """
import select, time

def handle(event):
    seconds = event.input["sleep"]
    t0 = time.monotonic()
    time.sleep(seconds)
    slept = time.monotonic() - t0
    try:  # a descriptor the sandbox does not have: answered at once, not after 5 s
        select.select([0], [], [], 5)
    except OSError:
        pass
    return {"slept": slept, "select": time.monotonic() - t0 - slept}
"""


def test_sleeping_waits_but_never_past_the_timeout(tmp_path: Path, fresh: Platform) -> None:
    """``time.sleep`` waits as asked (its clock and the wait's are the same), a
    descriptor the sandbox does not have is an error at once, and a sleep longer than
    the function's time left ends the call at its timeout (wasmtime's WASI would have
    held the thread for the whole sleep: epoch interruption stops only guest code)."""
    import time

    deploy_source(tmp_path, fresh, SLEEPER, timeout="1s")
    out = call(fresh, "f0", sleep=0.05)
    assert 0.05 <= out["slept"] < 0.9 and out["select"] < 0.9
    t0 = time.monotonic()
    with pytest.raises(FunctionTimeout):
        call(fresh, "f0", sleep=30)
    assert time.monotonic() - t0 < 10  # not the 30 s asked for
    assert call(fresh, "f0", sleep=0)["slept"] < 0.9  # and the host serves on


def test_a_large_module_deploys(tmp_path: Path, fresh: Platform) -> None:
    """A compiled bundle holds bytecode and sources: a module of a few MiB (here 4 MiB
    of data in a string) deploys, its bundle well over the 6 MiB response cap that
    invocations have."""
    blob = "x" * (4 << 20)
    deploy_source(tmp_path, fresh, f"DATA = {blob!r}\ndef handle(event):\n    return len(DATA)\n")
    assert call(fresh, "f0") == 4 << 20


def test_a_crash_message_is_capped(tmp_path: Path, fresh: Platform) -> None:
    """A function that reports its own crash cannot hand the host a message of any
    size: it is cut as every error message is."""
    from host.errors import FunctionCrashed

    deploy_source(
        tmp_path,
        fresh,
        "def handle(event):\n"
        "    return {'error': {'kind': 'nimbus.UnhandledException', 'message': 'm' * 10**6}}\n",
    )
    with pytest.raises(FunctionCrashed) as crashed:
        call(fresh, "f0")
    assert 4096 <= len(str(crashed.value)) < 4096 + 200


def test_the_guests_randomness_is_the_hosts(tmp_path: Path, fresh: Platform) -> None:
    """``os.urandom`` (WASI's ``random_get``, served by host/runtime/wasi.py) fills
    what it is asked for, differently in every call."""
    deploy_source(
        tmp_path,
        fresh,
        "import os\ndef handle(event):\n    data = os.urandom(200_000)\n"
        "    return [len(data), len(set(data)), data[:16]]\n",
    )
    first, second = call(fresh, "f0"), call(fresh, "f0")
    assert first[0] == 200_000 and first[1] == 256 and first[2] != second[2]
