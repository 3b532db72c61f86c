"""The Ollama probe against a real local HTTP server, and its fallback to on-disk manifests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from discovery_support import OLLAMA_FIXTURES, OllamaServer, closed_port

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.ollama import probe_ollama

MODELS = OLLAMA_FIXTURES / "models"
TAGS = json.loads((OLLAMA_FIXTURES / "api" / "v0.12.6" / "tags.json").read_text())["models"]
EMPTY_ENV: dict[str, str] = {}


def test_current_api_gives_models_loaded_model_and_version(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    server = ollama_server("v0.12.6")
    info, failures = probe_ollama(host=server.url, env=EMPTY_ENV, paths=HostPaths(ollama_models=()))
    assert failures == ()
    assert (info.source, info.version, info.address) == ("api", "0.12.6", server.url)
    assert [m.name for m in info.models] == [m["name"] for m in TAGS]
    assert [m.digest for m in info.models] == [m["digest"] for m in TAGS]
    llama = next(m for m in info.models if m.name == "llama3.2:latest")
    assert (llama.family, llama.parameter_size, llama.quantisation) == ("llama", "3.2B", "Q4_K_M")
    cloud = next(m for m in info.models if m.name == "gpt-oss:120b-cloud")
    assert cloud.remote and cloud.capabilities == ("completion", "tools", "thinking")
    assert [(m.name, m.size_vram) for m in info.loaded] == [("llama3.2:latest", 3972362240)]
    assert server.requests == ["/api/version", "/api/tags", "/api/ps"]


def test_families_null_duplicates_and_missing_names_are_tolerated(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    info, failures = probe_ollama(host=ollama_server("v0.5.1").url, env=EMPTY_ENV)
    assert failures == ()
    by_name = {m.name: m for m in info.models}
    assert by_name["codellama:latest"].families == ()
    assert by_name["llama3.2-vision:latest"].families == ("mllama",)
    assert by_name["all-minilm:latest"].parameter_size == "23M"
    assert "no-name-entry:latest" in by_name  # only "model" given: used as the name
    assert "" not in by_name
    assert [m.name for m in info.loaded] == ["codellama:latest"]


def test_old_server_without_ps_reports_the_404_and_keeps_models(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    server = ollama_server("v0.1.20")
    info, failures = probe_ollama(host=server.url, env=EMPTY_ENV)
    assert [m.name for m in info.models] == ["llama2:latest", "mistral:7b"]
    assert info.models[0].families == ()
    assert [(f.probe, f.reason) for f in failures] == [("ollama", "bad-response")]
    assert f"{server.url}/api/ps answered HTTP 404" in failures[0].detail


def test_server_without_version_endpoint_is_reported_but_listed(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    info, failures = probe_ollama(host=ollama_server("localai").url, env=EMPTY_ENV)
    assert info.version is None and [m.name for m in info.models] == ["phi-2"]
    assert {f.reason for f in failures} == {"bad-response"}


def test_stopped_server_falls_back_to_manifests_with_the_same_names_digests_and_sizes(
    ollama_server: Callable[[str], OllamaServer],
) -> None:
    server = ollama_server("v0.12.6")
    live, _ = probe_ollama(host=server.url, env=EMPTY_ENV)
    server.stop()
    env = {"OLLAMA_HOST": server.url, "OLLAMA_MODELS": str(MODELS)}
    offline, failures = probe_ollama(env=env)
    assert offline.source == "manifests" and offline.models_dir == str(MODELS)

    def summary(models: tuple) -> set[tuple]:
        return {(m.name, m.digest, m.size, m.family, m.families, m.remote) for m in models}

    assert summary(offline.models) == summary(live.models)
    assert [(f.probe, f.reason) for f in failures] == [("ollama", "unreachable")]
    assert server.url in failures[0].detail


def test_unreachable_without_manifests_names_the_address_and_the_directories(tmp_path) -> None:
    port = closed_port()
    info, failures = probe_ollama(host=f"127.0.0.1:{port}", env={"OLLAMA_MODELS": str(tmp_path)})
    assert (info.source, info.models) == ("none", ())
    assert [(f.probe, f.reason) for f in failures] == [
        ("ollama", "unreachable"),
        ("ollama.manifests", "not-found"),
    ]
    assert f"127.0.0.1:{port}" in failures[0].detail
    assert str(tmp_path) in failures[1].detail


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_server_that_never_answers_times_out_quickly(silent_server: int, tmp_path) -> None:
    started = time.monotonic()
    _, failures = probe_ollama(
        host=f"127.0.0.1:{silent_server}", timeout=0.3, env={"OLLAMA_MODELS": str(tmp_path)}
    )
    assert time.monotonic() - started < 1.5
    assert failures[0].reason == "timeout" and "0.3 s" in failures[0].detail


def test_a_proxy_in_the_environment_is_not_used_for_a_local_server(
    ollama_server: Callable[[str], OllamaServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    info, failures = probe_ollama(host=ollama_server("v0.12.6").url, env=EMPTY_ENV)
    assert failures == () and info.source == "api"


def test_non_http_scheme_is_reported_not_dialled(tmp_path) -> None:
    info, failures = probe_ollama(host="ftp://example.com", env={"OLLAMA_MODELS": str(tmp_path)})
    assert failures[0].reason == "bad-address" and "ftp://example.com:11434" in failures[0].detail
    assert info.source == "none"
