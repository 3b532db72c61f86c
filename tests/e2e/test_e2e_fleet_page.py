"""The fleet page in a real browser (Debian's chromium, headless, driven by chromedriver) against
a real ``leader serve --http`` with three real agents on 127.0.0.1: the page lists the hosts
with their tokens, and a stopped agent's row turns offline without a reload. The screenshot is
kept in test-artifacts/fleet-page.png. One agent also runs with ``--metrics``, scraped here."""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2eharness import World
from process_support import DEADLINE, free_port, until
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing = "chromium and chromium-driver are not installed (scripts/setup installs them)"
        if os.environ.get("CI"):  # in CI a skipped browser test would hide a broken setup
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--window-size=1400,700",
        "--no-proxy-server",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


# Read in one script, inside the page: the page redraws its rows every poll, so elements looked
# up one by one from the test could be replaced between two reads.
ROWS_SCRIPT = """
const rows = {};
for (const row of document.querySelectorAll("#hosts tbody tr")) {
  const name = row.dataset.hostname;
  const entry = rows[name] || (rows[name] = {state: "", tokens: []});
  const state = row.querySelector("td.state");
  if (state) entry.state = state.textContent.trim();
  for (const cell of row.querySelectorAll("td.token")) entry.tokens.push(cell.textContent);
}
return rows;
"""


def _rows(driver: Any) -> dict[str, dict[str, str]]:
    """Each host row of the page: its state (with the announced one, if any) and its tokens."""
    found = driver.execute_script(ROWS_SCRIPT)
    return {
        name: {"state": str(row["state"]), "tokens": " ".join(row["tokens"])}
        for name, row in found.items()
    }


def _scrape(port: int) -> dict[str, list[Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {f.name: f.samples for f in text_string_to_metric_families(body)}


def test_the_fleet_page_shows_three_agents_and_one_going_offline_live(
    world: World, browser: Any
) -> None:
    http_port, metrics_port = free_port(), free_port()
    world.start_leader(extra=["--http", f"127.0.0.1:{http_port}", "--offline-after", "3"])
    agents = [world.agent(name) for name in ("gpu-a", "gpu-b", "gpu-c")]
    agents[0].start("--metrics", f"127.0.0.1:{metrics_port}")
    for agent in agents[1:]:
        agent.start()
    hosts = world.online([a.hostname for a in agents])
    tokens = {h["hostname"]: " ".join(s["token"] for s in h["slots"]) for h in hosts}

    browser.get(f"http://127.0.0.1:{http_port}/")
    assert browser.title == "cooee fleet"

    def listed() -> dict[str, dict[str, str]] | None:
        rows = _rows(browser)
        wanted = {a.hostname for a in agents}
        ready = wanted <= set(rows) and all(rows[h]["state"].startswith("online") for h in wanted)
        return rows if ready else None

    rows = until(listed, "the page to list the three agents online")
    for agent in agents:
        assert rows[agent.hostname]["tokens"] == tokens[agent.hostname]
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "fleet-page.png"))

    # The page must change by itself: a marker set now would be gone after a reload.
    browser.execute_script("window.cooeeMarker = 'no reload';")
    agents[2].kill()

    def offline() -> bool:
        return _rows(browser).get(agents[2].hostname, {}).get("state") == "offline"

    until(offline, f"{agents[2].hostname} offline on the page", DEADLINE)
    assert browser.execute_script("return window.cooeeMarker;") == "no reload"
    others = _rows(browser)
    assert all(others[a.hostname]["state"].startswith("online") for a in agents[:2])
    assert browser.save_screenshot(str(ARTIFACTS / "fleet-page-offline.png"))

    # Nothing the page loaded was refused by its own Content-Security-Policy.
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert not [line for line in console if "Content Security Policy" in line], console

    # The agent started with --metrics says it is enrolled and has sent heartbeats.
    metrics = _scrape(metrics_port)
    enrolled = [
        s for s in metrics["cooee_agent_enrolment_state"] if s.labels["state"] == "enrolled"
    ]
    assert enrolled[0].value == 1
    assert metrics["cooee_agent_heartbeats_sent"][0].value >= 1
