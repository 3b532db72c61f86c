"""Reading Ollama's model store from disk gives what /api/tags would list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from discovery_support import OLLAMA_FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.ollama_manifests import (
    display_name,
    models_dirs,
    read_manifests,
)

MODELS = OLLAMA_FIXTURES / "models"
TAGS = json.loads((OLLAMA_FIXTURES / "api" / "v0.12.6" / "tags.json").read_text())["models"]


def test_manifests_give_the_api_names_digests_and_sizes() -> None:
    found = {(m.name, m.digest, m.size) for m in read_manifests(MODELS)}
    assert found == {(t["name"], t["digest"], t["size"]) for t in TAGS}


def test_details_come_from_the_config_blob_and_missing_families_is_empty() -> None:
    by_name = {m.name: m for m in read_manifests(MODELS)}
    assert by_name["gemma:2b"].families == ("gemma",)
    assert by_name["gemma:2b"].parameter_size == "3B"
    assert by_name["codellama:latest"].families == ()
    assert by_name["gpt-oss:120b-cloud"].remote


def test_a_truncated_manifest_is_skipped() -> None:
    assert "broken:latest" not in {m.name for m in read_manifests(MODELS)}


def test_modified_at_is_rfc3339_with_offset() -> None:
    stamp = read_manifests(MODELS)[0].modified_at or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", stamp)


def test_missing_store_lists_nothing(tmp_path: Path) -> None:
    assert read_manifests(tmp_path) == []


def test_ollama_models_alone_is_read_when_set_and_quotes_are_trimmed(tmp_path: Path) -> None:
    dirs, explicit = models_dirs({"OLLAMA_MODELS": f' "{tmp_path}" '}, home=Path("/home/x"))
    assert (dirs, explicit) == ((tmp_path,), True)


def test_default_order_is_the_user_store_then_the_service_stores() -> None:
    dirs, explicit = models_dirs({}, home=Path("/home/x"))
    assert not explicit
    assert dirs == (
        Path("/home/x/.ollama/models"),
        Path("/usr/share/ollama/.ollama/models"),
        Path("/var/lib/ollama/.ollama/models"),
        Path("/var/lib/ollama/models"),
    )
    assert Path("/usr/share/ollama/.ollama/models") in dirs


def test_the_service_stores_move_with_the_host_paths(tmp_path: Path) -> None:
    dirs, _ = models_dirs({}, home=Path("/home/x"), paths=HostPaths.under(tmp_path))
    assert dirs[1:] == (
        tmp_path / "usr/share/ollama/.ollama/models",
        tmp_path / "var/lib/ollama/.ollama/models",
        tmp_path / "var/lib/ollama/models",
    )


_part = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)


@given(_part, _part, _part)
def test_display_name_drops_only_default_registry_and_namespace(
    ns: str, model: str, tag: str
) -> None:
    assert display_name("registry.ollama.ai", "library", model, tag) == f"{model}:{tag}"
    if ns != "library":
        assert display_name("registry.ollama.ai", ns, model, tag) == f"{ns}/{model}:{tag}"
    assert display_name("hf.co", ns, model, tag) == f"hf.co/{ns}/{model}:{tag}"


@pytest.mark.parametrize(
    "manifest",
    [
        b'{"config": [1]}',
        b'{"layers": "ab"}',
        b'{"layers": [5]}',
        b'{"config": {"size": Infinity}}',
        b"[" * 100_000,
    ],
)
def test_a_manifest_of_the_wrong_shape_is_skipped_not_raised(
    tmp_path: Path, manifest: bytes
) -> None:
    path = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "m" / "latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest)
    assert read_manifests(tmp_path) == []


def test_a_config_digest_that_is_not_a_digest_names_no_file(tmp_path: Path) -> None:
    secret = tmp_path / "outside.json"
    secret.write_text('{"model_family": "leaked"}')
    path = tmp_path / "store" / "manifests" / "registry.ollama.ai" / "library" / "m" / "latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": {"digest": "../../outside.json"}, "layers": []}))
    (model,) = read_manifests(tmp_path / "store")
    assert model.family is None
