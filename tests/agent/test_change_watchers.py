"""Change detection: debounced bursts, Ollama digest polling against a real HTTP server."""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cooee_agent.agent.change_watchers import (
    Change,
    Debouncer,
    OllamaPoller,
    UdevWatcher,
    fetch_ollama_digests,
)

# --- debounce -----------------------------------------------------------------------------


def collect() -> tuple[queue.Queue[tuple[str, ...]], Debouncer]:
    batches: queue.Queue[tuple[str, ...]] = queue.Queue()
    return batches, Debouncer(0.15, batches.put, max_wait=1.0)


def test_a_burst_fires_once_after_the_quiet_period() -> None:
    batches, debouncer = collect()
    started = time.monotonic()
    for index in range(10):
        debouncer.poke(f"drm add card{index}")
        time.sleep(0.01)
    batch = batches.get(timeout=2)
    waited = time.monotonic() - started
    assert batch == tuple(f"drm add card{index}" for index in range(10))
    assert waited >= 0.15 + 0.09  # the quiet period counts from the last event
    with pytest.raises(queue.Empty):
        batches.get(timeout=0.4)
    debouncer.close()


def test_bursts_separated_by_quiet_fire_separately() -> None:
    batches, debouncer = collect()
    debouncer.poke("a")
    assert batches.get(timeout=2) == ("a",)
    debouncer.poke("b")
    debouncer.poke("c")
    assert batches.get(timeout=2) == ("b", "c")
    debouncer.close()


def test_no_event_no_fire() -> None:
    batches, debouncer = collect()
    with pytest.raises(queue.Empty):
        batches.get(timeout=0.4)
    debouncer.close()


def test_an_endless_storm_still_fires_at_max_wait() -> None:
    batches, debouncer = collect()
    started = time.monotonic()
    fired_at = None
    while time.monotonic() - started < 1.6:
        debouncer.poke("net change eth0")
        time.sleep(0.05)
        if fired_at is None and not batches.empty():
            fired_at = time.monotonic() - started
    debouncer.close()
    assert fired_at is not None and 0.9 <= fired_at <= 1.4


def test_close_drops_a_pending_batch() -> None:
    batches, debouncer = collect()
    debouncer.poke("x")
    debouncer.close()
    with pytest.raises(queue.Empty):
        batches.get(timeout=0.3)


def test_a_failing_handler_does_not_kill_the_debouncer(caplog: pytest.LogCaptureFixture) -> None:
    seen: queue.Queue[tuple[str, ...]] = queue.Queue()

    def fire(batch: tuple[str, ...]) -> None:
        seen.put(batch)
        if batch == ("boom",):
            raise RuntimeError("handler broke")

    debouncer = Debouncer(0.05, fire)
    debouncer.poke("boom")
    assert seen.get(timeout=2) == ("boom",)
    debouncer.poke("after")
    assert seen.get(timeout=2) == ("after",)
    debouncer.close()
    assert "change handler failed" in caplog.text


def test_udev_watcher_ignores_actions_that_change_no_inventory() -> None:
    batches: queue.Queue[Change] = queue.Queue()
    watcher = UdevWatcher(batches.put, quiet=0.05)
    watcher._debouncer = Debouncer(0.05, lambda b: batches.put(Change("udev", b)))
    watcher._event(SimpleNamespace(action="change", subsystem="drm", sys_name="card0"))
    watcher._event(SimpleNamespace(action="add", subsystem="drm", sys_name="card1"))
    assert batches.get(timeout=2) == Change("udev", ("drm add card1",))
    watcher.stop()


# --- Ollama -------------------------------------------------------------------------------


class FakeOllama:
    """A real HTTP server on 127.0.0.1 answering GET /api/tags like Ollama does."""

    def __init__(self) -> None:
        self.models: list[dict[str, str]] = []
        self.body: bytes | None = None  # overrides the JSON when set
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/api/tags":
                    self.send_error(404)
                    return
                body = outer.body or json.dumps({"models": outer.models}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    server = FakeOllama()
    yield server
    server.stop()


def model(name: str, digest: str) -> dict[str, str]:
    return {"name": name, "model": name, "digest": digest, "size": "1"}


def test_fetch_reads_names_and_digests(ollama: FakeOllama) -> None:
    ollama.models = [model("llama3:8b", "aa"), model("qwen2:7b", "bb")]
    assert fetch_ollama_digests(ollama.url + "/") == {("llama3:8b", "aa"), ("qwen2:7b", "bb")}


def test_fetch_rejects_a_response_without_models(ollama: FakeOllama) -> None:
    ollama.body = b'{"error": "nope"}'
    with pytest.raises(ValueError, match="no 'models' list"):
        fetch_ollama_digests(ollama.url)


def test_poller_reports_only_changes_of_the_digest_set(ollama: FakeOllama) -> None:
    changes: list[Change] = []
    poller = OllamaPoller(lambda: fetch_ollama_digests(ollama.url, 2.0), changes.append)
    ollama.models = [model("llama3:8b", "aa")]
    assert poller.poll() is None  # the first answer is the baseline
    assert poller.poll() is None  # no change, no event
    ollama.models = [model("llama3:8b", "aa"), model("qwen2:7b", "bb")]
    assert poller.poll() == Change("ollama", ("added qwen2:7b",))
    ollama.models = [model("llama3:8b", "a2"), model("qwen2:7b", "bb")]
    assert poller.poll() == Change("ollama", ("updated llama3:8b",))
    ollama.models = [model("qwen2:7b", "bb")]
    assert poller.poll() == Change("ollama", ("removed llama3:8b",))
    assert poller.poll() is None
    assert len(changes) == 3


def test_an_outage_is_not_a_change(ollama: FakeOllama, caplog: pytest.LogCaptureFixture) -> None:
    changes: list[Change] = []
    ollama.models = [model("llama3:8b", "aa")]
    url = ollama.url
    poller = OllamaPoller(lambda: fetch_ollama_digests(url, 1.0), changes.append)
    assert poller.poll() is None
    ollama.body = b"not json"
    assert poller.poll() is None
    ollama.stop()
    assert poller.poll() is None
    assert poller.poll() is None
    revived = FakeOllama()
    try:
        revived.models = [model("llama3:8b", "aa")]
        url = revived.url
        assert poller.poll() is None  # back with the same models: nothing to re-enrol
    finally:
        revived.stop()
    assert changes == []
    assert caplog.text.count("Ollama model poll failed") == 1


def test_a_given_baseline_makes_the_first_poll_count(ollama: FakeOllama) -> None:
    # Discovery ran while Ollama was down (no models); Ollama then starts with one.
    ollama.models = [model("llama3:8b", "aa")]
    poller = OllamaPoller(
        lambda: fetch_ollama_digests(ollama.url), lambda c: None, baseline=frozenset()
    )
    assert poller.poll() == Change("ollama", ("added llama3:8b",))


def test_poller_thread_delivers_to_a_queue(ollama: FakeOllama) -> None:
    events: queue.Queue[Change] = queue.Queue()
    ollama.models = [model("llama3:8b", "aa")]
    with OllamaPoller(lambda: fetch_ollama_digests(ollama.url), events.put, interval=0.05):
        time.sleep(0.2)
        assert events.empty()
        ollama.models = []
        assert events.get(timeout=2) == Change("ollama", ("removed llama3:8b",))
        time.sleep(0.2)
        assert events.empty()


names = st.from_regex(r"[a-z][a-z0-9]{0,6}:[a-z0-9]{1,4}", fullmatch=True)
digest_sets = st.dictionaries(names, st.sampled_from(["d1", "d2", "d3"]), max_size=5)


@settings(max_examples=100)
@given(states=st.lists(digest_sets, min_size=1, max_size=8))
def test_poller_fires_exactly_when_consecutive_sets_differ(
    states: list[dict[str, str]],
) -> None:
    sequence = iter(states)
    changes: list[Change] = []
    poller = OllamaPoller(lambda: frozenset(next(sequence).items()), changes.append)
    results = [poller.poll() for _ in states]
    expected = [prev != cur for prev, cur in itertools.pairwise(states)]
    assert [r is not None for r in results[1:]] == expected
    assert results[0] is None
    assert all(change.details for change in changes)


# --- udev under umockdev ------------------------------------------------------------------

UMOCKDEV_CHILD = Path(__file__).with_name("umockdev_udev.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.platform != "linux", reason="udev is Linux only")
def test_udev_watcher_sees_a_gpu_come_and_go_under_umockdev() -> None:
    # umockdev (scripts/setup installs it) fakes sysfs and netlink for the child process only.
    wrapper = shutil.which("umockdev-wrapper")
    assert wrapper, "umockdev-wrapper is missing: run scripts/setup"
    result = subprocess.run(
        [wrapper, sys.executable, "-W", "ignore", str(UMOCKDEV_CHILD), "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
    )
    assert result.returncode == 0, result.stderr
    steps = {line["step"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert steps["idle"] == {"step": "idle", "change": None, "cards": []}
    assert steps["add"]["change"] == {"source": "udev", "details": ["drm add card1"]}
    assert steps["add"]["cards"] == ["card1"]
    assert steps["burst"]["change"] == {"source": "udev", "details": ["drm add card1"]}
    assert steps["burst"]["again"] is None  # six events, one change
    assert steps["remove"]["change"] == {"source": "udev", "details": ["drm remove card1"]}
    assert steps["remove"]["cards"] == []
    assert steps["net"]["change"] == {"source": "udev", "details": ["net add eth7"]}
    assert steps["other"]["change"] is None  # usb is not watched
