"""A running hub for the load tests that need one (``opshub serve`` in a subprocess, as a
user runs it), with a short slow-consumer timeout so that a paused subscriber is closed
within a test's time, and helpers to run the tool in-process with an Observer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.connection import TIMEOUT
from client.identity import Authority, KeyFolder
from opshub.load.runner import Progress, RunInfo

#: The hub closes a subscriber that has read nothing this long while frames wait.
SLOW_CONSUMER = 0.5


@dataclass(frozen=True)
class ServedHub:
    url: str
    keys: Path
    #: the base URL of its /metrics listener (from the ready file: a free port)
    metrics: str


@pytest.fixture(scope="module")
def served_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    """`opshub serve` on 127.0.0.1 with its key folder, stopped with SIGTERM at the end."""
    root = tmp_path_factory.mktemp("served")
    KeyFolder(root / "keys").write(Authority.generate(), [])
    (root / "hub.toml").write_text(f"slow_consumer_timeout = {SLOW_CONSUMER}\n"
                                   "max_outbound_bytes = 262144\n")
    ready = root / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "opshub", "serve", "--keys", str(root / "keys"), "--db",
         str(root / "hub.db"), "--port", "0", "--config", str(root / "hub.toml"),
         "--ready-file", str(ready)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 3 * TIMEOUT
        while not ready.exists():
            assert proc.poll() is None, "the hub exited"
            assert time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield ServedHub(info["url"], root / "keys", info["metrics"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=3 * TIMEOUT)


class Pause:
    """An Observer that stops one load process (SIGSTOP) at a given second of the
    measurement and lets it go on (SIGCONT) ``seconds`` later: a publisher that falls
    behind its schedule, or a subscriber that stops reading."""

    def __init__(self, role: str, at: float, seconds: float) -> None:
        self.role, self.at, self.seconds = role, at, seconds
        self.pid = 0
        self.paused = False

    def started(self, info: RunInfo) -> None:
        pids = info.publisher_pids if self.role == "publisher" else info.subscriber_pids
        self.pid = pids[0]

    def progress(self, p: Progress) -> None:
        if not self.paused and p.elapsed_s >= self.at:
            self.paused = True
            os.kill(self.pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(self.seconds, os.kill, self.pid,
                                                  signal.SIGCONT)

    def note(self, text: str) -> None:
        pass
