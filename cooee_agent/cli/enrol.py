"""``cooee-agent enrol``: set this host up (wizard or flags) or print its sealed enrolment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.config.paths import DEFAULT_STATE_DIR, STATE_DIR_ENV
from cooee_agent.errors import DiscoveryError, InputError

if TYPE_CHECKING:
    from cooee_agent.cli.wizard import Prompter


def enrol(
    non_interactive: bool = typer.Option(
        False, "--non-interactive", help="Take everything from flags; no questions."
    ),
    leader_key: str | None = typer.Option(
        None, "--leader-key", help="The Leader's key bundle, or @FILE holding it."
    ),
    bootstrap: list[str] = typer.Option(
        [], "--bootstrap", help="A Leader multiaddr ending in /p2p/<peer id> (repeatable)."
    ),
    mdns: bool = typer.Option(False, "--mdns", help="Also find peers with mDNS (multicast)."),
    join_token_file: Path | None = typer.Option(
        None, "--join-token-file", help="Read the join token from FILE (kept off the command line)."
    ),
    interval: str | None = typer.Option(
        None, "--interval", help="Heartbeat interval, 1 to 3600 s (default 30)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="File to write (default: $COOEE_CONFIG, else /etc/cooee-agent/config.toml).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing configuration file."),
    as_json: bool = typer.Option(
        False, "--json", help="Print what was written as JSON (--non-interactive)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the sealed envelope instead of writing a configuration."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the sealed envelope to FILE (air-gapped enrolment)."
    ),
    join_token: str | None = typer.Option(
        None, "--join-token", help="A join token for --dry-run/--out (prefer --join-token-file)."
    ),
    ollama_host: str | None = typer.Option(
        None, "--ollama-host", help="Ollama base URL (default: OLLAMA_HOST or 127.0.0.1:11434)."
    ),
    state_dir: Path = typer.Option(
        DEFAULT_STATE_DIR,
        "--state-dir",
        envvar=STATE_DIR_ENV,
        help="Directory of this agent's keys (created with mode 0600 keys if absent).",
    ),
) -> None:
    """Set this host up to enrol: the wizard, or --non-interactive with flags.

    With --dry-run or --out, print or save the sealed enrolment instead (no configuration).
    """
    state_dir = state_dir.absolute()
    if dry_run or out is not None:
        if not non_interactive:
            raise InputError("--dry-run and --out need --non-interactive")
        unused = _named(bootstrap=bootstrap, mdns=mdns, interval=interval, json=as_json)
        unused += _named(config=config, force=force)
        if unused:
            raise InputError(f"{unused[0]} writes a configuration; --dry-run and --out do not")
        _envelope(leader_key, join_token, join_token_file, ollama_host, state_dir, dry_run, out)
        return
    if join_token is not None:
        raise InputError("--join-token is for --dry-run/--out; use --join-token-file instead")
    from cooee_agent.config.paths import config_path

    path = config_path(config).absolute()
    if not non_interactive:
        flags = _named(leader_key=leader_key, bootstrap=bootstrap, mdns=mdns, json=as_json)
        flags += _named(join_token_file=join_token_file, interval=interval)
        if flags:
            raise InputError(f"{flags[0]} is for --non-interactive; the wizard asks instead")
        _interactive(path, state_dir, force, ollama_host)
        return
    report = _flags(
        path, state_dir, force, leader_key, bootstrap, mdns, join_token_file, interval, ollama_host
    )
    if as_json:
        emit_json(report)


def _named(**flags: object) -> list[str]:
    """The given flags among ``flags``, spelt as on the command line."""
    return ["--" + name.replace("_", "-") for name, value in flags.items() if value]


def _flags(
    path: Path,
    state_dir: Path,
    force: bool,
    leader_key: str | None,
    bootstrap: list[str],
    mdns: bool,
    join_token_file: Path | None,
    interval: str | None,
    ollama_host: str | None,
) -> dict[str, object]:
    """Write the configuration from flags; what was written, for --json."""
    from cooee_agent.config.answers import (
        Answers,
        check_bootstrap,
        check_interval,
        check_leader_key,
        leader_fingerprint,
        read_join_token_file,
    )
    from cooee_agent.config.model import DEFAULT_INTERVAL
    from cooee_agent.config.write import apply_answers

    if not leader_key:
        raise InputError("--leader-key is required with --non-interactive")
    bundle = check_leader_key(leader_key)
    peers = tuple(dict.fromkeys(check_bootstrap(peer) for peer in bootstrap))
    if not peers and not mdns:
        raise InputError("give at least one --bootstrap peer, or --mdns")
    answers = Answers(
        leader_key=bundle,
        bootstrap=peers,
        mdns=mdns,
        join_token=None if join_token_file is None else read_join_token_file(join_token_file),
        interval=DEFAULT_INTERVAL if interval is None else check_interval(interval),
        state_dir=state_dir,
        ollama_host=_checked_ollama_host(ollama_host),
    )
    keys, written = apply_answers(answers, config_path=path, force=force)
    typer.echo(f"wrote {written.path}: {written.note}", err=True)
    return {
        "config": str(written.path),
        "replaced": written.replaced,
        "group": written.group,
        "leader_fingerprint": leader_fingerprint(bundle),
        "agent_id": keys.agent_id,
        "agent_recipient": keys.recipient,
        "keys_created": keys.created,
        "state_dir": str(state_dir),
    }


def _checked_ollama_host(value: str | None) -> str | None:
    """The address as the configuration will hold it; checked by the configuration's own rule."""
    if value is None:
        return None
    from cooee_agent.config.answers import check_ollama_host

    try:
        return check_ollama_host(value)
    except InputError as error:
        raise InputError(f"--ollama-host: {error}") from None


def _interactive(path: Path, state_dir: Path, force: bool, ollama_host: str | None) -> None:
    if not sys.stdin.isatty():
        raise InputError(
            "the wizard asks its questions on a terminal and stdin is not one; "
            "for automation use --non-interactive --leader-key BUNDLE --bootstrap ADDR"
        )
    from cooee_agent.cli.wizard import TerminalPrompter, run_wizard

    host = _checked_ollama_host(ollama_host)

    def show_discovery(io: Prompter) -> None:
        from cooee_agent.cli.discover import render
        from cooee_agent.discovery.inventory import agent_tuples, discover

        io.say("What this host offers:")
        inventory = discover(ollama_host=ollama_host)
        try:
            tuples = agent_tuples(inventory)
        except DiscoveryError as error:
            render(inventory, [])
            io.say(f"Warning: {error}; the agent cannot enrol until that is fixed.")
            return
        render(inventory, tuples)

    run_wizard(
        TerminalPrompter(),
        config_path=path,
        state_dir=state_dir,
        force=force,
        show_discovery=show_discovery,
        ollama_host=host,
    )


def _envelope(
    leader_key: str | None,
    join_token: str | None,
    join_token_file: Path | None,
    ollama_host: str | None,
    state_dir: Path,
    dry_run: bool,
    out: Path | None,
) -> None:
    """Today's air-gapped path: build, sign and seal the enrolment; print it or save it."""
    if not leader_key:
        raise InputError("--leader-key is required with --non-interactive")
    from cooee_agent.agent.enrolment_record import build_enrolment
    from cooee_agent.config.answers import read_bundle_text, read_join_token_file
    from cooee_agent.config.write import ensure_agent_keys
    from cooee_agent.discovery.inventory import agent_tuples, discover
    from cooee_agent.protocol import parse_bundle, seal_enrolment
    from cooee_agent.protocol.keys import load_agent_keys

    if join_token is not None and join_token_file is not None:
        raise InputError("give --join-token or --join-token-file, not both")
    if out is not None:
        _check_out(out)
    if join_token_file is not None:
        join_token = read_join_token_file(join_token_file)
    bundle = parse_bundle(read_bundle_text(leader_key))
    # As root into the service's state directory, new keys go to its owner, as with the wizard.
    ensure_agent_keys(state_dir)
    keys = load_agent_keys(state_dir)
    inventory = discover(ollama_host=ollama_host)
    record = build_enrolment(inventory, agent_tuples(inventory), keys, join_token=join_token)
    envelope = seal_enrolment(record, keys, bundle)
    typer.echo(
        f"sealed to Leader {bundle.fingerprint}: {record.host.hostname} ({record.host.mac}), "
        f"{len(record.slots)} slot(s), {len(record.agents)} agent(s), agent id {keys.agent_id}",
        err=True,
    )
    if out is not None:
        from cooee_agent.atomic import replace_file

        replace_file(out, envelope + b"\n", mode=0o644)
    if dry_run:
        sys.stdout.write(envelope.decode("utf-8") + "\n")


def _check_out(out: Path) -> None:
    """Refuse an --out that can never be written before anything is discovered or created."""
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; name a file to write the envelope to")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: the directory {out.parent} does not exist")
