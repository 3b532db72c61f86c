"""``cooee-agent leader token create|list|revoke``: join tokens, kept by the Leader as salted
hashes; each admits a number of new hosts (one by default) until it expires or is revoked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.config.paths import DEFAULT_STATE_DIR, STATE_DIR_ENV
from cooee_agent.errors import InputError

token_app = typer.Typer(
    help="Join tokens: create one (shown once), list them, revoke one.", no_args_is_help=True
)

STATE_DIR = typer.Option(
    DEFAULT_STATE_DIR,
    "--state-dir",
    envvar=STATE_DIR_ENV,
    help="Directory of the Leader's keys and registry.",
)
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: datetime) -> datetime:
    """``--expires``: a duration from now (``30m``, ``12h``, ``7d``, ``2w``) or a UTC time
    (``2026-12-31T00:00:00Z``)."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match is not None:
        return now + timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise InputError(
            f"--expires must be a duration (30m, 12h, 7d, 2w) or a UTC time "
            f"(2026-12-31T00:00:00Z), got {text!r}"
        ) from None
    return moment


def _registry(state_dir: Path):  # type: ignore[no-untyped-def]
    from cooee_agent.leader.registry import REGISTRY_FILE, Registry

    return Registry(state_dir / REGISTRY_FILE)


@token_app.command("create")
def create(
    state_dir: Path = STATE_DIR,
    uses: int = typer.Option(1, "--uses", min=1, help="New hosts it may admit (default 1)."),
    expires: str | None = typer.Option(
        None, "--expires", help="When it stops working: 30m, 12h, 7d, 2w or a UTC time."
    ),
    note: str | None = typer.Option(None, "--note", help="What it is for, kept with it."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Make a join token and print it once; the Leader keeps only its salted hash.

    From the first token made, a new host needs a valid join token (or an operator's
    'leader approve') to be admitted.
    """
    now = datetime.now(UTC)
    expires_at = None if expires is None else parse_expiry(expires, now)
    with _registry(state_dir) as registry:
        token_id, token = registry.create_join_token(
            now=now, uses=uses, expires_at=expires_at, note=note
        )
        made = next(t for t in registry.list_join_tokens() if t.id == token_id)
    if as_json:
        emit_json({"token": token, **made.to_dict(now)})
        return
    typer.echo(token)
    until = "" if made.expires_at is None else f", until {made.to_dict(now)['expires_at']}"
    typer.echo(
        f"join token {token_id}: {uses} use(s){until}; shown once, give it to the host "
        "(cooee-agent enrol --join-token-file)",
        err=True,
    )


@token_app.command("list")
def list_tokens(
    state_dir: Path = STATE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List the join tokens (never the tokens themselves: they are not kept)."""
    now = datetime.now(UTC)
    with _registry(state_dir) as registry:
        tokens = registry.list_join_tokens()
    if as_json:
        emit_json([t.to_dict(now) for t in tokens])
        return
    for t in tokens:
        shown = t.to_dict(now)
        expiry = f"  expires {shown['expires_at']}" if t.expires_at is not None else ""
        note = f"  {t.note}" if t.note else ""
        typer.echo(
            f"{t.id:>4}  {t.state(now):<7}  used {t.used}/{t.uses}  made {t.created_at}"
            f"{expiry}{note}"
        )


@token_app.command("revoke")
def revoke(
    token_id: int = typer.Argument(..., help="The token's id (from 'leader token list')."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Stop a join token from admitting anyone from now on."""
    with _registry(state_dir) as registry:
        revoked = registry.revoke_join_token(token_id, now=datetime.now(UTC))
    typer.echo(f"revoked join token {revoked.id} (used {revoked.used}/{revoked.uses})")
