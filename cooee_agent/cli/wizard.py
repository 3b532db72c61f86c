"""The interactive first-run wizard behind ``cooee-agent enrol``: ask, check, confirm, write.

Questions go through a Prompter, so tests drive the whole flow with scripted answers. Each
answer is checked by the configuration's own rule for its key (``cooee_agent.config.answers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from cooee_agent.cli.terminal_input import read_line
from cooee_agent.config.answers import (
    Answers,
    check_bootstrap,
    check_interval,
    check_join_token,
    check_leader_key,
    leader_fingerprint,
)
from cooee_agent.config.model import DEFAULT_INTERVAL
from cooee_agent.config.write import (
    AgentKeysReady,
    Written,
    apply_answers,
    check_can_create,
    check_writable,
    existing_text,
    summary,
)
from cooee_agent.errors import CooeeError, InputError

T = TypeVar("T")
START_COMMAND = "systemctl enable --now cooee-agent"


class Prompter(Protocol):
    """The operator: ``ask`` and ``secret`` raise EOFError or KeyboardInterrupt to abort."""

    def ask(self, prompt: str) -> str: ...

    def secret(self, prompt: str) -> str: ...

    def say(self, text: str = "") -> None: ...


class TerminalPrompter:
    """The operator at a terminal: stdin for answers, no echo for secrets, stdout for the rest."""

    def ask(self, prompt: str) -> str:
        return read_line(prompt)

    def secret(self, prompt: str) -> str:
        return read_line(prompt, echo=False)

    def say(self, text: str = "") -> None:
        print(text, flush=True)


class WizardAborted(CooeeError):
    """The operator stopped the wizard (Ctrl-C: exit 130; end of input or a "no": exit 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Outcome:
    answers: Answers
    leader_fingerprint: str
    keys: AgentKeysReady
    written: Written


def _ask_until(io: Prompter, prompt: str, check: Callable[[str], T], *, secret: bool = False) -> T:
    """Ask until ``check`` accepts the answer, saying why each refused one was refused."""
    while True:
        answer = io.secret(prompt) if secret else io.ask(prompt)
        try:
            return check(answer)
        except InputError as error:
            io.say(f"  Not accepted: {error}. Try again.")


def _yes_no(io: Prompter, prompt: str, *, default: bool) -> bool:
    choices = "[Y/n]" if default else "[y/N]"
    while True:
        answer = io.ask(f"{prompt} {choices} ").strip().lower()
        if not answer:
            return default
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        io.say("  Please answer y or n.")


def _leader_key(io: Prompter) -> str:
    io.say(
        "The Leader's key bundle is printed by `cooee-agent leader keygen` (or `leader bundle`)."
    )
    while True:
        bundle = _ask_until(io, "Leader key bundle (or @FILE holding it): ", check_leader_key)
        io.say(f"  Fingerprint: {leader_fingerprint(bundle)}")
        if _yes_no(
            io, "Is this the fingerprint the Leader printed (checked out of band)?", default=False
        ):
            return bundle
        io.say("  Then this bundle is not your Leader's: enrolments would be sealed to a stranger.")


def _bootstrap(io: Prompter) -> tuple[tuple[str, ...], bool]:
    io.say("Bootstrap peers: the Leader's multiaddrs as `leader serve` prints them, ending in")
    io.say("/p2p/<peer id>, one per line; an empty line ends the list.")
    peers: list[str] = []
    while True:
        peer = _ask_until(
            io,
            f"Bootstrap peer {len(peers) + 1}: ",
            lambda text: check_bootstrap(text) if text.strip() else "",
        )
        if peer in peers:
            io.say("  Already listed.")
        elif peer:
            peers.append(peer)
        elif peers:
            mdns = _yes_no(io, "Also find peers with mDNS on the local network?", default=False)
            return tuple(peers), mdns
        elif _yes_no(
            io, "No bootstrap peer. Find peers with mDNS on the local network only?", default=False
        ):
            return (), True
        else:
            io.say("  Not accepted: without mDNS at least one bootstrap peer is needed.")


def _questions(io: Prompter, *, state_dir: Path, ollama_host: str | None) -> Answers:
    leader_key = _leader_key(io)
    bootstrap, mdns = _bootstrap(io)
    join_token = _ask_until(
        io, "Join token (input hidden; empty for none): ", check_join_token, secret=True
    )
    interval = _ask_until(
        io,
        f"Heartbeat interval in seconds [{DEFAULT_INTERVAL:g}]: ",
        lambda text: check_interval(text) if text.strip() else DEFAULT_INTERVAL,
    )
    return Answers(
        leader_key=leader_key,
        bootstrap=bootstrap,
        mdns=mdns,
        join_token=join_token,
        interval=interval,
        state_dir=state_dir,
        ollama_host=ollama_host,
    )


def run_wizard(
    io: Prompter,
    *,
    config_path: Path,
    state_dir: Path,
    force: bool = False,
    show_discovery: Callable[[Prompter], None] | None = None,
    ollama_host: str | None = None,
) -> Outcome:
    """Show discovery, ask every question, show what will be written, and write it on a yes.

    Nothing is written before the last confirmation; an interrupt or end of input before it
    raises WizardAborted and leaves every file as it was.
    """
    # Refuse before asking, not after the operator has answered everything.
    check_writable(config_path, force=force)
    check_can_create(config_path)
    check_can_create(state_dir / "agent-signing.key")
    try:
        io.say("cooee-agent enrol: first-run setup. Ctrl-C or Ctrl-D stops it; nothing is")
        io.say("written before the last question.")
        io.say()
        if show_discovery is not None:
            show_discovery(io)
            io.say()
        answers = _questions(io, state_dir=state_dir, ollama_host=ollama_host)
        before = existing_text(config_path)
        io.say()
        verb = "replace" if before is not None else "create"
        io.say(f"This will {verb} {config_path} (mode 0640):")
        for line in summary(answers, before):
            io.say("  " + line)
        io.say(f"and keep this agent's keys in {state_dir} (created if absent, mode 0600).")
        if not _yes_no(io, "Write it?", default=True):
            raise WizardAborted("not confirmed; nothing was written")
    except KeyboardInterrupt:
        raise WizardAborted("interrupted; nothing was written", 130) from None
    except EOFError:
        raise WizardAborted("input ended before the last question; nothing was written") from None

    keys, written = apply_answers(answers, config_path=config_path, force=force)
    fingerprint = leader_fingerprint(answers.leader_key)
    io.say(f"Wrote {written.path}: {written.note}.")
    made = "created" if keys.created else "already there, kept"
    io.say(f"Agent keys {made} in {state_dir}; agent id {keys.agent_id}.")
    try:
        if _yes_no(io, "Show the command that starts the agent?", default=True):
            io.say(f"  {START_COMMAND}")
    except (KeyboardInterrupt, EOFError):
        pass  # everything is written; only the hint is skipped
    return Outcome(answers=answers, leader_fingerprint=fingerprint, keys=keys, written=written)
