"""``cooee-agent discover``: show what this host offers and the agent tuples it forms."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.errors import DiscoveryError

if TYPE_CHECKING:
    from cooee_agent.discovery.inventory import SlotTuple
    from cooee_agent.discovery.model import Inventory


def discover(
    as_json: bool = typer.Option(False, "--json", help="Print the versioned JSON document."),
    ollama_host: str | None = typer.Option(
        None,
        "--ollama-host",
        help="Ollama address, same syntax as OLLAMA_HOST (default: $OLLAMA_HOST or 127.0.0.1).",
    ),
    timeout: float = typer.Option(1.5, "--timeout", min=0.1, help="Seconds each probe may take."),
    host_root: Path | None = typer.Option(
        None,
        "--host-root",
        help="Read sys, proc, etc, usr, var and opt under this directory "
        "(a container with the host's / mounted there).",
    ),
) -> None:
    """Discover host, primary MAC, GPUs and Ollama models; exit 1 if no identity can be formed."""
    from cooee_agent.discovery.host_paths import HostPaths
    from cooee_agent.discovery.inventory import agent_tuples, discover, inventory_to_dict

    paths = HostPaths() if host_root is None else HostPaths.under(host_root)
    inventory = discover(paths, ollama_host=ollama_host, timeout=timeout)
    if as_json:
        document = inventory_to_dict(inventory)
        emit_json(document)
        if document["identity_error"]:
            raise DiscoveryError(document["identity_error"])
        return
    try:
        tuples = agent_tuples(inventory)
    except DiscoveryError:
        render(inventory, [])
        raise
    render(inventory, tuples)


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def render(inventory: Inventory, tuples: list[SlotTuple]) -> None:
    """Tables for people: host, NIC, GPUs, models, agents, and what failed."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    host = inventory.host
    console.print(f"[bold]Host[/bold]  {host.hostname}  ({host.os_release}, {host.arch})")
    nic = inventory.nic
    if nic is None:
        console.print("[bold]MAC[/bold]   [red]none usable[/red]")
    else:
        kind = "permanent" if nic.permanent else "[yellow]not permanent[/yellow]"
        console.print(f"[bold]MAC[/bold]   {nic.mac} on {nic.name} ({kind}; {nic.why})")

    gpus = Table(title="GPUs", title_justify="left")
    for column in ("slot", "vendor", "name", "gpu_id", "pci", "memory", "free", "busy"):
        gpus.add_column(column)
    for gpu in inventory.gpus:
        gpus.add_row(
            "-" if gpu.slot is None else str(gpu.slot),
            gpu.vendor,
            gpu.name,
            gpu.gpu_id,
            gpu.pci_address or "-",
            _size(gpu.memory_total),
            _size(gpu.memory_free),
            "-" if gpu.utilisation is None else f"{gpu.utilisation}%",
        )
    if not inventory.gpus:
        gpus.add_row("0", "cpu", "no GPU found", "cpu", "-", "-", "-", "-")
    console.print(gpus)

    info = inventory.ollama
    where = "Ollama: not probed"
    if info is not None:
        version = f" {info.version}" if info.version else ""
        source = {"api": "API", "none": "nothing found"}.get(info.source, "on-disk manifests")
        where = f"Ollama{version} at {info.address} ({source})"
        if info.models_dir:
            where += f" from {info.models_dir}"
    models = Table(title=where, title_justify="left")
    for column in ("model", "digest", "size", "family", "quant", "loaded"):
        models.add_column(column)
    loaded = {} if info is None else {model.name: model for model in info.loaded}
    for model in () if info is None else info.models:
        running = loaded.get(model.name)
        models.add_row(
            model.name + (" (remote)" if model.remote else ""),
            model.digest[:12],
            _size(model.size),
            model.family or "-",
            model.quantisation or "-",
            "-" if running is None else f"{_size(running.size_vram)} VRAM",
        )
    console.print(models)

    agents = Table(title="Agents (model x GPU slot)", title_justify="left")
    for column in ("slot", "gpu_id", "model", "short key"):
        agents.add_column(column)
    for entry in tuples:
        agents.add_row(str(entry.slot), entry.gpu_id, entry.tuple.model, entry.tuple.short_key)
    console.print(agents)

    if inventory.failures:
        failed = Table(title="Probes that failed", title_justify="left")
        for column in ("probe", "reason", "detail"):
            failed.add_column(column)
        for failure in inventory.failures:
            failed.add_row(failure.probe, failure.reason, failure.detail)
        console.print(failed)
