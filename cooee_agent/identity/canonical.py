"""Canonical agent tuples {model, hostname, mac, gpu_id}, their canonical JSON and their keys.

Every rule here is normative and documented with vectors in docs/PROTOCOL.md: the Leader
recomputes these keys, so any drift between implementations splits an agent's identity.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from cooee_agent.errors import IdentityError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.quoting import quoted

_json_string: Callable[[str], str] = json.encoder.encode_basestring

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SHORT_KEY_BITS = 50
MAX_FIELD_LENGTH = 255
DEFAULT_TAG = "latest"
# Ollama shows models of its default registry and namespace without them.
_DEFAULT_MODEL_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/")

# The normalisers are pure, and a host's records repeat the same few hostnames, MACs and model
# names in every tuple; a bounded cache of the accepted values (a refusal raises, and is never
# cached) saves the Leader most of its per-tuple work.
_CACHED = 4096

_MAC_SEPARATED = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_MAC_DOTTED = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$")
_MAC_BARE = re.compile(r"^[0-9a-f]{12}$")
_MODEL_PART = re.compile(r"^[a-z0-9_][a-z0-9._-]*$")
_TAG = re.compile(r"^[a-z0-9_][a-z0-9._-]{0,127}$")
_HOST_LABEL = re.compile(r"^[^\s.]{1,63}$")


def _text(field: str, value: str) -> str:
    """NFC, trimmed, lower-case; no empty values and no control or format characters."""
    if not isinstance(value, str):
        raise IdentityError(f"{field} must be a string, got {type(value).__name__}")
    text = unicodedata.normalize("NFC", value).strip().lower()
    if not text:
        raise IdentityError(f"{field} is empty")
    # isprintable() is False for every refused category (and for spaces other than U+0020), so
    # printable text, nearly all of it, skips the per-character scan.
    for position, char in enumerate("" if text.isprintable() else text, start=1):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise IdentityError(
                f"{field} {quoted(value)} has a control character U+{ord(char):04X} "
                f"at position {position}"
            )
    if len(text) > MAX_FIELD_LENGTH:
        raise IdentityError(f"{field} is {len(text)} characters long, at most {MAX_FIELD_LENGTH}")
    return text


@lru_cache(maxsize=_CACHED)
def normalise_mac(value: str) -> str:
    """Return 12 lower-case hex digits; reject all-zero, broadcast and multicast addresses."""
    text = _text("mac", value)
    if _MAC_SEPARATED.match(text) or _MAC_DOTTED.match(text) or _MAC_BARE.match(text):
        digits = re.sub(r"[:.-]", "", text)
    else:
        raise IdentityError(
            f"mac {quoted(value)} is not a 48-bit MAC address "
            "(expected aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or 12 hex digits)"
        )
    if digits == "0" * 12:
        raise IdentityError(f"mac {quoted(value)} is all zeros, which no real interface carries")
    if digits == "f" * 12:
        raise IdentityError(f"mac {quoted(value)} is the broadcast address")
    if int(digits[:2], 16) & 0x01:
        raise IdentityError(f"mac {quoted(value)} is a multicast address (first octet is odd)")
    return digits


def is_locally_administered(mac: str) -> bool:
    """True when the U/L bit of a normalised MAC is set (a random or software-assigned address)."""
    return bool(int(normalise_mac(mac)[:2], 16) & 0x02)


@lru_cache(maxsize=_CACHED)
def normalise_hostname(value: str) -> str:
    """Lower-case, NFC, without the trailing root dot. Labels are 1-63 letters, marks, digits,
    ``-`` and ``_``, not starting or ending with ``-``, each in one script; the name is not all
    digits and dots (it would read as a host_id or an IPv4 address)."""
    text = _text("hostname", value)
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    for label in labels:
        if not _HOST_LABEL.match(label):
            raise IdentityError(
                f"hostname {quoted(value)} has an invalid label {quoted(label)} "
                "(labels are 1-63 characters without spaces or dots)"
            )
        _check_label(value, label)
    if all(label.isascii() and label.isdigit() for label in labels):
        raise IdentityError(
            f"hostname {quoted(value)} is all digits and dots: it would read as a host_id or an "
            "IPv4 address"
        )
    return text


def _check_label(value: str, label: str) -> None:
    if label.startswith("-") or label.endswith("-"):
        raise IdentityError(
            f"hostname {quoted(value)} has a label {quoted(label)} starting or ending with -"
        )
    scripts = set()
    for char in label:
        category = unicodedata.category(char)
        if char in "-_" or category == "Nd" or category[0] == "M":
            continue
        if category[0] != "L":
            raise IdentityError(
                f"hostname {quoted(value)} holds {char!r} (U+{ord(char):04X}); a label holds only "
                "letters, digits, - and _"
            )
        scripts.add(_script(char))
    if len(scripts) > 1 and not scripts <= _MIXES_ALLOWED:
        raise IdentityError(
            f"hostname {quoted(value)} mixes scripts in the label {quoted(label)} "
            f"({', '.join(sorted(scripts))}): a look-alike of another name"
        )


# Scripts that are written together: Japanese (Han, kana) and Korean (Han, Hangul).
_MIXES_ALLOWED = frozenset({"CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "HANGUL"})


def _script(char: str) -> str:
    """The script of a letter, from the first word of its Unicode name (LATIN, CYRILLIC, ...)."""
    return unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]


@lru_cache(maxsize=_CACHED)
def normalise_model(value: str) -> str:
    """Return ``name:tag`` as Ollama displays it, adding ``:latest`` when the tag is missing."""
    text = _text("model", value)
    if "@" in text:
        raise IdentityError(
            f"model {quoted(value)} names a digest; a tuple names a model by name:tag"
        )
    for prefix in _DEFAULT_MODEL_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    # A colon before the last slash is a registry port (host:5000/name), not a tag.
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        name, tag = text[:colon], text[colon + 1 :]
    else:
        name, tag = text, DEFAULT_TAG
    if not tag or not _TAG.match(tag):
        raise IdentityError(f"model {quoted(value)} has an invalid tag {quoted(tag)}")
    parts = name.split("/")
    for index, part in enumerate(parts):
        # The registry host (first of three or more parts) may carry a port.
        host_part = index == 0 and len(parts) >= 3
        check = part.split(":", 1)[0] if host_part and ":" in part else part
        if not check or not _MODEL_PART.match(check):
            raise IdentityError(f"model {quoted(value)} has an invalid name part {quoted(part)}")
    return f"{name}:{tag}"


def normalise_pci_address(value: str) -> str:
    """Return ``dddd:bb:dd.f``; NVML's 8-digit domain is shortened, a missing domain is 0000."""
    return gpu_ids.pci_address(_text("pci address", value), shown=value)


def normalise_gpu_id(value: str) -> str:
    """Accept a gpu_id in one of the forms of identity.gpu_ids: an NVIDIA GPU/MIG UUID, an AMD
    PCI address or unique_id, apple:<chip>, cpu, or a form a GPU probe registered."""
    return gpu_ids.normalise(_text("gpu_id", value), shown=value)


@dataclass(frozen=True, slots=True)
class AgentTuple:
    """A normalised identity tuple; construct it with :func:`make_tuple`."""

    model: str
    hostname: str
    mac: str
    gpu_id: str

    def canonical_json(self) -> str:
        return canonical_json(self)

    @property
    def key(self) -> str:
        return tuple_key(self)

    @property
    def short_key(self) -> str:
        return short_key(tuple_key(self))


def make_tuple(model: str, hostname: str, mac: str, gpu_id: str) -> AgentTuple:
    """Normalise each field by its rule and return the canonical tuple."""
    return AgentTuple(
        model=normalise_model(model),
        hostname=normalise_hostname(hostname),
        mac=normalise_mac(mac),
        gpu_id=normalise_gpu_id(gpu_id),
    )


class TupleLike(Protocol):
    """Anything holding the four tuple fields (an AgentTuple, or a record's copy of one)."""

    @property
    def model(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def gpu_id(self) -> str: ...


def canonical_json(agent: TupleLike) -> str:
    """JSON with sorted keys, no whitespace, non-ASCII as raw UTF-8.

    Written out field by field with the string encoder ``json.dumps(..., ensure_ascii=False)``
    uses, so the bytes are the same as that call's at a fraction of its cost.
    """
    return (
        f'{{"gpu_id":{_json_string(agent.gpu_id)},"hostname":{_json_string(agent.hostname)},'
        f'"mac":{_json_string(agent.mac)},"model":{_json_string(agent.model)}}}'
    )


def tuple_key(agent: TupleLike) -> str:
    """SHA-256 (lower-case hex) of the canonical JSON encoded as UTF-8."""
    return hashlib.sha256(canonical_json(agent).encode("utf-8")).hexdigest()


def short_key(key: str) -> str:
    """The first 50 bits of a hex key as 10 Crockford Base32 characters."""
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise IdentityError(f"key {quoted(key)} is not 64 lower-case hex digits")
    bits = int(key[:13], 16) >> 2  # 13 hex digits = 52 bits; keep the top 50
    return "".join(CROCKFORD[(bits >> shift) & 0x1F] for shift in range(45, -1, -5))
