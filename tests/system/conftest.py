"""Fixtures of the system tests: the cached rootfs, the package built twice, a booted container.

Each test boots its own container (about half a second) and powers it off in a ``finally``,
whatever the test did; the teardown then checks that no process, cgroup or propagation
directory of it is left on the host. Times (rootfs build, package builds, each boot) go to the
terminal summary, so CI logs say what this part of the suite costs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bookworm_rootfs import ensure_rootfs
from nspawn import Container

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
HOST_TOOLS = ("systemd-nspawn", "mmdebstrap", "nsenter", "dpkg-buildpackage", "dpkg-deb")
DEBS_INSIDE = "/mnt/debs"
# A directory with this tree's .debs already built (scripts/build-deb DIR): skips the build.
PREBUILT_ENV = "COOEE_TEST_DEBS"

_TIMES = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.system)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_TIMES, [])
    if lines:
        terminalreporter.write_sep("-", "system tests (systemd-nspawn)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def timings(request: pytest.FixtureRequest) -> list[str]:
    return request.config.stash.setdefault(_TIMES, [])


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "booting a container needs root (CI runs as root)"
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool, path=SYSTEM_PATH) is None]
    if missing:
        return f"missing {', '.join(missing)} (run scripts/setup)"
    if not Path("/sys/fs/cgroup/unified").is_dir():
        return "no cgroup v2 hierarchy at /sys/fs/cgroup/unified"
    return None


@pytest.fixture(scope="session")
def rootfs(timings: list[str]) -> Path:
    why = _unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    path, seconds = ensure_rootfs()
    timings.append(
        f"rootfs {path.name}: "
        + (f"built with mmdebstrap in {seconds:.1f} s" if seconds else "from the cache")
    )
    return path


@dataclass(frozen=True, slots=True)
class Debs:
    """The package built from this tree (``first``) and the same rebuilt as a later version."""

    directory: Path
    version: str
    next_version: str

    def inside(self, package: str, version: str) -> str:
        return f"{DEBS_INSIDE}/{package}_{version}_amd64.deb"


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return f"{tomllib.load(f)['project']['version']}-1"


def _rebuild_as(deb: Path, version: str, out: Path) -> Path:
    """The same package under a later Debian revision: what an upgrade installs. The payload
    is the built one, so the maintainer scripts and unit under test are this tree's."""
    tree = out / f"tree-{deb.name}"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN/control"
    text = control.read_text()
    old = _version()
    text = text.replace(f"Version: {old}", f"Version: {version}")
    text = text.replace(f"cooee-agent (= {old})", f"cooee-agent (= {version})")
    control.write_text(text)
    package = deb.name.split("_")[0]
    target = out / f"{package}_{version}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "-Znone", "--root-owner-group", "-b", str(tree), str(target)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(tree)
    return target


@pytest.fixture(scope="session")
def debs(rootfs: Path, tmp_path_factory: pytest.TempPathFactory, timings: list[str]) -> Debs:
    out = tmp_path_factory.mktemp("debs")
    started = time.monotonic()
    version = _version()
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        # A developer's shortcut while changing the tests only; CI always builds this tree.
        for package in ("cooee-agent", "cooee-leader"):
            shutil.copy(Path(prebuilt) / f"{package}_{version}_amd64.deb", out)
    else:
        result = subprocess.run(
            [str(ROOT / "scripts/build-deb"), str(out)],
            env={**os.environ, "PATH": SYSTEM_PATH, "DEB_XZ_LEVEL": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    built = time.monotonic() - started
    next_version = version.rsplit("-", 1)[0] + "-2"
    for package in ("cooee-agent", "cooee-leader"):
        _rebuild_as(out / f"{package}_{version}_amd64.deb", next_version, out)
    timings.append(
        f"scripts/build-deb{' (prebuilt)' if prebuilt else ''}: {built:.1f} s;"
        f" as {next_version} too: "
        f"{time.monotonic() - started - built:.1f} s"
    )
    return Debs(out, version, next_version)


@pytest.fixture
def container(
    rootfs: Path, debs: Debs, tmp_path: Path, request: pytest.FixtureRequest, timings: list[str]
) -> Iterator[Container]:
    name = f"cooee{os.getpid() % 10000}{abs(hash(request.node.nodeid)) % 10000}"
    box = Container(rootfs, name, binds={debs.directory: DEBS_INSIDE}, log=tmp_path / "boot.log")
    started = time.monotonic()
    try:
        box.start()
        booted = time.monotonic() - started
        yield box
    finally:
        if box.pid1:
            # Shown by pytest only when the test failed: what the units said.
            print(box.run(["journalctl", "--no-pager", "-n", "200"], check=False).stdout)
        forced = box.stop()
        test_time = time.monotonic() - started
    timings.append(
        f"{request.node.name}: {test_time:.1f} s (boot {booted:.1f} s)"
        if "booted" in locals()
        else f"{request.node.name}: did not boot"
    )
    assert forced == [], forced
    assert not any(group.exists() for group in box.cgroups)
    assert not Path(f"/run/systemd/nspawn/propagate/{name}").exists()
