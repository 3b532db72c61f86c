"""The table of gpu_id forms: which vendors exist and how each names its GPUs.

A leaf module (it imports nothing of the agent but its errors) so that identity, the wire
protocol and the Leader can read the vendor names without importing discovery. The built-in rows
are normative (docs/PROTOCOL.md); a GPU probe added at run time registers its own rows, and a
process that runs no probe (the Leader) finds them in the ``cooee_agent.gpu_id_forms``
entry-point group the first time a gpu_id or vendor is not in the table.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cooee_agent.errors import IdentityError
from cooee_agent.identity.quoting import quoted

PCI_ADDRESS = re.compile(
    r"^(?:(?P<domain>[0-9a-f]{4}|[0-9a-f]{8}):)?(?P<bus>[0-9a-f]{2}):(?P<device>[0-1][0-9a-f])"
    r"\.(?P<function>[0-7])$"
)
CPU = "cpu"  # the vendor and gpu_id of the one slot of a host without a GPU
ENTRY_POINT_GROUP = "cooee_agent.gpu_id_forms"

log = logging.getLogger(__name__)


def _as_matched(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class GpuIdForm:
    """One way a vendor names its GPUs.

    ``pattern`` is matched against the gpu_id after the common text rules (NFC, trimmed,
    lower-case); ``normalise`` turns a matching text into its canonical form and may raise
    IdentityError. ``description`` names the form in the message refusing a gpu_id.
    """

    vendor: str
    pattern: re.Pattern[str]
    description: str
    normalise: Callable[[str], str] = _as_matched

    def matches(self, text: str) -> bool:
        return self.pattern.match(text) is not None


def pci_address(text: str, shown: str | None = None) -> str:
    """``dddd:bb:dd.f`` from lower-case text; NVML's 8-digit domain is shortened, a missing
    domain is 0000. ``shown`` is the value the error quotes (the caller's input)."""
    given = text if shown is None else shown
    match = PCI_ADDRESS.match(text)
    if not match:
        raise IdentityError(f"pci address {quoted(given)} is not of the form dddd:bb:dd.f")
    domain = int(match["domain"] or "0", 16)
    if domain > 0xFFFF:
        raise IdentityError(f"pci address {quoted(given)} has a domain beyond 16 bits")
    return f"{domain:04x}:{match['bus']}:{match['device']}.{match['function']}"


BUILT_IN: tuple[GpuIdForm, ...] = (
    GpuIdForm(
        "nvidia",
        re.compile(r"^(gpu|mig)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        "an NVIDIA UUID (GPU-…/MIG-…)",
    ),
    GpuIdForm("amd", PCI_ADDRESS, "a PCI address", pci_address),
    GpuIdForm("amd", re.compile(r"^[0-9a-f]{1,16}$"), "an AMD unique_id"),
    GpuIdForm("apple", re.compile(r"^apple:[a-z0-9][a-z0-9 ._-]*$"), "apple:<chip>"),
    GpuIdForm(CPU, re.compile(r"^cpu$"), CPU),
)

_lock = threading.Lock()
# Replaced whole under the lock, read without it: a reader always sees a complete table.
_forms: tuple[GpuIdForm, ...] = BUILT_IN
_vendors_of: tuple[tuple[GpuIdForm, ...], tuple[str, ...]] = ((), ())
_entry_points_read = False


def forms() -> tuple[GpuIdForm, ...]:
    """Every form, built-in rows first, then registered ones in registration order."""
    return _forms


def built_in(vendor: str) -> tuple[GpuIdForm, ...]:
    """The built-in forms of one vendor (what its GPU probe declares)."""
    return tuple(form for form in BUILT_IN if form.vendor == vendor)


def vendors() -> tuple[str, ...]:
    """Every vendor name a slot may carry (``cpu`` included), each once, in table order."""
    # Kept with the forms it was made from: the Leader asks once per slot of every enrolment.
    global _vendors_of
    forms, names = _vendors_of
    if forms is not _forms:
        forms, names = _forms, tuple(dict.fromkeys(form.vendor for form in _forms))
        _vendors_of = (forms, names)
    return names


def register_form(*added: GpuIdForm) -> None:
    """Add forms (a new vendor, or a new form of a known one); a form already there is kept once.

    The built-in forms win over a registered one that would also match their gpu_ids.
    """
    global _forms
    for form in added:
        if not form.vendor or form.vendor != form.vendor.strip().lower():
            raise ValueError(f"vendor {form.vendor!r} must be a non-empty lower-case name")
    with _lock:
        _forms = _forms + tuple(form for form in dict.fromkeys(added) if form not in _forms)


def unregister_form(*removed: GpuIdForm) -> None:
    """Remove registered forms; the built-in ones cannot be removed."""
    global _forms
    with _lock:
        _forms = tuple(form for form in _forms if form in BUILT_IN or form not in removed)


def normalise(text: str, shown: str) -> str:
    """The canonical gpu_id of ``text`` (already NFC, trimmed, lower-case) by the first form it
    matches; ``shown`` is the caller's value, quoted when no form matches."""
    for form in _forms:
        if form.matches(text):
            return form.normalise(text)
    if _read_entry_points():
        return normalise(text, shown)
    raise IdentityError(f"gpu_id {quoted(shown)} is not {_described(_forms)}")


def vendor_complaint(value: str) -> str | None:
    """Why ``value`` is not a known vendor name, or None when it is (a schema check)."""
    if value in vendors() or (_read_entry_points() and value in vendors()):
        return None
    return f"is {quoted(value)}, expected one of {', '.join(vendors())}"


class EntryPointLike(Protocol):
    """What register_entry_points needs of an importlib.metadata.EntryPoint."""

    @property
    def name(self) -> str: ...

    def load(self) -> Any: ...


def register_entry_points(entries: Iterable[EntryPointLike]) -> None:
    """Register the forms each entry point names (one GpuIdForm or a sequence of them); one that
    cannot be loaded is logged and skipped, so a broken plugin never breaks identity."""
    for entry in entries:
        try:
            loaded = entry.load()
            added = (loaded,) if isinstance(loaded, GpuIdForm) else tuple(loaded)
            if not all(isinstance(form, GpuIdForm) for form in added):
                raise TypeError("not a GpuIdForm or a sequence of them")
            register_form(*added)
        except Exception:
            log.warning("gpu_id forms %s could not be loaded", entry.name, exc_info=True)


def _read_entry_points() -> bool:
    """Read the installed entry points once; True when this call did (and may have added)."""
    global _entry_points_read
    with _lock:
        if _entry_points_read:
            return False
        _entry_points_read = True
    from importlib.metadata import entry_points

    register_entry_points(entry_points(group=ENTRY_POINT_GROUP))
    return True


def _described(table: tuple[GpuIdForm, ...]) -> str:
    # cpu is not a GPU: it closes the list whatever was registered after it.
    ordered = sorted(table, key=lambda form: form.vendor == CPU)
    names = [form.description for form in ordered]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
