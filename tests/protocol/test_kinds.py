"""The kinds table: each row's record type, topic and handler agree with what reads them."""

from __future__ import annotations

import msgspec
import pytest

from cooee_agent.leader.dispatch import topic_handlers
from cooee_agent.protocol.kinds import KINDS, LEADER_TOPICS, SEALED_KINDS, TOPIC_KINDS, TOPICS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_row_names_a_record_type_of_its_own_kind(name: str) -> None:
    row = KINDS[name]
    fields = {field.name: field for field in msgspec.structs.fields(row.record)}
    assert fields["kind"].default == name
    assert fields["schema"].default == 1
    assert row.topic in TOPICS and name in TOPIC_KINDS[row.topic]
    assert (name in SEALED_KINDS) == row.sealed


def test_the_leader_reads_exactly_the_topics_whose_kinds_it_has_handlers_for() -> None:
    handlers = topic_handlers()
    assert set(handlers) == set(LEADER_TOPICS)
    for topic in TOPICS:
        handled = [KINDS[kind].handler for kind in TOPIC_KINDS[topic]]
        assert (topic in LEADER_TOPICS) == any(handled)
    assert all(callable(handler) for handler in handlers.values())
    # The answer the Leader sends is not something it reads back.
    assert KINDS["assignment"].topic not in LEADER_TOPICS


def test_rows_sharing_a_topic_share_one_handler() -> None:
    for topic in LEADER_TOPICS:
        named = {KINDS[kind].handler for kind in TOPIC_KINDS[topic]}
        assert len(named) == 1, (topic, named)
