"""Installed Ollama models read from the on-disk manifests, as /api/tags would list them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from cooee_agent.discovery.host_paths import HostPaths
from cooee_agent.discovery.model import OllamaModel

log = logging.getLogger(__name__)

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"


def models_dirs(
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    paths: HostPaths = HostPaths(),
) -> tuple[tuple[Path, ...], bool]:
    """Directories to read, in order, and whether OLLAMA_MODELS chose them.

    Ollama reads only ``$OLLAMA_MODELS`` when it is set (quotes and spaces trimmed), so an
    explicit setting is the only place looked at; otherwise the user's store, then the service's
    (``paths.ollama_service_models``).
    """
    env = os.environ if env is None else env
    explicit = env.get("OLLAMA_MODELS", "").strip().strip("\"'")
    if explicit:
        return (Path(explicit).expanduser(),), True
    if home is None:
        try:
            home = Path.home()
        except (RuntimeError, KeyError):
            home = None
    own = (home / ".ollama" / "models",) if home is not None else ()
    return own + paths.ollama_service_models, False


def display_name(host: str, namespace: str, model: str, tag: str) -> str:
    """Ollama's DisplayShortest: drop the default registry and the default namespace."""
    if host.lower() != DEFAULT_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    if namespace.lower() != DEFAULT_NAMESPACE:
        return f"{namespace}/{model}:{tag}"
    return f"{model}:{tag}"


def read_manifests(models_dir: Path) -> list[OllamaModel]:
    """Every manifest under ``models_dir/manifests/*/*/*/*``, newest first, like /api/tags."""
    manifests = models_dir / "manifests"
    found: list[tuple[float, OllamaModel]] = []
    for path in sorted(manifests.glob("*/*/*/*")):
        if not path.is_file():
            continue
        host, namespace, model, tag = path.relative_to(manifests).parts
        try:
            entry = read_manifest(path, models_dir, display_name(host, namespace, model, tag))
        except (OSError, ValueError, TypeError, OverflowError, RecursionError) as error:
            # A half-written pull must not hide the other models; Ollama skips it too.
            log.info("skipping unreadable manifest %s: %s", path, error)
            continue
        found.append(entry)
    found.sort(key=lambda row: -int(row[0]))  # stable: same-second models keep path order
    return [model for _, model in found]


def read_manifest(path: Path, models_dir: Path, name: str) -> tuple[float, OllamaModel]:
    """One manifest: digest of its bytes, size of its layers and config, details from config."""
    data = path.read_bytes()
    manifest = json.loads(data)
    if not isinstance(manifest, dict):
        raise ValueError("manifest is not a JSON object")
    config = manifest.get("config") or {}
    layers = manifest.get("layers") or []
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise ValueError("manifest's config is not an object or its layers not an array")
    if not all(isinstance(layer, dict) for layer in layers):
        raise ValueError("manifest has a layer that is not an object")
    size = sum(int(layer.get("size") or 0) for layer in [*layers, config])
    details = _config_details(models_dir, config.get("digest"))
    mtime = path.stat().st_mtime_ns
    families = details.get("model_families")
    capabilities = details.get("capabilities")
    return mtime / 1e9, OllamaModel(
        name=name,
        digest=hashlib.sha256(data).hexdigest(),
        size=size,
        family=_text(details.get("model_family")),
        families=tuple(dict.fromkeys(f for f in families if isinstance(f, str) and f))
        if isinstance(families, list)
        else (),
        parameter_size=_text(details.get("model_type")),
        quantisation=_text(details.get("file_type")),
        modified_at=rfc3339_local(mtime),
        remote=bool(details.get("remote_host") or details.get("remote_model")),
        capabilities=tuple(c for c in capabilities if isinstance(c, str))
        if isinstance(capabilities, list)
        else (),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def blob_path(models_dir: Path, digest: str) -> Path:
    """blobs/sha256-<hex>: Ollama replaces the colon so the name is valid on every filesystem."""
    return models_dir / "blobs" / digest.replace(":", "-")


def _config_details(models_dir: Path, digest: object) -> dict[str, object]:
    """The ConfigV2 blob (model_family, model_type, file_type, ...); empty when absent."""
    # Only a digest names a blob: anything else (a path of its own, "../..") is not followed.
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return {}
    try:
        value = json.loads(blob_path(models_dir, digest).read_bytes())
    except (OSError, ValueError) as error:
        log.debug("config blob %s unreadable: %s", digest, error)
        return {}
    return value if isinstance(value, dict) else {}


def rfc3339_local(mtime_ns: int) -> str:
    """Go's time.Time JSON form in local time: nanoseconds without trailing zeros, offset."""
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = moment.strftime("%z")
    return text + ("Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}")
