"""``cooee-agent run``: the agent daemon in the foreground (systemd Type=notify)."""

from __future__ import annotations

from pathlib import Path

import typer

from cooee_agent.cli.config_paths import CONFIG_HELP, STATE_DIR_HELP, load
from cooee_agent.cli.state import STATE

CONFIG = typer.Option(None, "--config", help=CONFIG_HELP)
STATE_DIR = typer.Option(None, "--state-dir", help=STATE_DIR_HELP)


def run(
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        metavar="HOST:PORT",
        help="Serve the agent's Prometheus /metrics there, e.g. 127.0.0.1:9470 (off by "
        "default). Any address but loopback needs --metrics-token-file.",
    ),
    metrics_token_file: Path | None = typer.Option(
        None,
        "--metrics-token-file",
        help="File (mode 0600) holding the bearer token a scrape must present.",
    ),
) -> None:
    """Run the agent: discover, enrol with the Leader, announce availability until stopped."""
    from cooee_agent.agent.logs import setup_logging
    from cooee_agent.agent.wiring import production_daemon

    settings = load(config, state_dir)
    if metrics is None and metrics_token_file is not None:
        from cooee_agent.errors import ConfigError

        raise ConfigError("--metrics-token-file needs --metrics HOST:PORT")
    secrets = [settings.join_token] if settings.join_token else []
    setup_logging("debug" if STATE.debug else settings.log_level, secrets=secrets)
    from cooee_agent.state_lock import hold_state_dir

    # Held before anything touches the state: a second agent on this directory (a cloned VM)
    # would share this identity and cut the first off at the Leader.
    with hold_state_dir(Path(settings.state_dir), "cooee-agent run"):
        daemon = production_daemon(settings, lambda: load(config, state_dir))
        exporter = None
        if metrics is not None:
            from cooee_agent.agent.metrics import start_agent_metrics

            exporter = start_agent_metrics(daemon, metrics, token_file=metrics_token_file)
        try:
            code = daemon.run()
        finally:
            if exporter is not None:
                exporter.close()
    if code:
        raise typer.Exit(code)
