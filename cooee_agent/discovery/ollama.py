"""Ollama: the server's address as Ollama parses OLLAMA_HOST, its models, loaded models, version."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from cooee_agent.config.ollama_host import OllamaAddress, parse_ollama_host
from cooee_agent.discovery import ollama_manifests
from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import LoadedModel, OllamaInfo, OllamaModel, ProbeFailure
from cooee_agent.errors import ProbeError

log = logging.getLogger(__name__)

PROBE = "ollama"
DEFAULT_TIMEOUT = 0.8
_MAX_BODY = 16 * 1024 * 1024

# --- HTTP API ------------------------------------------------------------------------------------


def probe_ollama(
    *,
    host: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    paths: HostPaths = HostPaths(),
) -> tuple[OllamaInfo, tuple[ProbeFailure, ...]]:
    """Ask the Ollama API; when it cannot answer, list the models from the on-disk manifests.

    ``host`` overrides OLLAMA_HOST (same syntax); ``paths`` says where the model stores are.
    Failures come back as values naming the
    address tried, so an unreachable server never hides the installed models.
    """
    env = os.environ if env is None else env
    address = parse_ollama_host(host if host is not None else env.get("OLLAMA_HOST"))
    base = address.dial
    failures: list[ProbeFailure] = []
    if address.scheme.lower() not in ("http", "https"):
        detail = f"{address.url}: only http and https can be dialled"
        failures.append(ProbeFailure(PROBE, "bad-address", detail))
        return _from_manifests(address, env, paths, failures), tuple(failures)
    try:
        version = _version(_get_json(base, "/api/version", timeout))
    except ProbeError as error:
        failures.append(ProbeFailure(PROBE, error.reason, error.detail))
        version = None
        if error.reason in ("unreachable", "timeout"):
            # No server: skip the other endpoints, each would wait the same timeout.
            info = _from_manifests(address, env, paths, failures)
            return info, tuple(failures)
    try:
        models = parse_tags(_get_json(base, "/api/tags", timeout))
    except ProbeError as error:
        failures.append(ProbeFailure(PROBE, error.reason, error.detail))
        return _from_manifests(address, env, paths, failures, version), tuple(failures)
    loaded: tuple[LoadedModel, ...] = ()
    try:
        loaded = parse_ps(_get_json(base, "/api/ps", timeout))
    except ProbeError as error:
        failures.append(ProbeFailure(PROBE, error.reason, error.detail))
    info = OllamaInfo(address.url, "api", version, models, loaded)
    return info, tuple(failures)


def _from_manifests(
    address: OllamaAddress,
    env: Mapping[str, str],
    paths: HostPaths,
    failures: list[ProbeFailure],
    version: str | None = None,
) -> OllamaInfo:
    explicit = False
    if paths.ollama_models is None:
        dirs, explicit = ollama_manifests.models_dirs(env, paths=paths)
    else:
        dirs = paths.ollama_models
    for directory in dirs:
        if (directory / "manifests").is_dir():
            try:
                models = tuple(ollama_manifests.read_manifests(directory))
            except OSError as error:
                failures.append(
                    ProbeFailure(f"{PROBE}.manifests", "unreadable", f"{directory}: {error}")
                )
                continue
            return OllamaInfo(address.url, "manifests", version, models, models_dir=str(directory))
    where = ", ".join(str(directory) for directory in dirs)
    detail = f"no manifests directory in {where}"
    if explicit:
        detail = f"OLLAMA_MODELS={dirs[0]} has no manifests directory"
    failures.append(ProbeFailure(f"{PROBE}.manifests", "not-found", detail))
    return OllamaInfo(address.url, "none", version, ())


def _get_json(base: str, path: str, timeout: float) -> Any:
    """GET base+path and decode JSON; every failure becomes a ProbeError naming the URL."""
    url = base.rstrip("/") + path
    parsed = urllib.parse.urlsplit(url)
    handlers: list[urllib.request.BaseHandler] = []
    if _is_local(parsed.hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # a proxy must not see local traffic
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as error:
        raise ProbeError("bad-response", f"{url} answered HTTP {error.code}") from error
    except urllib.error.URLError as error:
        raise _connection_error(url, error.reason, timeout) from error
    except TimeoutError as error:
        raise ProbeError("timeout", f"no answer from {url} within {timeout:g} s") from error
    except (OSError, ValueError) as error:
        raise _connection_error(url, error, timeout) from error
    if len(body) > _MAX_BODY:
        raise ProbeError("bad-response", f"{url} answered more than {_MAX_BODY} bytes")
    try:
        return json.loads(body)
    except ValueError as error:
        raise ProbeError("bad-response", f"{url} did not answer JSON: {error}") from error


def _connection_error(url: str, reason: object, timeout: float) -> ProbeError:
    if isinstance(reason, TimeoutError | socket.timeout):
        return ProbeError("timeout", f"no answer from {url} within {timeout:g} s")
    if isinstance(reason, ConnectionRefusedError):
        return ProbeError("unreachable", f"connection refused at {url}")
    if isinstance(reason, socket.gaierror):
        return ProbeError("unreachable", f"cannot resolve the host of {url}: {reason}")
    return ProbeError("unreachable", f"cannot connect to {url}: {reason}")


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


# --- response parsing (tolerant of every field variant seen across versions) ---------------------


def _version(document: Any) -> str | None:
    if isinstance(document, dict) and isinstance(document.get("version"), str):
        return document["version"]
    raise ProbeError("bad-response", "/api/version has no version string (not Ollama?)")


def _models_list(document: Any, endpoint: str) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        raise ProbeError("bad-response", f"{endpoint} is not a JSON object")
    models = document.get("models")
    if models is None:  # Go marshals an empty nil slice as null
        return []
    if not isinstance(models, list):
        raise ProbeError("bad-response", f"{endpoint} 'models' is not a list")
    return [item for item in models if isinstance(item, dict)]


def _digest(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text.removeprefix("sha256:").lower()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(item: dict[str, Any]) -> str | None:
    # v0.1.20 had only "name"; both carry the same value since.
    return _str(item.get("name")) or _str(item.get("model"))


def parse_tags(document: Any) -> tuple[OllamaModel, ...]:
    """/api/tags → models; entries without any name are skipped."""
    models: list[OllamaModel] = []
    for item in _models_list(document, "/api/tags"):
        name = _name(item)
        if name is None:
            continue
        raw = item.get("details")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        families = details.get("families")
        capabilities = item.get("capabilities")
        models.append(
            OllamaModel(
                name=name,
                digest=_digest(item.get("digest")),
                size=_int(item.get("size")),
                family=_str(details.get("family")),
                # Duplicates such as ['mllama', 'mllama'] have been seen; keep order, drop repeats.
                families=tuple(dict.fromkeys(f for f in families or () if isinstance(f, str) and f))
                if isinstance(families, list)
                else (),
                parameter_size=_str(details.get("parameter_size")),
                quantisation=_str(details.get("quantization_level")),
                modified_at=_str(item.get("modified_at")),
                remote=bool(_str(item.get("remote_host")) or _str(item.get("remote_model"))),
                capabilities=tuple(c for c in capabilities if isinstance(c, str))
                if isinstance(capabilities, list)
                else (),
            )
        )
    return tuple(models)


def parse_ps(document: Any) -> tuple[LoadedModel, ...]:
    """/api/ps → loaded models with their VRAM share."""
    loaded: list[LoadedModel] = []
    for item in _models_list(document, "/api/ps"):
        name = _name(item)
        if name is None:
            continue
        loaded.append(
            LoadedModel(
                name=name,
                digest=_digest(item.get("digest")),
                size=_int(item.get("size")),
                size_vram=_int(item.get("size_vram")),
                expires_at=_str(item.get("expires_at")),
            )
        )
    return tuple(loaded)
