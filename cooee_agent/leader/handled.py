"""What a Leader-side handler of the kinds table is given and what it returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cooee_agent.bus.transport import Message
    from cooee_agent.leader.dispatch import Dispatcher


@dataclass(frozen=True, slots=True)
class Handled:
    """What the dispatcher did with one message: its topic and the outcome's reason."""

    topic: str
    reason: str
    published: bool = False


# A handler gets the dispatcher (its Registrar, call book, clock and the channel to answer on)
# and a batch of messages of its topic (at most its kind's ``batch``, in arrival order); it
# returns what became of each, in order, and never raises for what a message holds.
Handler = Callable[["Dispatcher", "Sequence[Message]"], "list[Handled]"]
