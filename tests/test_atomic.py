"""Atomic writes: the content lands with the exact mode; a failure leaves the old file whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cooee_agent import atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_replace_writes_the_content_with_exactly_the_mode_asked(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "file"
    old_umask = os.umask(0o077)  # the umask must not narrow the mode asked for
    try:
        atomic.replace_file(target, b"hello\n", mode=mode)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"hello\n"
    assert mode_of(target) == mode
    assert os.listdir(tmp_path) == ["file"]


def test_replace_overwrites_and_a_quick_rewrite_need_not_sync(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_bytes(b"old")
    target.chmod(0o644)
    atomic.replace_file(target, b"new", durable=False)
    assert target.read_bytes() == b"new" and mode_of(target) == 0o600


def test_the_mode_is_set_before_the_file_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def spying_replace(source: str, target: Path) -> None:
        seen.append(mode_of(Path(source)))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spying_replace)
    atomic.replace_file(tmp_path / "config.toml", b"x = 1\n", mode=0o640)
    assert seen == [0o640]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "assignment.json"
    target.write_bytes(b"old and whole")

    def crash(source: str, target: Path) -> None:
        raise OSError(5, "simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic.replace_file(target, b"new")
    assert target.read_bytes() == b"old and whole"
    assert os.listdir(tmp_path) == ["assignment.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sequence"
    target.write_bytes(b"7\n")

    def full_disk(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic.replace_file(target, b"8\n")
    assert target.read_bytes() == b"7\n"
    assert os.listdir(tmp_path) == ["sequence"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only directory")
def test_an_unwritable_directory_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            atomic.replace_file(target, b"new")
    finally:
        tmp_path.chmod(0o700)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]


def test_create_makes_a_private_file(tmp_path: Path) -> None:
    key = tmp_path / "agent-signing.key"
    atomic.create_file(key, b"secret")
    assert key.read_bytes() == b"secret"
    assert mode_of(key) == 0o600
    assert os.listdir(tmp_path) == ["agent-signing.key"]


def test_create_is_never_wider_than_private_before_it_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_link = os.link

    def spying_link(source: str, target: Path) -> None:
        seen.append(mode_of(Path(source)))
        real_link(source, target)

    monkeypatch.setattr(os, "link", spying_link)
    atomic.create_file(tmp_path / "peer.key", b"secret")
    assert seen == [0o600]


def test_create_refuses_an_existing_file_and_keeps_it(tmp_path: Path) -> None:
    key = tmp_path / "leader-signing.key"
    key.write_bytes(b"the first key")
    with pytest.raises(FileExistsError):
        atomic.create_file(key, b"another key")
    assert key.read_bytes() == b"the first key"
    assert os.listdir(tmp_path) == ["leader-signing.key"]


@pytest.mark.parametrize("dangling", [True, False])
def test_create_refuses_a_symlink_and_writes_nothing_through_it(
    tmp_path: Path, dangling: bool
) -> None:
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        elsewhere.write_bytes(b"not yours")
    key = tmp_path / "peer.key"
    key.symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        atomic.create_file(key, b"secret")
    assert key.is_symlink()
    if dangling:
        assert set(os.listdir(tmp_path)) == {"peer.key"}
    else:
        assert elsewhere.read_bytes() == b"not yours"
        assert set(os.listdir(tmp_path)) == {"peer.key", "elsewhere"}
