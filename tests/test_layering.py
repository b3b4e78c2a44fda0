"""The import rule of docs/ARCHITECTURE.md holds for every module of host/, and no
transaction handle leaves services/; the checker itself catches an upward import."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.layering import Rules, parse_rules, transaction_leaks, violations

DOC = ROOT / "docs" / "ARCHITECTURE.md"


@pytest.fixture(scope="module")
def rules() -> Rules:
    return parse_rules(DOC.read_text())


def test_the_document_has_a_row_for_every_part(rules: Rules) -> None:
    assert {"services", "runtime", "platform", "gateway", "server"} <= set(rules.parts)
    assert rules.parts["services"] == {"common", "errors"}
    assert rules.packages["lmdb"] == {"services"}


def test_every_import_of_host_follows_the_layering(rules: Rules) -> None:
    assert violations(ROOT / "host", rules) == []


def test_no_transaction_or_lmdb_handle_outside_services() -> None:
    assert transaction_leaks(ROOT / "host") == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "host"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_catches_an_upward_import(tmp_path: Path, rules: Rules) -> None:
    clean = {
        "__init__.py": '"""x"""\n',
        "errors.py": "class E(Exception): ...\n",
        "services/__init__.py": "",
        "services/kv.py": "from host.errors import E\nimport lmdb\n",
        "gateway/__init__.py": "",
        "gateway/app.py": "from host.services.kv import E\nimport starlette\n",
    }
    assert violations(_tree(tmp_path / "a", clean), rules) == []
    bad = {
        **clean,
        "services/bad.py": "import msgpack\nfrom host.gateway.app import E\n",
        "runtime/__init__.py": "",
        "runtime/bad.py": "from host import services\nimport lmdb\n",
    }
    found = violations(_tree(tmp_path / "b", bad), rules)
    assert found == [
        "host/runtime/bad.py:1: runtime imports host.services (services is not below "
        "runtime in the layering table)",
        "host/runtime/bad.py:2: runtime imports lmdb, which only services may",
        "host/services/bad.py:2: services imports host.gateway.app (gateway is not below "
        "services in the layering table)",
    ]


def test_the_checker_names_a_part_the_table_lacks(tmp_path: Path, rules: Rules) -> None:
    root = _tree(tmp_path, {"__init__.py": "", "newpart/x.py": "from host.errors import E\n"})
    assert violations(root, rules) == [
        "host/newpart/x.py: part 'newpart' has no row in the layering table"
    ]


def test_the_leak_grep_finds_a_transaction_outside_services(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "services/kv.py": "def get(txn): return txn.get(b'k')\n",
            "triggers/x.py": "def f(s):\n    with s.storage.read() as t:\n        pass\n",
            "gateway/y.py": "def g(txn: object) -> None: ...\n",
        },
    )
    assert transaction_leaks(root) == [
        "host/gateway/y.py:1: def g(txn: object) -> None: ...",
        "host/triggers/x.py:2: with s.storage.read() as t:",
    ]


def test_a_document_without_the_tables_is_refused() -> None:
    with pytest.raises(ValueError, match="layering:parts"):
        parse_rules("# no tables here\n")
