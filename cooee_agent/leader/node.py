"""A Leader on the mesh: keys, registry, call book, libp2p node and dispatcher, opened and closed
together. Used by ``leader serve`` and by dev mode, so both run the same Leader."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from cooee_agent.atomic import replace_file
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
        limits: Limits = Limits(),
    ) -> None:
        from cooee_agent.bus.mesh_config import MeshConfig
        from cooee_agent.bus.mesh_transport import start_mesh
        from cooee_agent.leader.calls import CALLS_FILE, CallBook
        from cooee_agent.leader.dispatch import Dispatcher, envelope_validator
        from cooee_agent.leader.registrar import Registrar

        self.state_dir = state_dir
        self.addrs_file = state_dir / ADDRS_FILE
        self.addrs_file.unlink(missing_ok=True)
        # The mesh reaches anyone: first contact is bounded here (admission.Limits).
        self.registrar = Registrar(state_dir, window=Window(max_age_s=max_age_s), limits=limits)
        self.calls = CallBook(state_dir / CALLS_FILE)
        self.mesh = None
        try:
            config = MeshConfig(
                state_dir=state_dir,
                listen=tuple(listen),
                bootstrap=tuple(bootstrap),
                peer_exchange=peer_exchange,
            )
            self.mesh = start_mesh(config, validator=envelope_validator)
            self.dispatcher = Dispatcher(
                self.registrar, self.mesh, calls=self.calls, offline_after=offline_after
            )
            self.addrs: list[str] = self.mesh.addrs()
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

    def run(self, stop: threading.Event) -> None:
        self.dispatcher.run(stop)

    def close(self) -> None:
        dispatcher = getattr(self, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.close()
        if self.mesh is not None:
            self.mesh.close()
        self.calls.close()
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
