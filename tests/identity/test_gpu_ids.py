"""The gpu_id forms table: built-in rows as normative, registered rows added and removed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from cooee_agent.errors import IdentityError
from cooee_agent.identity import gpu_ids
from cooee_agent.identity.canonical import normalise_gpu_id

ZETA = gpu_ids.GpuIdForm("zeta", re.compile(r"^zeta:[0-9]{4}$"), "zeta:<four digits>")


@pytest.fixture
def zeta() -> Iterator[gpu_ids.GpuIdForm]:
    gpu_ids.register_form(ZETA)
    yield ZETA
    gpu_ids.unregister_form(ZETA)


def test_built_in_vendors_are_the_protocol_ones_with_cpu_last() -> None:
    assert gpu_ids.vendors() == ("nvidia", "amd", "apple", "cpu")


def test_the_refusal_names_every_built_in_form_as_before() -> None:
    with pytest.raises(IdentityError) as raised:
        normalise_gpu_id("nvidia0")
    assert str(raised.value) == (
        "gpu_id 'nvidia0' is not an NVIDIA UUID (GPU-…/MIG-…), a PCI address, "
        "an AMD unique_id, apple:<chip> or cpu"
    )


def test_a_pci_gpu_id_with_a_wide_domain_is_refused_by_the_pci_rule() -> None:
    with pytest.raises(IdentityError, match=r"^pci address '00010000:01:00.0' has a domain beyond"):
        normalise_gpu_id("00010000:01:00.0")


def test_a_registered_form_is_accepted_and_named_before_cpu(zeta: gpu_ids.GpuIdForm) -> None:
    assert normalise_gpu_id(" ZETA:0042 ") == "zeta:0042"
    assert gpu_ids.vendors() == ("nvidia", "amd", "apple", "cpu", "zeta")
    with pytest.raises(IdentityError, match=r"apple:<chip>, zeta:<four digits> or cpu$"):
        normalise_gpu_id("zeta:42")


def test_registering_twice_keeps_one_row_and_unregistering_removes_it() -> None:
    gpu_ids.register_form(ZETA, ZETA)
    gpu_ids.register_form(ZETA)
    assert gpu_ids.forms().count(ZETA) == 1
    gpu_ids.unregister_form(ZETA)
    assert "zeta" not in gpu_ids.vendors()
    with pytest.raises(IdentityError):
        normalise_gpu_id("zeta:0042")


def test_built_in_forms_cannot_be_unregistered() -> None:
    gpu_ids.unregister_form(*gpu_ids.BUILT_IN)
    assert gpu_ids.forms()[: len(gpu_ids.BUILT_IN)] == gpu_ids.BUILT_IN


def test_a_vendor_name_must_be_lower_case() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        gpu_ids.register_form(gpu_ids.GpuIdForm("Zeta", ZETA.pattern, "z"))


def test_vendor_complaint_lists_the_known_vendors() -> None:
    assert gpu_ids.vendor_complaint("amd") is None
    assert gpu_ids.vendor_complaint("intel") == (
        "is 'intel', expected one of nvidia, amd, apple, cpu"
    )


class FakeEntryPoint:
    def __init__(self, name: str, target: object) -> None:
        self.name = name
        self.target = target

    def load(self) -> object:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def test_entry_points_add_forms_and_a_broken_one_is_skipped() -> None:
    try:
        gpu_ids.register_entry_points(
            [
                FakeEntryPoint("broken", ImportError("No module named 'nothing'")),
                FakeEntryPoint("odd", "not a form"),
                FakeEntryPoint("zeta", [ZETA]),
            ]
        )
        assert normalise_gpu_id("zeta:0042") == "zeta:0042"
        assert gpu_ids.vendor_complaint("zeta") is None
    finally:
        gpu_ids.unregister_form(ZETA)
