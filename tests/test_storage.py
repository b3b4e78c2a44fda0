"""The LMDB environment: map growth no caller sees (in this process and when another
grew it), several processes writing at once, and backups taken while writers run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgpack
import pytest

from host.services.services import Services
from tests.conftest import open_services

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """LMDB only: map growth and ``nimbus backup`` are LMDB's (PostgreSQL has no map,
    and is backed up with pg_dump)."""
    s = open_services("lmdb", tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def put(s: Services, table: str, key: bytes, value: object) -> None:
    e = s.begin("test")
    e.kv_put(table, key, msgpack.packb(value))
    assert e.commit()


def fill(s: Services, table: str, count: int, size: int = 8000) -> None:
    e = s.begin("test")
    for i in range(count):
        e.kv_put(table, i.to_bytes(4, "big"), msgpack.packb(b"x" * size))
    assert e.commit()


def count(s: Services, table: str) -> int:
    with s.storage.read() as txn:
        return sum(1 for _ in s.tables.items(txn, table, b"", None))


def test_map_grows_instead_of_failing(services: Services) -> None:
    start = services.storage.map_size
    fill(services, "big", 300)  # ~2.4 MB into a 1 MiB map: one commit, grown and retried
    assert services.storage.map_size > start and services.storage.resizes >= 1
    assert count(services, "big") == 300


def test_growth_does_not_wait_for_an_open_snapshot(services: Services) -> None:
    """An invocation holding its read snapshot (its guest still running) must neither
    block a growth nor lose its reads: the snapshot is refreshed after the resize."""
    put(services, "t", b"before", 1)
    outcome: list[object] = []

    def invocation() -> None:
        e = services.begin("long")
        assert e.kv_get("t", b"before") is not None  # the snapshot is open
        fill(services, "big", 300)  # needs growth, from the very thread holding it
        outcome.append(e.kv_get("big", (1).to_bytes(4, "big")))  # the refreshed view
        outcome.append(e.kv_get("t", b"before"))
        e.discard()

    t = threading.Thread(target=invocation)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "the growth waited for the snapshot its own thread held"
    assert services.storage.resizes >= 1
    assert outcome[0] is not None and outcome[1] is not None


def test_snapshots_of_other_threads_survive_growth(services: Services) -> None:
    put(services, "t", b"k", "v")
    readers = [services.begin(f"r{i}") for i in range(4)]
    for r in readers:
        assert r.kv_get("t", b"k") is not None
    fill(services, "big", 300)
    for r in readers:
        found = r.kv_get("t", b"k")
        assert found is not None and msgpack.unpackb(found[0]) == "v"
        items, _ = r.kv_scan("big", b"", None, 1000)
        assert len(items) == 300  # the refreshed view
        r.discard()


GROWER = """
import sys, msgpack
from pathlib import Path
from host.services.services import Services
s = Services(Path(sys.argv[1]), map_size=1 << 20)
e = s.begin("grower")
for i in range(400):
    e.kv_put("theirs", i.to_bytes(4, "big"), msgpack.packb(b"y" * 8000))
e.commit()
print(s.storage.map_size)
s.close()
"""


def test_a_map_grown_by_another_process_is_adopted(services: Services, tmp_path: Path) -> None:
    put(services, "mine", b"k", 1)
    mine_before = services.storage.map_size
    out = subprocess.run(
        [sys.executable, "-c", GROWER, str(tmp_path / "db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > mine_before
    put(services, "mine", b"k2", 2)  # MapResizedError inside: adopted, retried
    assert count(services, "theirs") == 400 and count(services, "mine") == 2
    assert services.storage.map_size >= int(out.stdout)


WRITER = """
import json, sys, time, msgpack
from pathlib import Path
from host.errors import ConditionFailed
from host.services.services import Services
path, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = Services(path, map_size=1 << 20)
for _ in range(3000):  # wait (bounded) for the other writer to be ready too
    if (path / "go").exists():
        break
    time.sleep(0.01)
seen, attempts = [], 0
while len(seen) < n and attempts < 100 * n:
    attempts += 1
    e = s.begin(name)
    current = e.kv_get("shared", b"counter")
    value = 0 if current is None else msgpack.unpackb(current[0])
    try:
        if current is None:
            e.kv_put("shared", b"counter", msgpack.packb(value + 1), if_absent=True)
        else:
            e.kv_put("shared", b"counter", msgpack.packb(value + 1), if_version=current[1])
        e.kv_put("shared", f"{name}-{len(seen)}".encode(), msgpack.packb(b"v" * 2000))
        e.commit()
    except ConditionFailed:
        continue
    seen.append(value + 1)
s.close()
print(json.dumps(seen))
"""


def test_two_processes_lose_no_write(tmp_path: Path) -> None:
    """Two OS processes increment one counter by compare-and-set and write their own
    keys, at the same time, from a 1 MiB map that both grow: every write is kept."""
    path = tmp_path / "db"
    Services(path, map_size=1 << 20).close()
    n = 300
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    (path / "go").touch()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    seen_a, seen_b = (json.loads(o) for o in outs)
    assert len(seen_a) == len(seen_b) == n
    assert sorted(seen_a + seen_b) == list(range(1, 2 * n + 1))  # no increment lost
    s = Services(path)
    try:
        with s.storage.read() as txn:
            keys = [k for k, _, _ in s.tables.items(txn, "shared", b"", None)]
            counter = s.tables.get(txn, "shared", b"counter")
    finally:
        s.close()
    assert counter is not None and msgpack.unpackb(counter[0]) == 2 * n
    assert counter[1] == 2 * n  # one version per committed write
    assert len(keys) == 2 * n + 1
    assert {k.split(b"-")[0] for k in keys if k != b"counter"} == {b"a", b"b"}


def test_backup_while_a_writer_runs(services: Services, tmp_path: Path) -> None:
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            put(services, "live", i.to_bytes(4, "big"), i)
            written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(written) < 50 and t.is_alive():
            threading.Event().wait(0.01)
        services.backup(tmp_path / "copy")
    finally:
        stop.set()
        t.join()
    env = lmdb.open(str(tmp_path / "copy"), max_dbs=64, readonly=True, lock=False)
    db = env.open_db(b"kv", create=False)
    with env.begin(db=db) as txn:
        keys = [int.from_bytes(k[5:], "big") for k, _ in txn.cursor()]
    env.close()
    assert len(keys) >= 50
    assert keys == list(range(len(keys)))  # a consistent prefix of the writes, no holes
    copy = Services(tmp_path / "copy")  # and Nimbus opens it as a data dir
    try:
        assert count(copy, "live") == len(keys)
    finally:
        copy.close()


def test_backup_refuses_a_non_empty_destination(services: Services, tmp_path: Path) -> None:
    dest = tmp_path / "used"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        services.backup(dest)
