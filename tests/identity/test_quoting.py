"""A refusal quotes short input in full and names the length of long input instead of echoing
it (a megabyte off the wire must not become a megabyte of log)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cooee_agent.errors import AddressError, IdentityError, TokenError
from cooee_agent.identity import canonical, ucxl
from cooee_agent.identity import token as codec
from cooee_agent.identity.quoting import MAX_QUOTED, quoted

HUGE = 1_000_000


def test_short_input_is_quoted_whole_and_long_input_is_clipped_with_its_length() -> None:
    assert quoted("a'b") == repr("a'b")
    assert quoted("x" * MAX_QUOTED) == repr("x" * MAX_QUOTED)
    long = "y" * (MAX_QUOTED + 1)
    assert quoted(long) == f"{'y' * MAX_QUOTED!r}... ({MAX_QUOTED + 1} characters)"


@pytest.mark.parametrize(
    ("parse", "error", "junk"),
    [
        (codec.decode, TokenError, "Z" * HUGE),
        (ucxl.parse, AddressError, "ucxl://" + "a" * HUGE),
        (ucxl.parse, AddressError, "http://" + "a" * HUGE),
        (canonical.normalise_hostname, IdentityError, "a" * HUGE),
        (canonical.normalise_hostname, IdentityError, "a\x00" * HUGE),
        (canonical.normalise_mac, IdentityError, "0" * HUGE),
        (canonical.normalise_model, IdentityError, "m@" * HUGE),
        (canonical.normalise_gpu_id, IdentityError, "g" * HUGE),
    ],
)
def test_a_refusal_of_huge_input_stays_short(
    parse: Callable[[str], object], error: type[Exception], junk: str
) -> None:
    with pytest.raises(error) as refused:
        parse(junk)
    assert len(str(refused.value)) < 600, str(refused.value)[:600]
