"""Getting the daemon's records onto the mesh: the outbox pump, topic peers, and mesh liveness."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cooee_agent.agent import intervention as calls
from cooee_agent.agent import submitting
from cooee_agent.agent.enrolling import ENROL_KEY
from cooee_agent.bus.outbox import Outbox
from cooee_agent.bus.transport import Subscription, Transport
from cooee_agent.errors import CooeeError

log = logging.getLogger(__name__)


def topic_peers(transport: Transport, topic: str) -> int:
    """How many peers a publish on ``topic`` reaches now (all peers where a transport cannot
    tell topics apart); 0 when the transport cannot say."""
    per_topic = getattr(transport, "topic_peers", None)
    try:
        return len(per_topic(topic) if per_topic else transport.peers())
    except CooeeError:
        return 0


def mesh_alive(transport: Transport | None, subscription: Subscription | None) -> bool:
    """False once the mesh can no longer carry anything: the transport reports itself dead (its
    node thread ended), or the daemon's own subscription was closed underneath it (only the
    transport's close does that while the daemon runs)."""
    if transport is None:
        return False
    if getattr(transport, "alive", True) is False:
        return False
    return subscription is None or not subscription.closed


def publish_plain(transport: Transport, keys: Any, record: dict[str, Any]) -> None:
    """Sign ``record`` with the agent key and publish it on its kind's topic (CooeeError when
    refused)."""
    from cooee_agent.protocol import seal_plain
    from cooee_agent.protocol.kinds import topic_of

    envelope = seal_plain(record, keys.signing, keys.agent_id)
    transport.publish(topic_of(record["kind"]), envelope)


def pump(
    outbox: Outbox,
    transport: Transport,
    keys: Any,
    *,
    wall: Callable[[], float],
    reseal_enrolment: Callable[[], None],
) -> None:
    """Publish what is due. Enrolments stay until their assignment arrives (re-sealed through
    ``reseal_enrolment`` when half the Leader's freshness window has passed); intervention calls
    leave after one publish that reached a peer on their topic (see agent.intervention). While
    no peer has joined an item's topic nothing is published and no backoff is spent: the first
    send goes out as soon as the mesh connects."""
    from cooee_agent.protocol.sealing import DEFAULT_WINDOW

    half_window = DEFAULT_WINDOW.max_age_s / 2
    for item in outbox.due():
        reached = topic_peers(transport, item.topic)
        if reached == 0:
            continue
        data = item.data
        age = wall() - item.created_at
        if item.key == ENROL_KEY and age > half_window:
            reseal_enrolment()
            refreshed = outbox.get(ENROL_KEY)
            data = refreshed.data if refreshed is not None else data
        elif item.key.startswith(calls.KEY_PREFIX) and age > half_window:
            data = calls.refreshed(data, keys)
            outbox.put(item.key, item.topic, data)
        elif item.key.startswith(submitting.KEY_PREFIX) and age > half_window:
            # Same sealed record, fresh envelope: it stays until its receipt arrives.
            data = submitting.refreshed(data, keys)
            outbox.put(item.key, item.topic, data)
        try:
            transport.publish(item.topic, data)
        except CooeeError as error:
            log.warning("publishing %s failed: %s", item.key, error)
            outbox.mark_sent(item.key)
            continue
        if item.key.startswith(calls.KEY_PREFIX):
            outbox.ack(item.key)
            log.info("intervention call %s sent to %d peer(s)", item.key, reached)
        else:
            outbox.mark_sent(item.key)
            log.debug("sent %s to %d peer(s)", item.key, reached)
