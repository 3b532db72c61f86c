"""Every parser of outside input, fed at scale: it returns or refuses with its own error type,
and never ends in any other exception (a traceback, in the CLI or the daemon).

``COOEE_FUZZ_EXAMPLES`` sets the examples per parser: 20,000 in the test command, more by hand
(README, "Tests"). Each example is new input: the example database is not replayed.
"""

from __future__ import annotations

import contextlib
import json
import os
import string
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooee_agent.config.load import parse_config
from cooee_agent.discovery.gpu import amd, apple, nvidia
from cooee_agent.discovery.ollama import parse_ps, parse_tags
from cooee_agent.discovery.ollama_manifests import read_manifests
from cooee_agent.errors import AddressError, ConfigError, ProbeError, TokenError
from cooee_agent.identity import token, ucxl
from cooee_agent.protocol.envelope import open_signed_record, parse_envelope
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.kinds import KINDS
from cooee_agent.protocol.records import EnrolmentRecord, validate_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "discovery" / "gpu"))
from fake_nvml import FakeNvml, load_scenario

EXAMPLES = int(os.environ.get("COOEE_FUZZ_EXAMPLES", "20000"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=24)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=10,
)


@fuzz
@given(
    st.text(max_size=24) | st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZabc-IOLU ", max_size=9)
)
def test_token_decode(text: str) -> None:
    try:
        decoded = token.decode(text)
    except TokenError:
        return
    assert token.decode(decoded.text) == decoded


ucxl_parts = st.text(alphabet=string.ascii_letters + string.digits + ":@/#*^~._-%", max_size=20)


@fuzz
@given(st.text(max_size=60) | st.builds(lambda a, b: f"ucxl://{a}{b}", ucxl_parts, ucxl_parts))
def test_ucxl_parse(text: str) -> None:
    try:
        address = ucxl.parse(text)
    except AddressError:
        return
    assert ucxl.parse(str(address)) == address


toml_keys = st.sampled_from(
    ["state_dir", "log_level", "join_token", "degraded_threshold", "keys", "listen", "bootstrap",
     "mdns", "interval", "jitter", "offline_after", "host", "relay_availability", "x"]
)  # fmt: skip
toml_values = st.sampled_from(
    ['"text"', "1", "-5", "0.5", "1e400", "nan", "true", '["a", 1]', "[[1]]", "{ a = 1 }",
     '"/var/lib/x"', '"http://[::1"', "1979-05-27T07:32:00Z", "'lit'", '"""multi"""', "[]",
     '"\\u0000"', "9" * 30, '"' + "a" * 5000 + '"', "[" * 200 + "]" * 200]
)  # fmt: skip
toml_lines = st.builds(lambda k, v: f"{k} = {v}", toml_keys, toml_values) | st.sampled_from(
    ["[leader]", "[mesh]", "[heartbeat]", "[ollama]", "[nope]", "[[leader]]", "[mesh.x]", "="]
)


@fuzz
@given(st.lists(toml_lines, max_size=8).map("\n".join) | st.text(max_size=80))
def test_config_toml(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text, env={})


ENVELOPE_KEYS = ["v", "kind", "address", "sent_at", "body", "sender", "sig", "extra"]


@fuzz
@given(
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values, max_size=8).map(
        lambda v: json.dumps(v).encode()
    )
)
def test_envelope_and_signed_record(data: bytes) -> None:
    for parse in (parse_envelope, open_signed_record):
        with contextlib.suppress(RejectedError):
            parse(data)


record_fields = st.sampled_from(
    ["schema", "kind", "nonce", "issued_at", "host_id", "seq", "slots", "interval_s", "hostname",
     "severity", "reason", "detail", "agent_key", "host", "agents", "software", "join_token"]
)  # fmt: skip


@fuzz
@given(st.sampled_from(sorted(KINDS)), st.dictionaries(record_fields, json_values, max_size=12))
def test_records_of_every_kind(kind: str, fields: dict[str, Any]) -> None:
    value = {"schema": 1, "kind": kind, **fields}
    try:
        if kind == "enrolment":
            EnrolmentRecord.from_dict(value)
        else:
            validate_record(value)
    except RejectedError:
        pass


@fuzz
@given(json_values | st.dictionaries(st.sampled_from(["models", "x"]), json_values, max_size=2))
def test_ollama_api_documents(document: Any) -> None:
    for parse in (parse_tags, parse_ps):
        with contextlib.suppress(ProbeError):
            parse(document)


MODELS_DIR = Path(tempfile.mkdtemp(prefix="cooee-fuzz-manifests-"))
MANIFEST = MODELS_DIR / "manifests" / "registry.ollama.ai" / "library" / "m" / "latest"


@fuzz
@given(st.binary(max_size=120) | json_values.map(lambda v: json.dumps(v).encode()))
def test_ollama_manifests(data: bytes) -> None:
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_bytes(data)
    models = read_manifests(MODELS_DIR)  # a bad manifest is skipped, never raised
    assert len(models) <= 1


nvml_text = st.text(alphabet=string.printable, max_size=20)
nvml_counts = st.integers(0, 2**64 - 1)


@fuzz
@given(
    name=nvml_text,
    uuid=nvml_text | st.just("GPU-80c053b6-f4d7-5c41-7fed-f11e1d7a3a22"),
    total=nvml_counts,
    free=nvml_counts,
    busy=st.integers(0, 2**32 - 1),
    bus_id=st.text(alphabet=string.ascii_letters + string.digits + ":.", max_size=15),
)
def test_nvml_values(name: str, uuid: str, total: int, free: int, busy: int, bus_id: str) -> None:
    scenario = load_scenario("h100-real.json")
    device = scenario["devices"][0]
    device.update(name=name, uuid=uuid)
    device["memory"].update(total=total, free=free)
    device["utilization"]["gpu"] = busy
    device["pci"]["busId"] = bus_id
    gpus, failures = nvidia.probe(FakeNvml(scenario))  # a bad value is a failure, never raised
    assert len(gpus) + len(failures) >= 1


@fuzz
@given(st.text(max_size=200))
def test_sysfs_and_macos_tool_output(text: str) -> None:
    amd.parse_amdgpu_ids(text)
    apple.parse_size(text)
    apple.parse_pcidebug(text)
    # ioreg's output is a property list: anything else is a ValueError naming why.
    for parse in (apple.parse_ioreg_accelerators, apple.parse_ioreg_pci):
        with contextlib.suppress(ValueError):
            parse(text)
    with contextlib.suppress(ValueError):
        apple.parse_ioreg_pci(_plist(text))


def _plist(text: str) -> str:
    """``text`` as a value in the property list ioreg prints, so the parse gets past the XML."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><array><dict>'
        f"<key>IORegistryEntryName</key><string>{escaped}</string>"
        f"<key>vendor-id</key><data>{escaped}</data>"
        "</dict></array></plist>"
    )


@pytest.mark.parametrize("text", ["", "0x", "-1", "9" * 5000])
def test_sysfs_numbers_never_raise(text: str) -> None:
    assert amd._int(text) is None or isinstance(amd._int(text), int)
    assert amd._hex(text) is None or isinstance(amd._hex(text), int)
