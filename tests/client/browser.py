"""Shared by the browser tests (the exercise's pages, the lesson's page): Debian's Chromium
driven by Playwright. Without a Chromium (OPSHUB_CHROMIUM=path overrides the search) the
browser tests skip, and scripts/test says so before it starts. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import contextlib
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

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("OPSHUB_CHROMIUM") or shutil.which("chromium")
#: what the probe of this machine found Chromium needs here (no sandbox as root, no
#: background connections to a network that refuses them)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 20_000  # ms: the longest a page may take to show what the test waits for
#: the mark of every browser test module
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium (apt-get install chromium, or OPSHUB_CHROMIUM=path): browser tests "
           "skipped")


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot into test-artifacts/: the whole page, or what the window shows."""
    ARTIFACTS.mkdir(exist_ok=True)
    if full_page:  # from the top: a sticky part (a seat's inbox) would show where scrolled
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


@contextlib.contextmanager
def served(tmp_path: Path, command: str, *args: str) -> Iterator[dict[str, Any]]:
    """`opshub COMMAND ARGS --port 0 --ready-file ...` in its own process, in ``tmp_path``;
    what its ready file says. Stopped with SIGINT at the end, as a person would with
    Ctrl-C."""
    ready, log = tmp_path / "ready.json", tmp_path / f"{command}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opshub", command, *args, "--port", "0",
             "--ready-file", str(ready)],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"opshub {command} did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield json.loads(ready.read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
