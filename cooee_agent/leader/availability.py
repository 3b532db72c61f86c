"""Availability at the Leader: verify heartbeats and leaving announcements against the hosts'
pinned agent keys, apply the newer ones to the registry, and say who came back or left."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cooee_agent.errors import CooeeError
from cooee_agent.identity import token as codec
from cooee_agent.leader import clones
from cooee_agent.leader.handled import Handled
from cooee_agent.leader.registry import Registry
from cooee_agent.log_limit import LimitedWarnings
from cooee_agent.protocol import b64
from cooee_agent.protocol.errors import RejectedError
from cooee_agent.protocol.kinds import topic_of
from cooee_agent.protocol.records import TOKEN_VERSION
from cooee_agent.protocol.sealing import DEFAULT_WINDOW, Window, open_plain

if TYPE_CHECKING:
    from cooee_agent.bus.transport import Message
    from cooee_agent.leader.dispatch import Dispatcher

log = logging.getLogger(__name__)
# Anyone on the mesh can cause these: logged in full a few times a minute (log_limit).
_refusals = LimitedWarnings(log)

# "Offline after three missed intervals" (the agent announces its interval in each heartbeat).
MISSED_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Heard:
    """What became of one availability/leaving envelope: ``reason`` is ``applied`` or why not
    (a section 6 rejection reason, ``unknown-key``, ``key-mismatch`` or ``replayed``)."""

    applied: bool
    reason: str
    detail: str
    host_id: int | None = None
    state: str | None = None  # the host's state now: online or left
    previous: str | None = None  # its state before: online, offline, left, or '' (never heard)
    seq: int | None = None  # the applied record's sequence number
    hostname: str | None = None


def hear_presence(
    registry: Registry,
    data: bytes,
    *,
    now: datetime,
    window: Window = DEFAULT_WINDOW,
    offline_after: float | None = None,
) -> Heard:
    """Verify and apply one envelope from the availability topic; never raises for its content.

    ``offline_after`` (seconds) fixes the silence after which the host counts as offline; None
    means three of the intervals the host announces.
    """
    try:
        record, sender = open_plain(data, window=window, now=now)
    except RejectedError as error:
        return _refused(error.reason, error.detail)
    kind = record["kind"]
    if kind not in ("availability", "leaving"):
        return _refused("schema", f"a {kind} record on the availability topic")
    key = b64.encode(sender)
    host = registry.pinned_host(key)
    if host is None:
        return _refused("unknown-key", f"sender {key} is not the pinned key of an active host")
    if record["host_id"] != host.host_id:
        return _refused(
            "key-mismatch",
            f"{kind} names host_id {record['host_id']}; the key is pinned to {host.host_id}",
        )
    if kind == "availability":
        for slot in record["slots"]:
            if slot["token"] != codec.encode(TOKEN_VERSION, host.host_id, slot["slot"]):
                return _refused(
                    "key-mismatch",
                    f"slot {slot['slot']} token {slot['token']} is not host_id {host.host_id}'s",
                )
        silence = (
            offline_after if offline_after is not None else MISSED_INTERVALS * record["interval_s"]
        )
        deadline = now.timestamp() + silence
    else:
        deadline = now.timestamp()
    previous = registry.record_presence(host, record, now=now, deadline=deadline)
    if previous is None:
        return _refused(
            "replayed",
            f"{kind} seq {record['seq']} at {record['issued_at']} of host_id {host.host_id}"
            " is not newer than the last one",
        )
    state = "left" if kind == "leaving" else "online"
    if state == "left":
        log.info(
            "host_id %d (%s) left: %s",
            host.host_id,
            host.hostname,
            record["reason"],
            extra={"COOEE_HOST_ID": host.host_id, "COOEE_PRESENCE": state},
        )
    elif previous != "online":
        log.info(
            "host_id %d (%s) is online%s",
            host.host_id,
            host.hostname,
            f" again (was {previous})" if previous else "",
            extra={"COOEE_HOST_ID": host.host_id, "COOEE_PRESENCE": state},
        )
    return Heard(True, "applied", kind, host.host_id, state, previous, record["seq"], host.hostname)


def handle_presence(dispatcher: Dispatcher, messages: Sequence[Message]) -> list[Handled]:
    """The kinds table's handler of availability and leaving records; a host whose records
    show two live agents with its key is called out (``clones``)."""
    handled = []
    for message in messages:
        now = dispatcher.clock()
        heard = hear_presence(
            dispatcher.registrar.registry,
            message.data,
            now=now,
            window=dispatcher.registrar.window,
            offline_after=dispatcher.offline_after,
        )
        if (
            heard.applied
            and heard.host_id is not None
            and heard.seq is not None
            and dispatcher.clones.applied(heard.host_id, heard.seq, now.timestamp())
        ):
            _call_out_clones(dispatcher, heard, now)
        if heard.applied and heard.state == "online" and heard.previous in COMEBACKS:
            _resend_read_key(dispatcher, heard, now)
        handled.append(Handled(message.topic, heard.reason))
    return handled


# The states a host returns from without enrolling again (its agent reuses the assignment it
# stored), and so without hearing a read-key rotation that happened meanwhile.
COMEBACKS = ("offline", "left")


def _resend_read_key(dispatcher: Dispatcher, heard: Heard, now: datetime) -> None:
    """A revoke rotates the DHT read key and re-issues every assignment, but only the agents
    listening then hear it: a host back from offline or a shutdown gets its assignment again,
    sealed with the current key (when the Leader runs the DHT)."""
    registrar = dispatcher.registrar
    if registrar.read_key is None or heard.host_id is None:
        return
    entry = registrar.registry.active_enrolment(heard.host_id)
    if entry is None:
        return
    envelope = registrar.sealer(now)(entry.record, entry.host_id, entry.tokens)
    try:
        dispatcher.publish(topic_of("assignment"), envelope)
    except CooeeError as error:
        log.warning("could not send host_id %d its assignment again: %s", entry.host_id, error)
        return
    log.info("host_id %d is back: sent its assignment with the current read key", entry.host_id)


def _call_out_clones(dispatcher: Dispatcher, heard: Heard, now: datetime) -> None:
    detail = (
        f"two live agents send heartbeats with this host's key (seq went back to {heard.seq} "
        f"{clones.EVIDENCE} times): a copy of its state directory runs elsewhere; stop one and "
        "re-enrol it with a fresh state directory"
    )
    log.error("host_id %s (%s): %s", heard.host_id, heard.hostname, detail)
    if dispatcher.calls is not None:
        dispatcher.calls.record_leader_call(
            hostname=heard.hostname or "unknown",
            mac=None,
            host_id=heard.host_id,
            severity="critical",
            reason=clones.CALL_REASON,
            detail=detail,
            now=now,
        )


def _refused(reason: str, detail: str) -> Heard:
    _refusals.warning(reason, "refused availability: %s: %s", reason, detail)
    return Heard(False, reason, detail)
