"""OLLAMA_HOST parsed exactly as Ollama parses it, so the agent finds Ollama where it listens.

A pure function of the text: the configuration uses it for ``$OLLAMA_HOST`` and discovery for
the server it probes.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

OLLAMA_HOST_ENV = "OLLAMA_HOST"

# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.strip() also trims \x1c-\x1f).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)
_GO_INT = re.compile(r"^[+-]?[0-9]+$")


@dataclass(frozen=True, slots=True)
class OllamaAddress:
    """OLLAMA_HOST parsed by Ollama's rules: ``url`` is what Ollama prints, ``dial`` we open."""

    scheme: str
    host: str  # without brackets; "" when only a port was given
    port: str  # a string, as Go keeps it ("0080" stays "0080")
    path: str  # without the leading slash, as strings.Cut leaves it

    @property
    def url(self) -> str:
        """The URL exactly as Go's url.URL{Scheme, Host, Path}.String() writes it."""
        scheme = f"{self.scheme}:" if self.scheme else ""
        host = urllib.parse.quote(_join_host_port(self.host, self.port), safe=_GO_HOST_SAFE)
        return f"{scheme}//{host}{_go_path(self.path)}"

    @property
    def dial(self) -> str:
        """The base URL a client opens: an empty or unspecified host means this machine."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"{self.scheme.lower()}://{_join_host_port(host, self.port)}{_go_path(self.path)}"


# Characters Go's url package leaves unescaped in a host (sub-delims, ':', brackets, and <>").
_GO_HOST_SAFE = "!$&'()*+,;=:[]<>\""
# ... and in a path.
_GO_PATH_SAFE = "$&+,/:;=@"


def _go_path(path: str) -> str:
    """The path part of Go's URL.String(): escaped, with a "/" before a relative path."""
    if not path:
        return ""
    escaped = "*" if path == "*" else urllib.parse.quote(path, safe=_GO_PATH_SAFE)
    return escaped if escaped.startswith("/") else "/" + escaped


def parse_ollama_host(value: str | None) -> OllamaAddress:
    """Parse an OLLAMA_HOST value exactly as Ollama's envconfig.Host does.

    Bare host gets port 11434; ``http://x`` gets 80 and ``https://x`` 443; a path is kept; IPv6
    without brackets is accepted; an invalid port falls back to the default; ``ollama.com`` alone
    means https on 443. The empty value is 127.0.0.1:11434.
    """
    text = (value or "").strip(_GO_SPACE).strip("\"'").strip(_GO_SPACE)
    default_port = "11434"
    scheme, sep, hostport = text.partition("://")
    if not sep:
        scheme, hostport = "http", text
        if text == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport, _, path = hostport.partition("/")
    split = _split_host_port(hostport)
    if split is None:
        host, port = "127.0.0.1", default_port
        ip = _parse_ip(hostport.strip("[]"))
        if ip is not None:
            host = ip
        elif hostport:
            host = hostport
    else:
        host, port = split
    if not _GO_INT.match(port) or not 0 <= int(port) <= 65535:
        port = default_port
    return OllamaAddress(scheme=scheme, host=host, port=port, path=path)


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort; None where Go returns an error."""
    colon = hostport.rfind(":")
    if colon < 0:
        return None
    start, end_search = 0, 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != colon:
            return None
        host = hostport[1:end]
        start, end_search = 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            return None
    if "[" in hostport[start:] or "]" in hostport[end_search:]:
        return None
    return host, hostport[colon + 1 :]


def _parse_ip(text: str) -> str | None:
    """Go's net.ParseIP(...).String(): no zones, IPv4-mapped IPv6 printed as IPv4."""
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
