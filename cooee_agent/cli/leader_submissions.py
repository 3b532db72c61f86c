"""``cooee-agent leader submissions|submission show|accept|reject|audit verify|export``: the PRs
and DRs the Leader received, an operator's decision on each, and the audit log."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.config.paths import DEFAULT_STATE_DIR, STATE_DIR_ENV
from cooee_agent.errors import CooeeError

STATE_DIR = typer.Option(
    DEFAULT_STATE_DIR,
    "--state-dir",
    envvar=STATE_DIR_ENV,
    help="Directory of the Leader's keys and registry.",
)
submission_app = typer.Typer(
    help="One submission: show it; accept or reject it (the agent is told).",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="The audit log: verify the chain, export it.", no_args_is_help=True)


class AuditBroken(CooeeError):
    """The audit log does not verify; the message names the first broken entry."""


def _book(state_dir: Path):  # type: ignore[no-untyped-def]
    from cooee_agent.leader.submission_book import SUBMISSIONS_FILE, SubmissionBook

    path = state_dir / SUBMISSIONS_FILE
    if not path.exists():
        raise CooeeError(f"no submissions at {path}: none was received yet")
    return SubmissionBook(path)


def list_submissions(
    state_dir: Path = STATE_DIR,
    state: str | None = typer.Option(
        None, "--state", help="Only those received, accepted or rejected."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List the PRs and DRs received, oldest first."""
    from cooee_agent.leader.submission_book import STATES, SUBMISSIONS_FILE, SubmissionError

    if state is not None and state not in STATES:
        raise SubmissionError(f"--state must be one of {', '.join(STATES)}")
    found = []
    if (state_dir / SUBMISSIONS_FILE).exists():
        with _book(state_dir) as book:
            found = book.submissions(state=state)
    if as_json:
        emit_json([s.to_dict() for s in found])
        return
    for s in found:
        host = f"{s.hostname} (host_id {s.host_id})"
        typer.echo(f"{s.id}  {s.kind}  {s.state:<8}  {host}  {s.received_at}  {s.title}")


def _decoded(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its text blobs shown as text (a diff's bytes as far as they decode)."""
    shown = dict(record)
    for name in ("description", "change", "context", "decision", "consequences"):
        if name in shown:
            raw = base64.urlsafe_b64decode(shown[name] + "=" * (-len(shown[name]) % 4))
            shown[name] = raw.decode("utf-8", errors="replace")
    return shown


@submission_app.command("show")
def show(
    submission_id: str = typer.Argument(..., help="The id (or 8+ first characters of it)."),
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Show one submission: who sent it, its state, and its content."""
    with _book(state_dir) as book:
        found = book.get(submission_id)
    value = {**found.to_dict(), "record": _decoded(found.record)}
    if as_json:
        emit_json(value)
        return
    for key in ("id", "kind", "state", "title", "hostname", "host_id", "sender", "received_at"):
        typer.echo(f"{key}: {value[key]}")
    typer.echo(f"tokens: {' '.join(found.tokens)}")
    typer.echo(f"digest: {found.digest}  audit entry: {found.audit_seq}")
    if found.decided_at:
        typer.echo(f"decided: {found.state} at {found.decided_at}: {found.reason}")
    record = value["record"]
    for key in ("address", "change_form", "status", "addresses", "supersedes"):
        if key in record:
            typer.echo(f"{key}: {record[key]}")
    for key in ("description", "context", "decision", "consequences", "change"):
        if record.get(key):
            typer.echo(f"--- {key}\n{record[key]}")


def _decide(submission_id: str, decision: str, reason: str, state_dir: Path) -> None:
    from cooee_agent.protocol.keys import load_leader_keys

    keys = load_leader_keys(state_dir)
    with _book(state_dir) as book:
        decided = book.decide(submission_id, decision, reason, keys, now=datetime.now(UTC))
    typer.echo(
        f"{decision} {decided.kind} {decided.id} of {decided.hostname} (audit entry "
        f"{decided.decision_seq}); the serving Leader sends the signed decision to the agent"
    )


REASON = typer.Option(..., "--reason", help="Why; sent to the agent and kept in the audit log.")


@submission_app.command("accept")
def accept(
    submission_id: str = typer.Argument(..., help="The id (or 8+ first characters of it)."),
    reason: str = REASON,
    state_dir: Path = STATE_DIR,
) -> None:
    """Accept a received submission."""
    _decide(submission_id, "accepted", reason, state_dir)


@submission_app.command("reject")
def reject(
    submission_id: str = typer.Argument(..., help="The id (or 8+ first characters of it)."),
    reason: str = REASON,
    state_dir: Path = STATE_DIR,
) -> None:
    """Reject a received submission."""
    _decide(submission_id, "rejected", reason, state_dir)


@audit_app.command("verify")
def verify(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Check the whole hash chain and the signed head; exit 1 naming the first broken entry."""
    from cooee_agent.leader.audit import Verdict
    from cooee_agent.leader.submission_book import SUBMISSIONS_FILE
    from cooee_agent.protocol.keys import load_leader_keys

    verify_key = load_leader_keys(state_dir).bundle.verify_key
    verdict = Verdict(True, 0)  # no file: nothing was ever received or logged
    if (state_dir / SUBMISSIONS_FILE).exists():
        with _book(state_dir) as book:
            verdict = book.verify(verify_key)
    if as_json:
        emit_json(
            {
                "ok": verdict.ok,
                "entries": verdict.entries,
                "broken_seq": verdict.broken_seq,
                "problem": verdict.problem,
            }
        )
    if not verdict.ok:
        where = f"entry {verdict.broken_seq}" if verdict.broken_seq is not None else "the log"
        raise AuditBroken(f"audit log broken at {where}: {verdict.problem}")
    if not as_json:
        typer.echo(f"audit log intact: {verdict.entries} entries, head signed by this Leader")


@audit_app.command("export")
def export(
    state_dir: Path = STATE_DIR,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file (default: standard output)."
    ),
) -> None:
    """Write the audit log as JSON lines (entries, then the signed head) for another tool."""
    from cooee_agent.leader.submission_book import SUBMISSIONS_FILE

    lines: list[str] = []
    if (state_dir / SUBMISSIONS_FILE).exists():
        with _book(state_dir) as book:
            lines = [
                json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                for line in book.export()
            ]
    text = "".join(f"{line}\n" for line in lines)
    if output is None:
        typer.echo(text, nl=False)
        return
    from cooee_agent.atomic import replace_file

    replace_file(output, text.encode("utf-8"), mode=0o600)
    typer.echo(f"wrote {len(lines)} line(s) to {output}", err=True)
