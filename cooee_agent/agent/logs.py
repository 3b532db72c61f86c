"""Daemon logging: journald with structured fields under systemd, stderr elsewhere; no secrets."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

IDENTIFIER = "cooee-agent"
REDACTED = "[REDACTED]"

# What a secret looks like when it strays into a message. Bech32 is case-insensitive, so are these.
SECRET_PATTERNS = (
    re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+", re.IGNORECASE),  # age X25519 identity
    re.compile(r"AGE-PLUGIN-[0-9A-Z_]+-1[0-9A-Z]+", re.IGNORECASE),  # age plugin identity
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        re.DOTALL,
    ),
)
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_HANDLER_MARK = "_cooee_handler"

Sender = Callable[..., Any]


class RedactSecrets(logging.Filter):
    """Rewrites every record so no secret reaches a handler: message, arguments, traceback, fields.

    Patterns catch key material by its shape; ``add()`` registers literal values that have no
    shape (a join token). Attach it to handlers, so records from every logger pass through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._literals: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if secret:
            self._literals.add(secret)

    def redact(self, text: str) -> str:
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
        # Longest first, so a secret that contains another is removed whole.
        for literal in sorted(self._literals, key=len, reverse=True):
            text = text.replace(literal, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw template, drop the arguments
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # The exception object itself would be rendered again (journald sends EXCEPTION_INFO).
        record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if _FIELD_NAME.fullmatch(name) and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


def journal_stream_matches(env: Mapping[str, str], stream: TextIO) -> bool:
    """True when $JOURNAL_STREAM names ``stream``: systemd connected it to journald itself.

    systemd.exec(5): compare device and inode, since a child whose stderr was redirected
    inherits the variable but not the connection.
    """
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def _journal_sender() -> Sender | None:
    try:
        from systemd import journal  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    send: Sender = journal.send
    return send


def _fields_only(send: Sender) -> Sender:
    """journald takes upper-case field names; the stock handler also passes LogRecord's own
    attributes (msg, args, ...), which would be dropped or rejected. Keep the valid ones."""

    def sender(message: str, /, **fields: Any) -> Any:
        kept = {k: v for k, v in fields.items() if _FIELD_NAME.fullmatch(k) and v is not None}
        return send(message, **kept)

    return sender


def setup_logging(
    level: str | int = "info",
    *,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    journal_sender: Sender | None = None,
    identifier: str = IDENTIFIER,
) -> logging.Handler:
    """Route all logging to journald (when stderr is the journal stream) or to ``stream``.

    Replaces the root logger's handlers, so calling it again (on SIGHUP) changes the level
    without doubling output. ``identifier`` is the journal's SYSLOG_IDENTIFIER (the Leader
    logs as cooee-leader). Upper-case ``extra`` keys become journal fields:
    ``log.info("enrolled as host %d", 7, extra={"COOEE_HOST_ID": 7})``. Returns the handler;
    its RedactSecrets filter is ``handler.filters[0]``.
    """
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    handler: logging.Handler | None = None
    if journal_stream_matches(env, stream):
        send = journal_sender or _journal_sender()
        if send is not None:
            from systemd.journal import JournalHandler  # type: ignore[import-untyped]

            handler = JournalHandler(
                sender_function=_fields_only(send), SYSLOG_IDENTIFIER=identifier
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
    if handler is None:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, _HANDLER_MARK, False):
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
