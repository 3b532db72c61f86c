"""What a reload applies at once and what it leaves for a restart."""

from __future__ import annotations

from pathlib import Path

from cooee_agent.agent.reload import reload_config
from cooee_agent.config import Config, HeartbeatConfig, LeaderConfig, MeshConfig, OllamaConfig


def test_live_settings_are_applied_and_reported() -> None:
    old = Config(state_dir=Path("/a"))
    new = Config(
        state_dir=Path("/a"),
        log_level="debug",
        join_token="secret",
        degraded_threshold=5,
        heartbeat=HeartbeatConfig(interval=10, jitter=0.1),
        ollama=OllamaConfig(host="http://127.0.0.1:9"),
    )
    change = reload_config(old, new)
    assert change.config == new
    assert change.applied == (
        "log_level=debug",
        "heartbeat interval=10s jitter=0.1",
        "degraded_threshold=5s",
        "join_token (used by the next enrolment)",
        "ollama host=http://127.0.0.1:9",
    )
    assert "secret" not in " ".join(change.applied)
    assert change.heartbeat_changed and change.ollama_changed and change.restart == ()


def test_state_dir_leader_and_mesh_wait_for_a_restart() -> None:
    old = Config(state_dir=Path("/a"), leader=LeaderConfig(keys=("one",)))
    new = Config(
        state_dir=Path("/b"), leader=LeaderConfig(keys=("two",)), mesh=MeshConfig(mdns=True)
    )
    change = reload_config(old, new)
    assert change.config == old
    assert change.restart == ("state_dir", "[leader]", "[mesh]")
    assert change.applied == () and not change.heartbeat_changed and not change.ollama_changed
