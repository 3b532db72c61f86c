"""The first-run wizard driven by scripted answers: what it asks, refuses, shows and writes."""

from __future__ import annotations

import grp
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cooee_agent.cli.wizard import START_COMMAND, WizardAborted, run_wizard
from cooee_agent.config import load_config, parse_config
from cooee_agent.config.answers import Answers, check_bootstrap, check_join_token
from cooee_agent.config.write import ensure_agent_keys, render_config, toml_string, write_config
from cooee_agent.errors import ConfigError, CooeeError, InputError
from cooee_agent.protocol.keys import generate_leader_keys, load_agent_keys

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "config.example.toml"
PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
PEER_DNS = "/dns4/leader.example/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


class Script:
    """A Prompter that answers from a list; an exception in the list is raised at that question."""

    def __init__(self, answers: Iterable[str | BaseException]) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.secret_prompts: list[str] = []
        self.said: list[str] = []

    def _next(self) -> str:
        if not self.answers:
            raise AssertionError(f"the wizard asked more than scripted: {self.prompts[-1]!r}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self._next()

    def secret(self, prompt: str) -> str:
        self.prompts.append(prompt)
        self.secret_prompts.append(prompt)
        return self._next()

    def say(self, text: str = "") -> None:
        self.said.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.said)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(generate_leader_keys(tmp_path_factory.mktemp("leader")).bundle.text)


def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "etc" / "config.toml", tmp_path / "state"


def test_answers_become_a_config_that_loads_back_and_keys_that_are_private(
    tmp_path: Path, bundle: str
) -> None:
    config, state = paths(tmp_path)
    script = Script(
        [bundle, "y", PEER, PEER_DNS, "", "n", "s3cret-join-token", "45", "y", "y"]
    )  # fmt: skip
    shown: list[object] = []
    outcome = run_wizard(
        script, config_path=config, state_dir=state, show_discovery=lambda io: shown.append(io)
    )

    assert shown == [script]  # discovery is shown, through the same prompter
    loaded = load_config(config, env={})
    assert loaded.leader.keys == (bundle,)
    assert loaded.mesh.bootstrap == (PEER, PEER_DNS)
    assert loaded.mesh.mdns is False
    assert loaded.join_token == "s3cret-join-token"
    assert loaded.heartbeat.interval == 45.0
    assert loaded.state_dir == state
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    for key in state.iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert outcome.keys.agent_id == load_agent_keys(state).agent_id and outcome.keys.created
    # The token is read without echo and never shown back; the fingerprint and next step are.
    assert script.secret_prompts == ["Join token (input hidden; empty for none): "]
    assert "s3cret-join-token" not in script.text
    assert outcome.leader_fingerprint in script.text
    assert f"  {START_COMMAND}" in script.said
    assert any(line.startswith("  + [mesh]") for line in script.said)


def test_refused_answers_are_asked_again_with_the_reason(tmp_path: Path, bundle: str) -> None:
    config, state = paths(tmp_path)
    script = Script(
        [
            "not-a-bundle",  # refused: prefix
            bundle, "n",  # the fingerprint does not match: asked again
            bundle, "y",
            "/ip4/10.0.0.1/tcp/4001",  # refused: no /p2p/<id>
            "", "n",  # no peer and no mDNS: refused
            "", "maybe", "y",  # mDNS only
            "two\nlines",  # refused: not printable
            "",  # no join token
            "0", "soon", "",  # refused twice, then the default
            "y", "n",
        ]
    )  # fmt: skip
    outcome = run_wizard(script, config_path=config, state_dir=state)

    refusals = [line for line in script.said if line.startswith("  Not accepted:")]
    assert len(refusals) == 6
    assert "does not start with 'cooee-leader-v1'" in refusals[0]
    assert "must end in /p2p/<peer id>" in refusals[1]
    assert "at least one bootstrap peer" in refusals[2]
    assert "printable" in refusals[3]
    assert "1 to 3600" in refusals[4] and "number of seconds" in refusals[5]
    assert "  Please answer y or n." in script.said
    assert script.prompts.count("Leader key bundle (or @FILE holding it): ") == 3
    assert f"  {START_COMMAND}" not in script.said
    loaded = load_config(config, env={})
    assert (loaded.mesh.bootstrap, loaded.mesh.mdns, loaded.join_token) == ((), True, None)
    assert loaded.heartbeat.interval == 30.0
    assert outcome.answers.join_token is None


@pytest.mark.parametrize(
    ("stop", "exit_code"), [(KeyboardInterrupt(), 130), (EOFError(), 1), ("n", 1)]
)
def test_stopping_before_the_last_question_writes_nothing(
    tmp_path: Path, bundle: str, stop: str | BaseException, exit_code: int
) -> None:
    config, state = paths(tmp_path)
    answers: list[str | BaseException] = [bundle, "y", PEER, "", "n", "token", "30"]
    answers.append(stop)  # at "Write it?"
    with pytest.raises(WizardAborted, match="nothing was written") as caught:
        run_wizard(Script(answers), config_path=config, state_dir=state)
    assert caught.value.exit_code == exit_code
    assert not config.exists() and not state.exists() and not config.parent.exists()


def test_interrupt_at_the_first_question_writes_nothing(tmp_path: Path) -> None:
    config, state = paths(tmp_path)
    with pytest.raises(WizardAborted) as caught:
        run_wizard(Script([KeyboardInterrupt()]), config_path=config, state_dir=state)
    assert caught.value.exit_code == 130 and list(tmp_path.iterdir()) == []


def test_an_existing_config_is_refused_before_any_question(tmp_path: Path, bundle: str) -> None:
    config, state = paths(tmp_path)
    config.parent.mkdir()
    config.write_text('log_level = "debug"\n')
    script = Script([])
    with pytest.raises(ConfigError, match="--force"):
        run_wizard(script, config_path=config, state_dir=state)
    assert script.prompts == [] and config.read_text() == 'log_level = "debug"\n'


def test_force_replaces_the_file_after_showing_a_diff(tmp_path: Path, bundle: str) -> None:
    config, state = paths(tmp_path)
    config.parent.mkdir()
    config.write_text('join_token = "old-secret"\n[mesh]\nmdns = true\n')
    script = Script([bundle, "y", PEER, "", "", "new-secret", "", "y", "n"])
    run_wizard(script, config_path=config, state_dir=state, force=True)
    assert "  -mdns = true" in script.said and "  +mdns = false" in script.said
    assert "old-secret" not in script.text and "new-secret" not in script.text
    assert load_config(config, env={}).join_token == "new-secret"


def test_the_packaged_template_is_replaced_without_force(tmp_path: Path, bundle: str) -> None:
    config, state = paths(tmp_path)
    config.parent.mkdir()
    shutil.copy(EXAMPLE, config)
    run_wizard(
        Script([bundle, "y", PEER, "", "", "", "", "y", "n"]), config_path=config, state_dir=state
    )
    assert load_config(config, env={}).leader.keys == (bundle,)


def test_existing_agent_keys_are_kept(tmp_path: Path, bundle: str) -> None:
    config, state = paths(tmp_path)
    from cooee_agent.protocol import load_or_create_agent_keys

    before = load_or_create_agent_keys(state).agent_id
    outcome = run_wizard(
        Script([bundle, "y", PEER, "", "", "", "", "y", "n"]), config_path=config, state_dir=state
    )
    assert outcome.keys.agent_id == before and not outcome.keys.created


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/ip4/10.0.0.1/tcp/4001", "must end in /p2p"),
        ("/ip4/10.0.0.1/udp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA", "TCP"),
        ("/ip4/10.0.0.1/tcp/4001/p2p/notapeer", "not a valid multiaddr"),
        ("10.0.0.1:4001", "not a valid multiaddr"),
    ],
)
def test_bootstrap_addresses_are_checked(text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        check_bootstrap(text)


@settings(max_examples=200, deadline=None)
@given(token=st.text(min_size=1, max_size=60), directory=st.text(min_size=1, max_size=30))
def test_rendered_configs_load_back_unchanged(token: str, directory: str) -> None:
    try:
        checked = check_join_token(token)
    except InputError:
        return
    state = Path("/var/lib") / directory.replace("\x00", "").strip("/ ")
    answers = Answers(
        leader_key="cooee-leader-v1.x.age1y",
        bootstrap=(PEER,),
        join_token=checked,
        state_dir=state,
    )
    loaded = parse_config(render_config(answers), env={})
    assert loaded.join_token == checked
    assert loaded.state_dir == Path(str(state).strip())


@given(text=st.text(max_size=40))
def test_toml_strings_read_back_as_written(text: str) -> None:
    import tomllib

    assert tomllib.loads(f"value = {toml_string(text)}")["value"] == text


def _other_group() -> grp.struct_group:
    return next(entry for entry in grp.getgrall() if entry.gr_gid not in (0, os.getgid()))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another group")
def test_as_root_the_config_goes_to_the_agent_group(tmp_path: Path, bundle: str) -> None:
    group = _other_group()
    text = render_config(Answers(leader_key=bundle, bootstrap=(PEER,), join_token="t"))
    written = write_config(tmp_path / "config.toml", text, force=False, group=group.gr_name)
    info = (tmp_path / "config.toml").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, group.gr_gid, 0o640)
    assert written.group == group.gr_name and group.gr_name in written.note


def test_without_the_group_the_owner_is_left_and_the_note_says_why(tmp_path: Path) -> None:
    text = render_config(Answers(leader_key="cooee-leader-v1.x.age1y", mdns=True))
    written = write_config(tmp_path / "c.toml", text, force=False, group="no-such-group-here")
    assert written.group is None and (tmp_path / "c.toml").stat().st_gid == os.getegid()
    assert "left owned by" in written.note


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_as_root_new_keys_belong_to_the_state_directory_owner(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)  # as packaging makes it: owned by the service's user
    ready = ensure_agent_keys(state)
    assert ready.created
    for key in state.iterdir():
        info = key.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_place_is_refused_before_any_question(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    script = Script([])
    with pytest.raises(CooeeError, match="not writable"):
        run_wizard(script, config_path=locked / "etc" / "c.toml", state_dir=tmp_path / "s")
    assert script.prompts == []
