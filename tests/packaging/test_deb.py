"""The Debian package: built with scripts/build-deb, lintian-clean, and its payload runs."""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = "opt/cooee-agent"
SITE = f"{VENV}/lib/python3.11/site-packages"
# The build must not see pyenv's shims (FACTS: they hijack python3.11).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("dpkg-buildpackage", "dh", "lintian", "chrpath")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass(frozen=True, slots=True)
class Built:
    deb: Path
    root: Path  # the payload, extracted with dpkg-deb -x
    control: Path  # the maintainer scripts and control files, from dpkg-deb -e


def _missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool, path=SYSTEM_PATH) is None]


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    missing = _missing_tools()
    if missing:
        message = f"Debian build tools missing: {', '.join(missing)} (run scripts/setup)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("deb")
    # xz level 1: the same package, compressed in ~7 s instead of ~50 s.
    env = {**os.environ, "PATH": SYSTEM_PATH, "DEB_XZ_LEVEL": "1"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-deb"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (deb,) = out.glob("cooee-agent_*.deb")
    root = out / "root"
    control = out / "control"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    yield Built(deb, root, control)


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_deb_version_and_dependencies(built: Built) -> None:
    assert _field(built.deb, "Version") == f"{_version()}-1"
    depends = _field(built.deb, "Depends")
    # The venv links to this interpreter; fastecdsa and systemd-python link these libraries.
    for package in ("python3.11", "systemd", "libgmp10", "libsystemd0"):
        assert package in depends


def test_deb_carries_the_unit_user_files_conffile_and_command(built: Built) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(built.deb)], check=True, capture_output=True, text=True
    ).stdout
    paths = {line.split()[5].removeprefix("./") for line in listing.splitlines()}
    for path in (
        "lib/systemd/system/cooee-agent.service",
        "usr/lib/sysusers.d/cooee-agent.conf",
        "usr/lib/tmpfiles.d/cooee-agent.conf",
        "etc/cooee-agent/config.toml",
        "usr/bin/cooee-agent",
        f"{VENV}/bin/cooee-agent",
        f"{VENV}/pyvenv.cfg",
        f"{SITE}/cooee_agent/cli/__init__.py",
    ):
        assert path in paths, path
    assert (built.control / "conffiles").read_text().split() == ["/etc/cooee-agent/config.toml"]
    r = built.root
    assert os.readlink(r / "usr/bin/cooee-agent") == f"/{VENV}/bin/cooee-agent"
    assert os.readlink(r / VENV / "bin/python") == "/usr/bin/python3.11"
    for name in ("cooee-agent.service", "cooee-agent.sysusers", "cooee-agent.tmpfiles"):
        shipped = {
            "cooee-agent.service": "lib/systemd/system/cooee-agent.service",
            "cooee-agent.sysusers": "usr/lib/sysusers.d/cooee-agent.conf",
            "cooee-agent.tmpfiles": "usr/lib/tmpfiles.d/cooee-agent.conf",
        }[name]
        assert (r / shipped).read_bytes() == (ROOT / "systemd" / name).read_bytes()
    config = (r / "etc/cooee-agent/config.toml").read_bytes()
    assert config == (ROOT / "packaging/config.example.toml").read_bytes()


def test_deb_postinst_creates_the_user_before_the_files_and_starts_nothing_unconfigured(
    built: Built,
) -> None:
    postinst = (built.control / "postinst").read_text()
    assert postinst.index("systemd-sysusers") < postinst.index("systemd-tmpfiles")
    # The one start is guarded by the Leader-key check.
    assert postinst.count("deb-systemd-invoke start") == 1
    guard = postinst.index("if leader_keys_configured")
    assert guard < postinst.index("deb-systemd-invoke start")
    assert "deb-systemd-invoke stop" in (built.control / "prerm").read_text()


def test_deb_venv_names_only_its_final_path(built: Built) -> None:
    venv = built.root / VENV
    shebang = (venv / "bin/cooee-agent").read_text().splitlines()[0]
    assert shebang == f"#!/{VENV}/bin/python"
    assert "debian/cooee-agent" not in (venv / "pyvenv.cfg").read_text()
    pyc = built.root / SITE / "cooee_agent/__pycache__/__init__.cpython-311.pyc"
    # 16-byte header, then the code object; its file name is where tracebacks will point.
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename == f"/{SITE}/cooee_agent/__init__.py"


def test_deb_payload_runs_the_cli_and_loads_every_native_dependency(built: Built) -> None:
    python = built.root / VENV / "bin/python"
    # -I: no PYTHONPATH, no user site, no working directory: only the extracted venv is seen.
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    version = subprocess.run(
        [str(python), "-I", str(built.root / VENV / "bin/cooee-agent"), "--version"],
        env=env,
        cwd=built.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"cooee-agent {_version()}"
    probe = (
        "import cooee_agent, pyrage, libp2p, cryptography.hazmat.bindings._rust, pynvml, psutil,"
        " netifaces, pyudev, trio, fastecdsa.curvemath, systemd.daemon, systemd.journal;"
        " print(cooee_agent.__file__)"
    )
    loaded = subprocess.run(
        [str(python), "-I", "-W", "ignore", "-c", probe],
        env=env,
        cwd=built.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == str(built.root / SITE / "cooee_agent/__init__.py")


def test_deb_is_lintian_clean(built: Built) -> None:
    result = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(built.deb)],
        env={**os.environ, "PATH": SYSTEM_PATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    # Every tolerated tag is overridden, with its reason, in
    # packaging/debian/cooee-agent.lintian-overrides.
    assert tags == [], "\n".join(tags)
    assert result.returncode == 0, result.stderr


def test_leader_deb_carries_only_the_leader_service_and_is_lintian_clean(built: Built) -> None:
    (leader,) = built.deb.parent.glob("cooee-leader_*.deb")
    assert _field(leader, "Depends").startswith(f"cooee-agent (= {_version()}-1)")
    root = built.deb.parent / "leader-root"
    subprocess.run(["dpkg-deb", "-x", str(leader), str(root)], check=True)
    shipped = {
        "lib/systemd/system/cooee-leader.service": "cooee-leader.service",
        "usr/lib/sysusers.d/cooee-leader.conf": "cooee-leader.sysusers",
        "usr/lib/tmpfiles.d/cooee-leader.conf": "cooee-leader.tmpfiles",
    }
    for path, name in shipped.items():
        assert (root / path).read_bytes() == (ROOT / "systemd" / name).read_bytes(), path
    # The program is the agent package's: no second copy of the virtualenv.
    assert not (root / VENV).exists() and not (root / "usr/bin").exists()
    control = built.deb.parent / "leader-control"
    subprocess.run(["dpkg-deb", "-e", str(leader), str(control)], check=True)
    assert "rm -rf /var/lib/cooee-leader" in (control / "postrm").read_text()
    result = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(leader)],
        env={**os.environ, "PATH": SYSTEM_PATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert tags == [], "\n".join(tags)
