"""Typed configuration: defaults, validation that names key, file and line, env overrides."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent import config as cfg
from cooee_agent.config import paths
from cooee_agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "config.example.toml"
PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o640)  # as 'enrol' writes it: a file with a join token is refused if others read it
    return path


def test_missing_default_file_gives_production_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    config = cfg.load_config(env={})
    assert config == cfg.Config()
    assert config.state_dir == Path("/var/lib/cooee-agent")
    assert config.mesh.listen == "/ip4/0.0.0.0/tcp/4001"
    assert config.mesh.mdns is False
    assert config.heartbeat.interval == 30.0
    assert config.heartbeat.jitter == 0.2
    assert config.heartbeat.offline_after == 3
    assert config.heartbeat.offline_timeout == 90.0
    assert config.join_token is None
    assert config.source is None


def test_empty_file_gives_defaults_and_remembers_its_source(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert cfg.load_config(path, env={}) == cfg.Config(source=path)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: configuration file not found"):
        cfg.load_config(missing, env={})


def test_cooee_config_env_names_the_file_and_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "debug"\n')
    assert cfg.load_config(env={"COOEE_CONFIG": str(path)}).log_level == "debug"
    with pytest.raises(ConfigError, match="not found"):
        cfg.load_config(env={"COOEE_CONFIG": str(tmp_path / "gone.toml")})


def test_explicit_path_wins_over_env(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "error"\n')
    other = tmp_path / "other.toml"
    other.write_text('log_level = "debug"\n')
    assert cfg.load_config(path, env={"COOEE_CONFIG": str(other)}).log_level == "error"


def test_cooee_state_dir_env_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'state_dir = "/srv/cooee"\n')
    env = {"COOEE_STATE_DIR": str(tmp_path / "state")}
    assert cfg.load_config(path, env=env).state_dir == tmp_path / "state"
    assert cfg.load_config(path, env={}).state_dir == Path("/srv/cooee")


def test_full_file_is_read_into_typed_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
state_dir = "/srv/cooee"
log_level = "WARNING"
join_token = "join-abc"
degraded_threshold = 120

[leader]
keys = ["bundle-one", "bundle-two"]

[mesh]
listen = "/ip4/127.0.0.1/tcp/4002"
bootstrap = ["{PEER}"]
mdns = true

[heartbeat]
interval = 5
jitter = 0
offline_after = 4

[ollama]
host = "10.1.2.3:11434"
""",
    )
    config = cfg.load_config(path, env={})
    assert config.state_dir == Path("/srv/cooee")
    assert config.log_level == "warning"
    assert config.join_token == "join-abc"
    assert config.degraded_threshold == 120.0
    assert config.leader.keys == ("bundle-one", "bundle-two")
    assert config.mesh == cfg.MeshConfig("/ip4/127.0.0.1/tcp/4002", (PEER,), True)
    assert config.heartbeat == cfg.HeartbeatConfig(5.0, 0.0, 4)
    assert isinstance(config.heartbeat.interval, float)
    assert config.ollama.host == "http://10.1.2.3:11434"


def test_join_token_stays_out_of_repr(tmp_path: Path) -> None:
    path = write(tmp_path, 'join_token = "very-secret-join"\n')
    config = cfg.load_config(path, env={})
    assert config.join_token == "very-secret-join"
    assert "very-secret-join" not in repr(config)


def test_a_single_leader_key_may_be_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, '[leader]\nkeys = "bundle"\n')
    assert cfg.load_config(path, env={}).leader.keys == ("bundle",)


def test_dotted_keys_work_like_tables(tmp_path: Path) -> None:
    path = write(tmp_path, "heartbeat.interval = 12\n")
    assert cfg.load_config(path, env={}).heartbeat.interval == 12.0


@pytest.mark.parametrize(
    ("text", "line", "name", "message"),
    [
        ('log_level = "info"\nfrobnicate = 1\n', 2, "frobnicate", "unknown key"),
        ("[heartbeat]\ninterval = 30\nintervall = 3\n", 3, "heartbeat.intervall", "unknown key"),
        ("[heartbeat]\njitter = 0.9\n", 2, "heartbeat.jitter", r"\[0, 0.5\]"),
        ("[heartbeat]\ninterval = 0\n", 2, "heartbeat.interval", r"\[1, 3600\]"),
        ('[heartbeat]\ninterval = "30"\n', 2, "heartbeat.interval", "must be a number"),
        ("[heartbeat]\ninterval = true\n", 2, "heartbeat.interval", "must be a number"),
        ("[heartbeat]\noffline_after = 2.5\n", 2, "heartbeat.offline_after", "integer"),
        ("[heartbeat]\noffline_after = 0\n", 2, "heartbeat.offline_after", r"\[1, 100\]"),
        ('state_dir = "relative/dir"\n', 1, "state_dir", "absolute path"),
        ("state_dir = 3\n", 1, "state_dir", "must be a string"),
        ('log_level = "loud"\n', 1, "log_level", "one of"),
        ('join_token = "  "\n', 1, "join_token", "must not be empty"),
        ("degraded_threshold = 0\n", 1, "degraded_threshold", r"\(0, 604800\]"),
        ('[mesh]\nlisten = "/ip4/999.0.0.1/tcp/1"\n', 2, "mesh.listen", "not a valid multiaddr"),
        ('[mesh]\nlisten = "/ip4/127.0.0.1/udp/1"\n', 2, "mesh.listen", "TCP multiaddr"),
        ('[mesh]\nbootstrap = ["/ip4/1.2.3.4/tcp/1", "nope"]\n', 2, "mesh.bootstrap", "item 1"),
        ('[mesh]\nmdns = "yes"\n', 2, "mesh.mdns", "true or false"),
        ('[ollama]\nhost = "ftp://x"\n', 2, "ollama.host", "http"),
        ('[ollama]\nhost = "http://x:11434/api"\n', 2, "ollama.host", "no path"),
        ("[leader]\nkeys = [1]\n", 2, "leader.keys", "item 0"),
        ("leader = 3\n", 1, "leader", "must be a table"),
        ("\n[telemetry]\nx = 1\n", 2, "telemetry", "unknown table"),
    ],
)
def test_invalid_values_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, name: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        cfg.load_config(path, env={})
    assert str(caught.value).startswith(f"{path}:{line}: {name}: ")
    assert caught.value.exit_code == 2


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "info"\nstate_dir = \n')
    with pytest.raises(ConfigError, match=rf"{path}: invalid TOML: .*line 2"):
        cfg.load_config(path, env={})


def test_unreadable_encoding_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"log_level = '\xff'\n")
    with pytest.raises(ConfigError, match="cannot read"):
        cfg.load_config(path, env={})


def test_dev_mode_listens_on_loopback_and_refuses_mdns(tmp_path: Path) -> None:
    assert cfg.parse_config("", env={}, dev=True).mesh.listen == "/ip4/127.0.0.1/tcp/0"
    explicit = cfg.parse_config('[mesh]\nlisten = "/ip4/127.0.0.1/tcp/9"\n', env={}, dev=True)
    assert explicit.mesh.listen == "/ip4/127.0.0.1/tcp/9"
    with pytest.raises(ConfigError, match=r"mesh\.mdns: must be false in dev mode"):
        cfg.parse_config("[mesh]\nmdns = true\n", env={}, dev=True)


def test_example_config_is_valid_and_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    config = cfg.load_config(EXAMPLE, env={})
    assert config.source == EXAMPLE
    # Every key of the schema appears in the example, set or commented out.
    for section, keys in cfg.SCHEMA.items():
        if section:
            assert f"[{section}]" in text
        for key in keys:
            assert f"{key} =" in text, key


@given(
    interval=st.floats(min_value=1, max_value=3600, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=0.5, allow_nan=False),
    offline_after=st.integers(min_value=1, max_value=100),
    threshold=st.floats(min_value=1e-3, max_value=604800, allow_nan=False),
    keys=st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1)),
    mdns=st.booleans(),
    port=st.integers(min_value=0, max_value=65535),
)
def test_valid_values_round_trip_through_toml(
    interval: float,
    jitter: float,
    offline_after: int,
    threshold: float,
    keys: list[str],
    mdns: bool,
    port: int,
) -> None:
    text = "\n".join(
        [
            f"degraded_threshold = {threshold!r}",
            "[leader]",
            f"keys = {json.dumps(keys)}",
            "[mesh]",
            f'listen = "/ip4/127.0.0.1/tcp/{port}"',
            f"mdns = {json.dumps(mdns)}",
            "[heartbeat]",
            f"interval = {interval!r}",
            f"jitter = {jitter!r}",
            f"offline_after = {offline_after}",
        ]
    )
    config = cfg.parse_config(text, env={})
    assert config.heartbeat == cfg.HeartbeatConfig(interval, jitter, offline_after)
    assert config.degraded_threshold == threshold
    assert config.leader.keys == tuple(keys)
    assert config.mesh.mdns is mdns
    assert config.mesh.listen == f"/ip4/127.0.0.1/tcp/{port}"


@given(
    section=st.sampled_from(sorted(cfg.SCHEMA)),
    key=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
)
def test_every_unknown_key_is_rejected_by_name(section: str, key: str) -> None:
    if key in cfg.SCHEMA[section] or (not section and key in cfg.SCHEMA):
        return
    text = (f"[{section}]\n" if section else "") + f"{key} = 1\n"
    with pytest.raises(ConfigError, match="unknown") as caught:
        cfg.parse_config(text, env={})
    name = f"{section}.{key}" if section else key
    assert f": {name}: unknown key" in str(caught.value)


@given(jitter=st.floats(allow_nan=True, allow_infinity=True))
def test_jitter_outside_its_range_is_always_rejected(jitter: float) -> None:
    text = f"[heartbeat]\njitter = {_toml_float(jitter)}\n"
    if 0 <= jitter <= 0.5:
        assert cfg.parse_config(text, env={}).heartbeat.jitter == jitter
    else:
        with pytest.raises(ConfigError, match=r"heartbeat\.jitter"):
            cfg.parse_config(text, env={})


@given(
    interval=st.floats(min_value=1, max_value=3600),
    jitter=st.floats(min_value=0, max_value=0.5),
    unit=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_heartbeat_delay_stays_within_the_jitter_band(
    interval: float, jitter: float, unit: float
) -> None:
    delay = cfg.HeartbeatConfig(interval, jitter).delay(unit)
    assert interval * (1 - jitter) - 1e-9 <= delay <= interval * (1 + jitter) + 1e-9


def _toml_float(value: float) -> str:
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    assert tomllib.loads(f"x = {text}")["x"] == value
    return text


def test_ollama_host_comes_from_the_environment_when_the_file_is_silent() -> None:
    config = cfg.parse_config("", env={"OLLAMA_HOST": "0.0.0.0:11500"})
    assert config.ollama.host == "http://127.0.0.1:11500"


def test_the_file_wins_over_the_environment_for_the_ollama_host() -> None:
    config = cfg.parse_config('[ollama]\nhost = "10.0.0.5:11434"\n', env={"OLLAMA_HOST": "x:1"})
    assert config.ollama.host == "http://10.0.0.5:11434"


def test_the_schema_is_the_models_fields_less_the_source() -> None:
    import msgspec

    tables = {"": cfg.Config, "leader": cfg.LeaderConfig, "mesh": cfg.MeshConfig}
    tables |= {"heartbeat": cfg.HeartbeatConfig, "ollama": cfg.OllamaConfig}
    assert set(cfg.SCHEMA) == set(tables)
    for section, table in tables.items():
        names = {field.name for field in msgspec.structs.fields(table)} - {"source"}
        assert set(cfg.SCHEMA[section]) == names - set(tables), section


def test_the_source_is_not_for_the_file_to_set() -> None:
    with pytest.raises(ConfigError, match=r"^<config>:1: source: unknown key"):
        cfg.parse_config('source = "/etc/other.toml"\n', env={})


def test_an_integer_too_large_for_any_machine_type_is_out_of_range() -> None:
    text = "[heartbeat]\noffline_after = 99999999999999999999\n"
    with pytest.raises(ConfigError, match=r"offline_after: must be in \[1, 100\], got 9{20}$"):
        cfg.parse_config(text, env={})


def test_the_join_token_stays_out_of_rich_reprs_too() -> None:
    config = cfg.parse_config('join_token = "very-secret-join"\n', env={})
    shown = dict(config.__rich_repr__())
    assert "join_token" not in shown and shown["log_level"] == "info"


def test_values_built_in_code_are_not_held_to_the_files_bounds() -> None:
    # Tests and dev mode run sub-second heartbeats; the bounds are for what a file may say.
    assert cfg.HeartbeatConfig(interval=0.05).interval == 0.05
