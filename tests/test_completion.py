"""``nimbus completion``: the generated scripts complete real commands in a real shell."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.test_cli import nimbus


def complete_bash(script: str, words: list[str]) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _nimbus; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    r = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_subcommands_and_options() -> None:
    r = nimbus("completion", "bash")
    assert r.returncode == 0, r.stderr
    script = r.stdout
    assert "new" in complete_bash(script, ["nimbus", "ne"])
    assert set(complete_bash(script, ["nimbus", "d"])) >= {"dev", "deploy", "doctor", "dlq"}
    assert complete_bash(script, ["nimbus", "kv", "s"]) == ["scan"]
    assert "--trigger" in complete_bash(script, ["nimbus", "invoke", "x", "--tr"])
    assert "--json" in complete_bash(script, ["nimbus", "ls", "--"])


def test_zsh_script_lists_every_command() -> None:
    r = nimbus("completion", "zsh")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("#compdef nimbus")
    for command in ("'new:", "'dev:", "'doctor:", "'invoke:", "'kv scan'"):
        assert command in r.stdout
    if shutil.which("zsh"):
        check = subprocess.run(["zsh", "-n"], input=r.stdout, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr
