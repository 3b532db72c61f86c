"""A Leader on the mesh: keys, registry, call book, libp2p node and dispatcher, opened and closed
together. Used by ``leader serve`` and by dev mode, so both run the same Leader."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from cooee_agent.atomic import replace_file
from cooee_agent.leader.host_records import PublishSettings
from cooee_agent.leader.registry.admission import Limits
from cooee_agent.protocol.sealing import Window

log = logging.getLogger(__name__)

ADDRS_FILE = "leader.addrs"


class LeaderNode:
    """Open with :meth:`start`; ``run(stop)`` serves until ``stop`` is set; ``close()`` always."""

    def __init__(
        self,
        state_dir: Path,
        *,
        listen: Sequence[str],
        bootstrap: Sequence[str] = (),
        offline_after: float | None = None,
        max_age_s: int = 600,
        peer_exchange: bool = False,
        http: str | None = None,
        http_token_file: Path | None = None,
        limits: Limits = Limits(),
        dht: bool = False,
        dht_refresh_s: float = 60.0,
        publish: PublishSettings | None = None,
    ) -> None:
        from cooee_agent.bus.mesh_config import MeshConfig
        from cooee_agent.bus.mesh_transport import start_mesh
        from cooee_agent.leader.calls import CALLS_FILE, CallBook
        from cooee_agent.leader.dispatch import Dispatcher
        from cooee_agent.leader.precheck import PrecheckDrops
        from cooee_agent.leader.registrar import Registrar
        from cooee_agent.leader.submission_book import SUBMISSIONS_FILE, SubmissionBook
        from cooee_agent.leader.submissions import DecisionCourier

        self.state_dir = state_dir
        self.addrs_file = state_dir / ADDRS_FILE
        self.addrs_file.unlink(missing_ok=True)
        # The mesh reaches anyone: first contact is bounded here (admission.Limits).
        self.registrar = Registrar(state_dir, window=Window(max_age_s=max_age_s), limits=limits)
        self.calls = CallBook(state_dir / CALLS_FILE)
        self.submissions = SubmissionBook(state_dir / SUBMISSIONS_FILE)
        self.courier: DecisionCourier | None = None
        self.mesh = None
        self.http = None  # the read-only HTTP server (leader.http_api), when ``http`` is given
        self.drops = PrecheckDrops()
        self.publisher = None
        try:
            rules = None
            dht_settings = None
            if dht:
                from cooee_agent.bus.dht import DhtSettings
                from cooee_agent.leader.host_records import ReadKey, leader_rules

                self.registrar.read_key = ReadKey(state_dir)
                rules = leader_rules(self.registrar.keys, self.registrar.read_key)
                dht_settings = DhtSettings(refresh_interval=dht_refresh_s)
            config = MeshConfig(
                state_dir=state_dir,
                listen=tuple(listen),
                bootstrap=tuple(bootstrap),
                peer_exchange=peer_exchange,
                dht=dht_settings,
            )
            self.mesh = start_mesh(config, validator=self.drops, dht_rules=rules)
            self.dispatcher = Dispatcher(
                self.registrar,
                self.mesh,
                calls=self.calls,
                submissions=self.submissions,
                offline_after=offline_after,
            )
            # Decisions are made by another process (the operator's CLI); this sends them.
            self.courier = DecisionCourier(state_dir / SUBMISSIONS_FILE, self.mesh)
            if dht:
                from cooee_agent.leader.host_records import HostRecordPublisher, reissuer

                self.publisher = HostRecordPublisher(
                    state_dir,
                    self.registrar.keys,
                    self.registrar.read_key,
                    self.mesh.dht_put,
                    reissuer(self.registrar, self.mesh.publish),
                    rules=rules,
                    settings=publish,
                )
            self.addrs: list[str] = self.mesh.addrs()
            if http is not None:
                self.http = _start_http(self, http, http_token_file)
            _write_addrs(self.addrs_file, self.addrs)
        except BaseException:
            self.close()
            raise
        log.info(
            "Leader %s serving on %s",
            self.registrar.keys.bundle.fingerprint,
            ", ".join(self.addrs),
        )

    @property
    def bundle_text(self) -> str:
        return str(self.registrar.keys.bundle.text)

    @property
    def fingerprint(self) -> str:
        return str(self.registrar.keys.bundle.fingerprint)

    def run(self, stop: threading.Event, *, beat: Callable[[], None] = lambda: None) -> None:
        if self.courier is not None:
            self.courier.start(stop)
        publishing = None
        if self.publisher is not None:
            publishing = threading.Thread(
                target=self.publisher.run, args=(stop,), name="cooee-host-records", daemon=True
            )
            publishing.start()
        try:
            self.dispatcher.run(stop, beat=beat)
        finally:
            stop.set()
            if publishing is not None:
                publishing.join(timeout=30)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.drops.flush()  # what the last window dropped, said before the Leader goes
        dispatcher = getattr(self, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.close()
        if self.mesh is not None:
            self.mesh.close()
        self.calls.close()
        self.submissions.close()
        self.registrar.close()
        self.addrs_file.unlink(missing_ok=True)

    def __enter__(self) -> LeaderNode:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _write_addrs(path: Path, addrs: list[str]) -> None:
    """Atomically, so a script polling for the file never reads half of it; not synced, as it is
    rewritten at every start."""
    data = "".join(f"{addr}\n" for addr in addrs).encode("utf-8")
    replace_file(path, data, mode=0o644, durable=False)


def _start_http(node: LeaderNode, bind: str, token_file: Path | None):  # type: ignore[no-untyped-def]
    """The HTTP server on threads of its own; it reads the registry through connections of its
    own, so the dispatcher's thread is never shared."""
    from cooee_agent.leader.http_api.service import start_leader_http

    mesh = node.mesh

    def peers() -> int | None:
        try:
            return None if mesh is None else len(mesh.peers())
        except Exception:  # a mesh going down answers no count; the scrape still succeeds
            return None

    return start_leader_http(
        node.state_dir, bind, token_file=token_file, tally=node.dispatcher.tally, peers=peers
    )
