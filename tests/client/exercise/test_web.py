"""The exercise as people use it: `opshub exercise` in its own process (its own hub), the
director's console and two seats as pages in a real Chromium driven by Playwright.

Needs Debian's chromium (or OPSHUB_CHROMIUM=path); without one these tests skip, and
scripts/test says so before it starts. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("OPSHUB_CHROMIUM") or shutil.which("chromium")
#: what the probe of this machine found Chromium needs here (no sandbox as root, no
#: background connections to a network that refuses them)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 20_000  # ms: the longest a page may take to show what the test waits for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium, or "
                       "OPSHUB_CHROMIUM=path): browser tests skipped"),
]


@pytest.fixture
def exercise(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The sample exercise served by `opshub exercise`; its links, read from the ready
    file. Stopped with SIGINT at the end, as a person would with Ctrl-C."""
    ready, log = tmp_path / "ready.json", tmp_path / "exercise.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opshub", "exercise", "cocair-v-tabletop", "--port", "0",
             "--speed", "60", "--ready-file", str(ready)],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"opshub exercise did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield json.loads(ready.read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_web_director_and_two_seats_play_an_exercise(exercise, browser) -> None:
    """A director starts the exercise with two seats held by two pages; a seat answers a
    warning with feedback, sees a seizure report refused by a check (nothing sent), fixes
    it and sends it; the console's tally and expectations board follow; pause and deliver
    now behave."""
    links = exercise["links"]
    console = browser.new_page(viewport={"width": 1400, "height": 1000})
    console.goto(links["director"])
    console.get_by_role("button", name="Start").click()
    console.get_by_role("button", name="Pause").click()
    console.locator("#state", has_text="paused").wait_for(timeout=WAIT)

    # deliver the warning to Lomé now, whatever the clock says
    row = console.locator('tr[data-inject="2"]')
    row.get_by_role("button", name="Deliver now").click()
    row.locator(".tag", has_text="delivered").wait_for(timeout=WAIT)

    lome = browser.new_page(viewport={"width": 1300, "height": 1000})
    lome.goto(links["TG-JAITF-LFW"])
    desk = browser.new_page()
    desk.goto(links["INTERPOL-DESK"])
    warning = lome.locator('.msg[data-id="OCU-WCO.X2"]')
    warning.wait_for(timeout=WAIT)
    warning.get_by_role("button", name="Answer with a feedback").click()
    lome.get_by_role("button", name="Send").click()
    lome.locator("#notice", has_text="Sent as").wait_for(timeout=WAIT)

    # a seizure report with a negative quantity: the check names the field, nothing goes
    lome.get_by_label("Message type").select_option("seizure_report")
    report = json.loads(lome.get_by_label("Content").input_value())
    report["items"][0]["quantity"]["value"] = -3
    lome.get_by_label("Content").fill(json.dumps(report, indent=2, ensure_ascii=False))
    lome.get_by_role("button", name="Send").click()
    problem = lome.locator("#problems li", has_text="/items/0/quantity/value")
    problem.wait_for(timeout=WAIT)
    assert "Sent as" not in lome.locator("#notice").inner_text()
    _shot(lome, "exercise-seat-refused.png")
    report["items"][0]["quantity"]["value"] = 3.2
    lome.get_by_label("Content").fill(json.dumps(report, indent=2, ensure_ascii=False))
    lome.get_by_role("button", name="Send").click()
    lome.locator("#notice", has_text="Sent as").wait_for(timeout=WAIT)
    assert lome.locator("#problems li").count() == 0

    # the OCU read both: the feedback expectation is met, the seat has sent two messages
    console.locator('tr[data-expectation="2.1"] .tag', has_text="met").wait_for(timeout=WAIT)
    seat_row = console.locator("#seats tr", has_text="TG-JAITF-LFW")
    seat_row.locator("td", has_text="2").first.wait_for(timeout=WAIT)
    console.locator("#traffic .meta", has_text="TG-JAITF-LFW").first.wait_for(timeout=WAIT)
    _shot(console, "exercise-console.png")
    _shot(lome, "exercise-seat.png")

    # reset: back to the start, every inject pending, the seat's inbox empty
    console.once("dialog", lambda dialog: dialog.accept())
    console.get_by_role("button", name="Reset").click()
    console.locator('tr[data-inject="2"] .tag', has_text="pending").wait_for(timeout=WAIT)
    console.locator("#state", has_text="ready").wait_for(timeout=WAIT)
    lome.locator("#count", has_text="(0)").wait_for(timeout=WAIT)
