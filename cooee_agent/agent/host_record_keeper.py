"""An enrolled agent's part in the DHT: follow the read key its assignment carries, and put its
own host record (as the Leader signed it) again on a schedule, so it outlives a Leader outage.

Runs on its own thread beside the daemon and reads only ``assignment.json``, which the daemon
replaces atomically, so the daemon needs no hook.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from cooee_agent.agent.state import ASSIGNMENT_FILE, read_json
from cooee_agent.config import Config
from cooee_agent.protocol.host_records import (
    HostRecordRules,
    host_key,
    open_host_record,
    read_key_identity,
)

log = logging.getLogger(__name__)

CHECK_S = 5.0  # how soon a new read key (a re-issued assignment) is followed
REPUBLISH_S = 600.0  # how often this host's own record is put again


def agent_rules(config: Config) -> HostRecordRules:
    """Records are trusted when signed by a configured Leader; the read key follows the
    assignment (``HostRecordKeeper``), and is taken from the stored one at once."""
    from cooee_agent.agent.enrolling import leader_bundles

    rules = HostRecordRules(trusted={b.verify_key for b in leader_bundles(config)})
    secret = stored_read_key(config.state_dir)
    if secret is not None:
        rules.read_key = str(read_key_identity(secret).to_public())
    return rules


def stored_assignment(state_dir: Path) -> Any:
    """The stored Assignment, or None when there is none that parses."""
    from cooee_agent.protocol.records import Assignment

    stored = read_json(state_dir / ASSIGNMENT_FILE)
    if not isinstance(stored, dict):
        return None
    try:
        return Assignment.from_dict(stored.get("assignment"))
    except Exception as error:
        log.debug("no usable stored assignment: %s", error)
        return None


def stored_read_key(state_dir: Path) -> str | None:
    assignment = stored_assignment(state_dir)
    if assignment is None or not assignment.has_read_key:
        return None
    return str(assignment.read_key)


class HostRecordKeeper:
    def __init__(
        self,
        transport: Any,
        rules: HostRecordRules,
        state_dir: Path,
        *,
        check_s: float = CHECK_S,
        republish_s: float = REPUBLISH_S,
    ) -> None:
        self.transport = transport
        self.rules = rules
        self.state_dir = state_dir
        self.check_s = check_s
        self.republish_s = republish_s
        self._thread = threading.Thread(target=self.run, name="cooee-host-record", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self) -> None:
        import time

        next_put = time.monotonic() + self.check_s
        while self.transport.alive:
            time.sleep(self.check_s)
            try:
                assignment = stored_assignment(self.state_dir)
                if assignment is None or not assignment.has_read_key:
                    continue
                identity = read_key_identity(assignment.read_key)
                recipient = str(identity.to_public())
                if recipient != self.rules.read_key:
                    log.info("following the new DHT read key")
                    self.rules.read_key = recipient
                    next_put = time.monotonic()
                if time.monotonic() >= next_put:
                    self.republish(assignment.host_id, identity)
                    next_put = time.monotonic() + self.republish_s
            except Exception as error:  # the Leader may be down: try at the next turn
                log.debug("keeping the host record failed: %s", error)

    def republish(self, host_id: int, identity: Any) -> bool:
        """Put this host's record again, when the DHT has one this node accepts and opens."""
        key = host_key(host_id)
        value = self.transport.dht_get(key)
        if value is None:
            return False
        record = self.rules.check(key, value)
        open_host_record(record, [identity])
        self.transport.dht_put(key, value)
        log.debug("put this host's record again (seq %d)", record.seq)
        return True
