"""The verb table: what a start-up imports, and the one-line helps `--help` lists from it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cooee_agent.cli.root import load_command
from cooee_agent.cli.verbs import VERBS

HEAVY = (
    "typer",
    "rich",
    "pydantic",
    "trio",
    "libp2p",
    "pyrage",
    "cooee_agent.bus",
    "cooee_agent.discovery",
    "cooee_agent.protocol",
)


def modules_after(*argv: str) -> set[str]:
    """The modules a `cooee-agent` process has imported once it has run ``argv``."""
    probe = (
        "import atexit, json, sys\n"
        "report = lambda: sys.__stderr__.write('MODULES=' + json.dumps(list(sys.modules)))\n"
        "atexit.register(report)\n"
        "from cooee_agent.cli import main\n"
        f"main({list(argv)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    marker = result.stderr.rindex("MODULES=")
    return set(json.loads(result.stderr[marker + len("MODULES=") :]))


def imported(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


def test_token_decode_imports_neither_typer_nor_the_mesh_nor_discovery() -> None:
    modules = modules_after("token", "decode", "458RV")
    assert "cooee_agent.identity.token" in modules
    assert [name for name in HEAVY if imported(modules, name)] == []


def test_help_lists_the_verbs_without_importing_them() -> None:
    modules = modules_after("--help")
    verb_modules = {verb.module for verb in VERBS.values()}
    assert sorted(verb_modules & modules) == []
    assert not imported(modules, "rich")


@pytest.mark.parametrize("name", list(VERBS))
def test_the_table_help_is_the_verbs_own_first_line(name: str) -> None:
    command = load_command(name, VERBS[name])
    assert command.name == name
    assert (command.help or "").strip().splitlines()[0] == VERBS[name].help


def test_status_imports_neither_typer_nor_pydantic(tmp_path: object) -> None:
    modules = modules_after("status", "--state-dir", str(tmp_path))
    assert "cooee_agent.cli.status" in modules
    assert [
        name for name in ("typer", "pydantic", "trio", "libp2p") if imported(modules, name)
    ] == []
