"""Named files are read bounded and only when regular; key files only when nobody else could
have planted, read or swapped them. Real FIFOs, devices, links, owners and modes."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from cooee_agent.bus.peerkey import PEER_KEY_FILE, load_or_create_peer_key
from cooee_agent.errors import TransportError
from cooee_agent.files import (
    FileMissing,
    FileRefused,
    make_directory,
    read_bounded,
    read_private,
    require_directory,
    shown,
)
from cooee_agent.protocol.errors import KeyFileError
from cooee_agent.protocol.keys import (
    AGENT_SIGNING_FILE,
    load_or_create_agent_keys,
    load_signing_key,
)

NOBODY = 65534


def test_a_fifo_is_refused_at_once_instead_of_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match="is a FIFO, not a regular file"):
        read_bounded(fifo, 100)


def test_a_device_and_a_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="/dev/zero is a device"):
        read_bounded(Path("/dev/zero"), 100)
    with pytest.raises(FileRefused, match="is a directory"):
        read_bounded(tmp_path, 100)


def test_at_most_one_byte_past_the_limit_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: 2 GB of zeros, no disk
    with pytest.raises(FileRefused, match="over the 1000-byte limit"):
        read_bounded(big, 1000)
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 1000)
    assert read_bounded(exact, 1000) == b"x" * 1000


def test_a_missing_file_is_its_own_refusal(tmp_path: Path) -> None:
    with pytest.raises(FileMissing, match="does not exist"):
        read_bounded(tmp_path / "nothing", 10)


def test_a_link_to_a_regular_file_is_followed_for_named_files(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_bytes(b"ok")
    (tmp_path / "link").symlink_to(target)
    assert read_bounded(tmp_path / "link", 10) == b"ok"


def _private_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    return directory


def test_a_key_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    target.chmod(0o644)
    (directory / PEER_KEY_FILE).symlink_to(target)
    with pytest.raises(TransportError, match="is a symbolic link"):
        load_or_create_peer_key(directory)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # never chmodded through the link
    (directory / AGENT_SIGNING_FILE).symlink_to(target)
    with pytest.raises(KeyFileError, match="is a symbolic link"):
        load_signing_key(directory / AGENT_SIGNING_FILE)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_key_owned_by_another_user_is_refused() -> None:
    # Under /tmp, not tmp_path: the user the child becomes must be able to reach it.
    directory = Path(tempfile.mkdtemp(prefix="cooee-owner-"))
    try:
        key = directory / "key"
        key.write_bytes(b"secret")
        key.chmod(0o644)
        os.chown(key, NOBODY, NOBODY)
        os.chown(directory, 1000, 1000)
        pid = os.fork()
        if pid == 0:  # a child that is someone else (uid 1000) reading nobody's key
            code = 1
            try:
                os.setgid(1000)
                os.setuid(1000)
                read_private(key)
            except FileRefused as error:
                code = 0 if "belongs to uid 65534" in str(error) else 2
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_root_refuses_a_key_planted_by_another_user_in_roots_directory(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    key = directory / "key"
    key.write_bytes(b"secret")
    key.chmod(0o600)
    os.chown(key, NOBODY, NOBODY)
    with pytest.raises(FileRefused, match="belongs to uid 65534"):
        read_private(key)
    os.chown(directory, NOBODY, NOBODY)  # the service's own directory: root may use its keys
    assert read_private(key) == b"secret"


def test_a_key_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    load_or_create_agent_keys(directory)
    directory.chmod(0o777)
    with pytest.raises(KeyFileError, match=r"which group or others may write to \(mode 0777\)"):
        load_or_create_agent_keys(directory)
    directory.chmod(0o1777)  # sticky, as /tmp: nobody else may rename or remove it
    load_or_create_agent_keys(directory)


def test_a_peer_key_of_ones_own_too_open_is_tightened_through_its_descriptor(
    tmp_path: Path,
) -> None:
    directory = _private_dir(tmp_path)
    load_or_create_peer_key(directory)
    (directory / PEER_KEY_FILE).chmod(0o644)
    load_or_create_peer_key(directory)
    assert stat.S_IMODE((directory / PEER_KEY_FILE).stat().st_mode) == 0o600


def test_a_key_path_that_is_a_directory_is_not_told_to_chmod(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    (directory / AGENT_SIGNING_FILE).mkdir()
    with pytest.raises(KeyFileError) as caught:
        load_signing_key(directory / AGENT_SIGNING_FILE)
    assert "is a directory, not a regular file" in str(caught.value)
    assert "chmod" not in str(caught.value)


def test_require_directory_names_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(FileRefused, match="is a file, not a directory"):
        require_directory(tmp_path / "file")
    require_directory(tmp_path / "absent")
    with pytest.raises(FileMissing, match="does not exist"):
        require_directory(tmp_path / "absent", missing_ok=False)


def test_shown_escapes_and_caps_what_it_echoes() -> None:
    assert shown("abc") == "'abc'"
    assert shown("a\x1b[2Jb\n") == "'a\\x1b[2Jb\\n'"
    long = shown("A" * 100_000)
    assert long.startswith("'" + "A" * 80 + "'") and "99920 more characters" in long
    assert len(long) < 120


def test_directories_made_under_umask_000_are_not_world_writable(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        make_directory(tmp_path / "a" / "b" / "state")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a" / "b" / "state").stat().st_mode) == 0o700


def test_make_directory_refuses_a_file_in_the_way_and_leaves_existing_modes(
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(FileRefused, match="is a file, not a directory"):
        make_directory(tmp_path / "file" / "state")
    (tmp_path / "open").mkdir(mode=0o755)
    make_directory(tmp_path / "open")
    assert stat.S_IMODE((tmp_path / "open").stat().st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="acting for another user needs root")
def test_intervene_as_root_leaves_the_services_files_to_the_service(tmp_path: Path) -> None:
    from process_support import cli

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    result = cli("intervene", "--reason", "fan noise", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    made = sorted(path.name for path in state.iterdir())
    assert {"agent-signing.key", "agent-identity.age", "outbox.sqlite3"} <= set(made)
    assert {path.name: path.stat().st_uid for path in state.iterdir()} == dict.fromkeys(
        made, NOBODY
    )
