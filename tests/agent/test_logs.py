"""Logging goes to journald with fields when stderr is the journal stream, else to stderr; no
secret survives either way."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.agent.logs import REDACTED, RedactSecrets, journal_stream_matches, setup_logging

AGE_KEY = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSFDGT0E"
PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
log = logging.getLogger("cooee_agent.test")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class Journal:
    """Stands in for journald's socket: records what systemd.journal.send would be given."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def send(self, message: str, **fields: Any) -> None:
        self.entries.append({"MESSAGE": message, **fields})


def journal_env(stream: io.TextIOWrapper) -> dict[str, str]:
    status = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}


def test_stderr_gets_plain_lines_when_not_under_journald() -> None:
    stream = io.StringIO()
    setup_logging("info", env={}, stream=stream)
    log.info("enrolled as host %d", 7)
    log.debug("not shown at info")
    assert stream.getvalue().endswith("INFO cooee_agent.test: enrolled as host 7\n")
    assert "not shown" not in stream.getvalue()


def test_journal_gets_structured_fields(tmp_path: Path) -> None:
    journal = Journal()
    with open(tmp_path / "stderr", "w") as stream:
        setup_logging("debug", env=journal_env(stream), stream=stream, journal_sender=journal.send)
        log.warning("slot %d lost", 2, extra={"COOEE_HOST_ID": 7, "COOEE_SLOT": 2})
        assert stream.tell() == 0  # nothing on stderr: journald has it
    [entry] = journal.entries
    assert entry["MESSAGE"] == "slot 2 lost"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "cooee-agent"
    assert entry["LOGGER"] == "cooee_agent.test"
    assert (entry["COOEE_HOST_ID"], entry["COOEE_SLOT"]) == (7, 2)
    assert all(name.isupper() for name in entry), "journald takes upper-case field names only"
    assert "CODE_ARGS" not in entry


def test_a_journal_stream_that_is_not_our_stderr_means_stderr(tmp_path: Path) -> None:
    journal = Journal()
    with open(tmp_path / "a", "w") as other, open(tmp_path / "b", "w") as stream:
        setup_logging("info", env=journal_env(other), stream=stream, journal_sender=journal.send)
        log.info("hello")
    assert journal.entries == []
    assert (tmp_path / "b").read_text().endswith("hello\n")


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "1:2:3"])
def test_malformed_journal_stream_is_ignored(value: str) -> None:
    assert not journal_stream_matches({"JOURNAL_STREAM": value}, io.StringIO())


def test_secrets_are_redacted_in_messages_args_fields_and_tracebacks(tmp_path: Path) -> None:
    journal = Journal()
    with open(tmp_path / "stderr", "w") as stream:
        setup_logging(
            "info",
            env=journal_env(stream),
            stream=stream,
            journal_sender=journal.send,
            secrets=["join-s3cr3t-token"],
        )
        log.info("loaded %s", AGE_KEY)
        log.info(f"key file {PEM} token join-s3cr3t-token", extra={"COOEE_KEY": AGE_KEY})
        try:
            raise ValueError(f"bad identity {AGE_KEY.lower()}")
        except ValueError:
            log.exception("could not open")
    text = repr(journal.entries)
    for secret in (AGE_KEY, AGE_KEY.lower(), "MC4CAQAwBQYDK2VwBCIEIA", "join-s3cr3t-token"):
        assert secret not in text
    assert journal.entries[0]["MESSAGE"] == f"loaded {REDACTED}"
    assert journal.entries[1]["COOEE_KEY"] == REDACTED
    assert "ValueError: bad identity [REDACTED]" in journal.entries[2]["MESSAGE"]


def test_stderr_tracebacks_are_redacted_too() -> None:
    stream = io.StringIO()
    setup_logging("info", env={}, stream=stream)
    try:
        raise RuntimeError(AGE_KEY)
    except RuntimeError:
        log.exception("failed")
    assert AGE_KEY not in stream.getvalue()
    assert f"RuntimeError: {REDACTED}" in stream.getvalue()


def test_setting_up_again_replaces_the_handler_and_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", env={}, stream=first)
    setup_logging("error", env={}, stream=second)
    log.warning("quiet now")
    log.error("loud")
    assert first.getvalue() == ""
    assert "quiet now" not in second.getvalue()
    assert second.getvalue().count("loud") == 1
    assert len(logging.getLogger().handlers) == 1


bech32 = st.text(alphabet="qpzry9x8gf2tvdw0s3jn54khce6mua7l", min_size=50, max_size=70)


@given(prefix=st.text(max_size=30), body=bech32, suffix=st.text(max_size=30))
def test_any_age_secret_key_is_redacted(prefix: str, body: str, suffix: str) -> None:
    key = "AGE-SECRET-KEY-1" + body.upper()
    redacted = RedactSecrets().redact(f"{prefix}{key} {suffix}")
    assert key not in redacted
    assert REDACTED in redacted
