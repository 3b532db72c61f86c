"""The kinds table: every COOEE message kind, its topic, record type, sealing, who sends it, who
reads it, and the Leader's handler for it. Nothing else names a kind.

The mesh validator (which kinds a topic may carry), the Leader's dispatch (which handler a
message goes to, which topics it serves), sealing (which kinds travel encrypted) and the agent's
publishing (which topic a kind goes to) all read this table. Adding a kind is its record type
and its handler in one module, and one row here (docs/ARCHITECTURE.md, "Add a message kind").
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from cooee_agent.protocol import records, submissions
from cooee_agent.protocol.records import Record

TOPIC_ENROL = "cooee/enrol/v1"
TOPIC_ASSIGNMENT = "cooee/assignment/v1"
TOPIC_AVAILABILITY = "cooee/availability/v1"
TOPIC_INTERVENTION = "cooee/intervention/v1"
TOPIC_SUBMISSION = "cooee/submission/v1"
TOPIC_RECEIPT = "cooee/receipt/v1"

Party = Literal["agent", "leader"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One message kind. ``handler`` is ``module:function`` of the Leader's handler, imported
    only when a Leader serves (an agent never loads the Leader's code); None when the Leader
    does not read the kind."""

    name: str
    topic: str
    record: type[Record]
    sealed: bool  # the body is age ciphertext to the reader; else a signed plain record
    sender: Party
    reader: Party
    handler: str | None
    # The Leader's inbound queue for this kind's topic holds at most ``queue`` messages (the
    # oldest is dropped and counted past it), and its handler takes up to ``batch`` at once.
    queue: int = 1024
    batch: int = 1


_ROWS = (
    Kind(
        "enrolment",
        TOPIC_ENROL,
        records.EnrolmentRecord,
        sealed=True,
        sender="agent",
        reader="leader",
        handler="cooee_agent.leader.registrar:handle_enrolments",
        # A cold start's burst of enrolments is applied in batches, one commit each.
        queue=512,
        batch=64,
    ),
    Kind(
        "assignment",
        TOPIC_ASSIGNMENT,
        records.Assignment,
        sealed=True,
        sender="leader",
        reader="agent",
        handler=None,
    ),
    Kind(
        "availability",
        TOPIC_AVAILABILITY,
        records.Availability,
        sealed=False,
        sender="agent",
        reader="leader",
        handler="cooee_agent.leader.availability:handle_presence",
        queue=8192,  # a heartbeat of every host of a full cluster, twice over
    ),
    Kind(
        "leaving",
        TOPIC_AVAILABILITY,
        records.Leaving,
        sealed=False,
        sender="agent",
        reader="leader",
        handler="cooee_agent.leader.availability:handle_presence",
        queue=8192,
    ),
    Kind(
        "intervention",
        TOPIC_INTERVENTION,
        records.Intervention,
        sealed=False,
        sender="agent",
        reader="leader",
        handler="cooee_agent.leader.calls:handle_calls",
    ),
    Kind(
        "pr",
        TOPIC_SUBMISSION,
        submissions.PrRecord,
        sealed=True,
        sender="agent",
        reader="leader",
        handler="cooee_agent.leader.submissions:handle_submissions",
    ),
    Kind(
        "dr",
        TOPIC_SUBMISSION,
        submissions.DrRecord,
        sealed=True,
        sender="agent",
        reader="leader",
        handler="cooee_agent.leader.submissions:handle_submissions",
    ),
    Kind(
        "receipt",
        TOPIC_RECEIPT,
        submissions.Receipt,
        sealed=True,
        sender="leader",
        reader="agent",
        handler=None,
    ),
    Kind(
        "decision",
        TOPIC_RECEIPT,
        submissions.Decision,
        sealed=True,
        sender="leader",
        reader="agent",
        handler=None,
    ),
)

KINDS: MappingProxyType[str, Kind] = MappingProxyType({row.name: row for row in _ROWS})
# Every topic, in the order the rows first name them: the ones a node joins.
TOPICS: tuple[str, ...] = tuple(dict.fromkeys(row.topic for row in _ROWS))
SEALED_KINDS: frozenset[str] = frozenset(row.name for row in _ROWS if row.sealed)
# The envelope kinds each topic carries.
TOPIC_KINDS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {topic: frozenset(row.name for row in _ROWS if row.topic == topic) for topic in TOPICS}
)
# The topics the Leader reads: those carrying a kind it has a handler for.
LEADER_TOPICS: tuple[str, ...] = tuple(
    topic for topic in TOPICS if any(KINDS[k].handler for k in TOPIC_KINDS[topic])
)


def topic_of(kind: str) -> str:
    """The topic a record of ``kind`` is published on."""
    return KINDS[kind].topic
