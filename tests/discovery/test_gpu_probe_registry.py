"""A GPU vendor added from outside the package: registered through the public probe list, it is
discovered by ``cooee-agent discover``, enrolled under its own vendor and gpu_id form, and held
by the Leader's registry; a vendor nobody registered is still refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from discovery_support import NETWORK_FIXTURES, OLLAMA_FIXTURES, closed_port
from pyrage import x25519
from typer.testing import CliRunner

from cooee_agent.agent.enrolment_record import build_enrolment
from cooee_agent.cli import app
from cooee_agent.discovery.gpu import Result, discover_gpus, gpu_usage
from cooee_agent.discovery.gpu.registry import (
    register,
    register_entry_points,
    registered,
    unregister,
)
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.inventory import agent_tuples, discover
from cooee_agent.discovery.model import Gpu, ProbeFailure
from cooee_agent.errors import IdentityError, ProbeError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.canonical import normalise_gpu_id
from cooee_agent.leader.registrar import Registrar
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.keys import AgentKeys, generate_leader_keys
from cooee_agent.protocol.records import EnrolmentRecord
from cooee_agent.protocol.sealing import seal_enrolment

ACME_FORM = gpu_ids.GpuIdForm("acme", re.compile(r"^acme:[a-z0-9-]{1,32}$"), "acme:<serial>")
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AcmeProbe:
    """A made-up accelerator that shows itself as sysfs class ``acme`` with a serial number."""

    name: ClassVar[str] = "acme"
    vendor: ClassVar[str] = "acme"
    gpu_id_forms: ClassVar[tuple[gpu_ids.GpuIdForm, ...]] = (ACME_FORM,)
    usage_interval: ClassVar[float | None] = 30.0

    def supported(self, platform: str) -> bool:
        return True

    def probe(self, paths: HostPaths) -> Result:
        devices = sorted((paths.sysfs / "class" / "acme").glob("acme*"))
        if not devices:
            raise ProbeError("no-gpus", f"no acme device under {paths.sysfs}/class/acme")
        gpus = tuple(
            Gpu(
                vendor="acme",
                name="Acme Rocket 9000",
                gpu_id=f"acme:{(device / 'serial').read_text().strip().lower()}",
                pci_address=(device / "pci_address").read_text().strip(),
                memory_total=96 * 2**30,
            )
            for device in devices
        )
        return gpus, ()

    def usage(self, paths: HostPaths) -> Result:
        return self.probe(paths)


@pytest.fixture
def acme() -> Iterator[AcmeProbe]:
    probe = AcmeProbe()
    register(probe)
    yield probe
    unregister(probe.name)


@pytest.fixture
def acme_host(tmp_path: Path) -> Path:
    """A host tree: the bond-docker network fixture's sysfs, with one acme card beside its NICs."""
    root = tmp_path / "host"
    fixture = NETWORK_FIXTURES / "bond-docker" / "sys"
    (root / "sys" / "class").mkdir(parents=True)
    (root / "sys" / "devices").symlink_to(fixture / "devices")
    for entry in (fixture / "class").iterdir():
        (root / "sys" / "class" / entry.name).symlink_to(entry)
    card = root / "sys" / "class" / "acme" / "acme0"
    card.mkdir(parents=True)
    (card / "serial").write_text("SN-0042\n")
    (card / "pci_address").write_text("0000:41:00.0\n")
    return root


def test_registering_a_probe_adds_it_to_the_list_and_its_vendor_to_the_forms(
    acme: AcmeProbe,
) -> None:
    assert registered()[-1] is acme
    assert [p.name for p in registered()[:3]] == ["nvidia", "amd", "apple"]
    assert gpu_ids.vendors()[-1] == "acme"
    assert normalise_gpu_id("ACME:SN-0042") == "acme:sn-0042"
    with pytest.raises(ValueError, match="already registered"):
        register(AcmeProbe())


def test_unregistering_removes_the_probe_and_its_gpu_id_form() -> None:
    register(AcmeProbe())
    unregister("acme")
    assert "acme" not in [p.name for p in registered()]
    assert "acme" not in gpu_ids.vendors()
    with pytest.raises(IdentityError, match="acme:sn-0042"):
        normalise_gpu_id("acme:sn-0042")


def test_a_probe_whose_vendor_has_no_gpu_id_form_is_refused() -> None:
    @dataclass(frozen=True)
    class Formless(AcmeProbe):
        name: ClassVar[str] = "formless"
        vendor: ClassVar[str] = "formless"
        gpu_id_forms: ClassVar[tuple[gpu_ids.GpuIdForm, ...]] = ()

    with pytest.raises(ValueError, match="no gpu_id form"):
        register(Formless())
    assert "formless" not in [p.name for p in registered()]


def test_the_made_up_vendor_is_discovered_beside_the_failing_built_in_probes(
    acme: AcmeProbe, acme_host: Path
) -> None:
    gpus, failures = discover_gpus(HostPaths.under(acme_host), platform="linux")
    assert [(g.vendor, g.gpu_id) for g in gpus if g.vendor == "acme"] == [("acme", "acme:sn-0042")]
    assert all(f.probe != "acme" for f in failures)
    usage, _ = gpu_usage(HostPaths.under(acme_host), platform="linux", probes=[acme])
    assert [g.gpu_id for g in usage] == ["acme:sn-0042"]


def test_a_crashing_plugin_probe_is_a_failure_and_never_hides_the_others(acme_host: Path) -> None:
    class Broken(AcmeProbe):
        def probe(self, paths: HostPaths) -> Result:
            raise RuntimeError("simulated plugin bug")

    gpus, failures = discover_gpus(
        HostPaths.under(acme_host), platform="linux", probes=[Broken(), AcmeProbe()]
    )
    assert [g.gpu_id for g in gpus] == ["acme:sn-0042"]
    assert [(f.probe, f.reason) for f in failures] == [("acme", "probe-crashed")]
    assert "simulated plugin bug" in failures[0].detail


def test_discover_json_shows_the_made_up_vendor(acme: AcmeProbe, acme_host: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "discover",
            "--json",
            "--host-root",
            str(acme_host),
            "--ollama-host",
            f"127.0.0.1:{closed_port()}",
        ],
        env={"OLLAMA_MODELS": str(OLLAMA_FIXTURES / "models"), "OLLAMA_HOST": ""},
    )
    assert result.exception is None, result.output
    document = json.loads(result.stdout)
    (card,) = [g for g in document["gpus"] if g["vendor"] == "acme"]
    assert card["gpu_id"] == "acme:sn-0042" and card["name"] == "Acme Rocket 9000"
    assert document["nic"] is not None and document["identity_error"] is None
    acme_tuples = [t for t in document["tuples"] if t["gpu_id"] == "acme:sn-0042"]
    assert acme_tuples and all(t["slot"] == card["slot"] for t in acme_tuples)


def _keys() -> AgentKeys:
    return AgentKeys(signing=Ed25519PrivateKey.generate(), identity=x25519.Identity.generate())


def _inventory(acme_host: Path) -> tuple[Any, Any]:
    inventory = discover(
        HostPaths.under(acme_host),
        ollama_host=f"127.0.0.1:{closed_port()}",
        env={"OLLAMA_MODELS": str(OLLAMA_FIXTURES / "models")},
        default_interfaces=lambda: ["bond0"],
        permaddr=lambda name: None,
        # Only the made-up vendor: whatever GPUs this machine has stay out of the record.
        gpu_scan=lambda: discover_gpus(HostPaths.under(acme_host), probes=[AcmeProbe()]),
    )
    return inventory, agent_tuples(inventory)


def test_the_enrolment_carries_the_vendor_and_round_trips(acme: AcmeProbe, acme_host: Path) -> None:
    inventory, tuples = _inventory(acme_host)
    record = build_enrolment(inventory, tuples, _keys(), issued_at=NOW)
    assert [(s.slot, s.vendor, s.gpu_id) for s in record.slots] == [(0, "acme", "acme:sn-0042")]
    assert tuples and {a.tuple.gpu_id for a in record.agents} == {"acme:sn-0042"}
    again = EnrolmentRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record


def test_the_leader_registry_holds_the_made_up_vendors_slot(
    acme: AcmeProbe, acme_host: Path, tmp_path: Path
) -> None:
    inventory, tuples = _inventory(acme_host)
    keys = _keys()
    record = build_enrolment(inventory, tuples, keys, issued_at=NOW)
    leader_dir = tmp_path / "leader"
    generate_leader_keys(leader_dir)
    with Registrar(leader_dir) as leader:
        result = leader.ingest(
            seal_enrolment(record, keys, leader.keys.bundle, sent_at=NOW), now=NOW
        )
        assert result.accepted, result.reason
        view = leader.registry.host(record.host.hostname)
    assert [(s["slot"], s["vendor"], s["gpu_id"]) for s in view.slots] == [
        (0, "acme", "acme:sn-0042")
    ]
    assert view.agents and {a["gpu_id"] for a in view.agents} == {"acme:sn-0042"}


def test_an_unregistered_vendor_in_a_record_is_refused_naming_the_field(
    acme: AcmeProbe, acme_host: Path
) -> None:
    inventory, tuples = _inventory(acme_host)
    document = build_enrolment(inventory, tuples, _keys(), issued_at=NOW).to_dict()
    unregister("acme")
    try:
        with pytest.raises(RejectedError) as refused:
            EnrolmentRecord.from_dict(document)
    finally:
        register(acme)
    message = str(refused.value)
    assert "slots[0].vendor" in message and "'acme'" in message
    assert "expected one of nvidia, amd, apple, cpu" in message


def test_probe_failures_of_the_list_are_typed(acme_host: Path) -> None:
    class Absent(AcmeProbe):
        def probe(self, paths: HostPaths) -> Result:
            raise ProbeError("no-gpus", "no acme device")

    _, failures = discover_gpus(HostPaths.under(acme_host), platform="linux", probes=[Absent()])
    assert failures == (ProbeFailure("acme", "no-gpus", "no acme device"),)


@dataclass(frozen=True)
class FakeEntryPoint:
    name: str
    value: str
    target: Any

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def test_entry_points_register_their_probes_and_a_broken_one_is_a_failure() -> None:
    entries = [
        FakeEntryPoint("acme", "acme_gpu.probe:AcmeProbe", AcmeProbe),
        FakeEntryPoint("zeta", "zeta_gpu:probe", ImportError("No module named 'zeta_gpu'")),
    ]
    try:
        failures = register_entry_points(entries)
        assert [p.name for p in registered()][-1] == "acme"
    finally:
        unregister("acme")
    (failure,) = failures
    assert (failure.probe, failure.reason) == ("zeta", "plugin-failed")
    assert "zeta_gpu:probe" in failure.detail and "zeta_gpu" in failure.detail


def test_usage_is_re_read_no_more_often_than_the_probe_says(acme_host: Path) -> None:
    from cooee_agent.agent.usage import default_gpu_probe

    reads: list[str] = []

    class Counted(AcmeProbe):
        def usage(self, paths: HostPaths) -> Result:
            reads.append(self.name)
            return self.probe(paths)

    class Unread(AcmeProbe):
        name: ClassVar[str] = "unread"
        usage_interval: ClassVar[float | None] = None

    now = [100.0]
    sample = default_gpu_probe(
        HostPaths.under(acme_host),
        platform="linux",
        probes=[Counted(), Unread()],
        clock=lambda: now[0],
    )
    assert sample is not None
    first = sample()
    now[0] += 29.0
    assert sample() == first and reads == ["acme"]  # within 30 s: the last reading stands
    now[0] += 1.0
    gpus, failures = sample()
    assert reads == ["acme", "acme"] and failures == ()
    assert [g.gpu_id for g in gpus] == ["acme:sn-0042"]  # the unread probe is never asked


def test_no_usage_sampler_where_no_probe_re_reads_usage() -> None:
    from cooee_agent.agent.usage import default_gpu_probe

    assert default_gpu_probe(platform="darwin") is None  # Apple: system_profiler takes seconds
