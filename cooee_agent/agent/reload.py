"""What a reload (SIGHUP) may change in a running agent, and what waits for a restart."""

from __future__ import annotations

import dataclasses

import msgspec.structs

from cooee_agent.config import Config


@dataclasses.dataclass(frozen=True, slots=True)
class Reload:
    """The running configuration after a reload, and what changed."""

    config: Config
    applied: tuple[str, ...]  # what took effect, as ``name=value`` for the log
    restart: tuple[str, ...]  # what changed but takes effect only after a restart
    heartbeat_changed: bool
    ollama_changed: bool


def reload_config(old: Config, new: Config) -> Reload:
    """``old`` with the live-applicable settings of ``new`` (log level, heartbeat, degraded
    threshold, join token, Ollama); the state directory, Leader keys and mesh stay as they are."""
    applied = []
    if new.log_level != old.log_level:
        applied.append(f"log_level={new.log_level}")
    if new.heartbeat != old.heartbeat:
        applied.append(
            f"heartbeat interval={new.heartbeat.interval:g}s jitter={new.heartbeat.jitter:g}"
        )
    if new.degraded_threshold != old.degraded_threshold:
        applied.append(f"degraded_threshold={new.degraded_threshold:g}s")
    if new.join_token != old.join_token:
        applied.append("join_token (used by the next enrolment)")
    if new.ollama != old.ollama:
        applied.append(f"ollama host={new.ollama.host}")
    restart = tuple(
        name
        for name, before, after in (
            ("state_dir", old.state_dir, new.state_dir),
            ("[leader]", old.leader, new.leader),
            ("[mesh]", old.mesh, new.mesh),
        )
        if before != after
    )
    config = msgspec.structs.replace(
        old,
        log_level=new.log_level,
        heartbeat=new.heartbeat,
        degraded_threshold=new.degraded_threshold,
        join_token=new.join_token,
        ollama=new.ollama,
    )
    return Reload(
        config=config,
        applied=tuple(applied),
        restart=restart,
        heartbeat_changed=new.heartbeat != old.heartbeat,
        ollama_changed=new.ollama != old.ollama,
    )
