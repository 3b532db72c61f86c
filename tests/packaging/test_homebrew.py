"""The Homebrew formula and launchd job: resources pinned as constraints.txt, plist well-formed."""

from __future__ import annotations

import importlib.util
import os
import plistlib
import re
import shutil
import subprocess
import tomllib
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name

from cooee_agent.config import CONFIG_ENV, STATE_DIR_ENV

ROOT = Path(__file__).resolve().parents[2]
FORMULA = ROOT / "packaging/homebrew/cooee-agent.rb"
PLIST = ROOT / "packaging/homebrew/cooee-agent.plist"
RESOURCE = re.compile(r'resource "([^"]+)" do\n\s+url "([^"]+)"\n\s+sha256 "([^"]+)"\n\s+end')


def _generator() -> ModuleType:
    loader = SourceFileLoader("homebrew_resources", str(ROOT / "scripts/homebrew-resources"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def resources() -> dict[str, tuple[str, str]]:
    found = RESOURCE.findall(FORMULA.read_text(encoding="utf-8"))
    names = [name for name, _, _ in found]
    assert len(names) == len(set(names)), "a resource appears twice"
    return {name: (url, sha) for name, url, sha in found}


def _file_name_and_version(url: str) -> tuple[str, str]:
    filename = url.rsplit("/", 1)[1]
    if filename.endswith(".whl"):
        name, version = filename.split("-")[:2]
    else:
        name, version = filename.removesuffix(".tar.gz").removesuffix(".zip").rsplit("-", 1)
    return canonicalize_name(name), version


def test_formula_resources_are_the_macos_runtime_closure_at_the_pinned_versions(
    resources: dict[str, tuple[str, str]],
) -> None:
    generator = _generator()
    pins = generator.read_constraints(ROOT / "constraints.txt")
    expected = generator.runtime_closure(pins)
    assert set(resources) == set(expected), "regenerate with scripts/homebrew-resources"
    for name, (url, sha256) in resources.items():
        assert url.startswith("https://files.pythonhosted.org/packages/"), url
        assert re.fullmatch(r"[0-9a-f]{64}", sha256), name
        assert _file_name_and_version(url) == (name, pins[name]), url


def test_formula_leaves_out_development_tools_and_linux_only_packages(
    resources: dict[str, tuple[str, str]],
) -> None:
    for name in ("pytest", "hypothesis", "ruff", "mypy", "pyudev", "systemd-python"):
        assert name not in resources
    for name in ("libp2p", "pyrage", "nvidia-ml-py", "typer", "cryptography", "trio"):
        assert name in resources


def test_formula_version_source_and_service_match_the_project() -> None:
    text = FORMULA.read_text(encoding="utf-8")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"cooee-agent-{version}.tar.gz" in text
    assert "include Language::Python::Virtualenv" in text
    assert "virtualenv_install_with_resources" in text
    assert 'run [opt_bin/"cooee-agent", "run"]' in text
    assert f"{CONFIG_ENV}: " in text and f"{STATE_DIR_ENV}: " in text


def test_launchd_plist_runs_the_agent_kept_alive_with_logs() -> None:
    job = plistlib.loads(PLIST.read_bytes())
    assert job["Label"] == "homebrew.mxcl.cooee-agent"
    program, *arguments = job["ProgramArguments"]
    assert program == "/opt/homebrew/opt/cooee-agent/bin/cooee-agent"
    assert arguments == ["run"]
    assert job["KeepAlive"] is True and job["RunAtLoad"] is True
    assert job["StandardOutPath"] == job["StandardErrorPath"]
    assert job["StandardErrorPath"] == "/opt/homebrew/var/log/cooee-agent.log"
    assert job["EnvironmentVariables"] == {
        CONFIG_ENV: "/opt/homebrew/etc/cooee-agent/config.toml",
        STATE_DIR_ENV: "/opt/homebrew/var/lib/cooee-agent",
    }
    # Same log and label as the formula's service block, so the two never diverge.
    assert 'log_path var/"log/cooee-agent.log"' in FORMULA.read_text(encoding="utf-8")
    assert job["Umask"] == 0o077


def test_formula_is_valid_ruby() -> None:
    ruby = shutil.which("ruby")
    if ruby is None:
        message = "ruby is not installed (run scripts/setup)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([ruby, "-c", str(FORMULA)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Syntax OK"


def test_launchd_job_runs_what_the_systemd_unit_runs() -> None:
    job = plistlib.loads(PLIST.read_bytes())
    program, *arguments = job["ProgramArguments"]
    unit = (ROOT / "systemd/cooee-agent.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    unit_program, *unit_arguments = exec_start.split()
    # The same command under each platform's prefix, the same arguments.
    assert Path(program).name == Path(unit_program).name == "cooee-agent"
    assert arguments == unit_arguments
    # And the same restart pace and stop timeout.
    assert job["ThrottleInterval"] == int(re.findall(r"^RestartSec=(\d+)$", unit, re.M)[0])
    assert job["ExitTimeOut"] == int(re.findall(r"^TimeoutStopSec=(\d+)$", unit, re.M)[0])
