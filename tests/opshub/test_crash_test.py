"""scripts/crash-test as a user runs it, small: two kill -9 rounds of a real hub under
windowed publishes, and the script's own checks (the full run's figures are in
docs/operations.md, "Crash test (kill -9)")."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from client.connection import TIMEOUT

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash-test"


def _script() -> ModuleType:
    """The script's Python part as a module (its file name has no .py)."""
    loader = importlib.machinery.SourceFileLoader("crash_test", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_crash_test_check_counts_each_kind_of_fault() -> None:
    """The script's check is not vacuous: a message missing from one subscriber's log, a
    payload stored twice and a skipped seq are each counted."""
    ct = _script()
    a, b = ct.OPS
    good = {a: [(1, b"commit"), (2, b"x"), (3, b"y")], b: [(1, b"commit")]}
    traffic = ct.Traffic(2)
    traffic.acked = {(a, 2): b"x", (a, 3): b"y"}
    traffic.logs = [good, good]
    assert ct.check(traffic, good) == {"lost": 0, "duplicated": 0, "gaps": 0, "different": 0}
    traffic.logs = [good, {**good, a: good[a][:2]}]
    assert ct.check(traffic, good)["lost"] == 1
    traffic.logs = [good, good]
    assert ct.check(traffic, {**good, a: [*good[a], (4, b"x")]})["duplicated"] == 1
    assert ct.check(traffic, {**good, a: [(1, b"commit"), (3, b"y")]})["gaps"] == 1


@pytest.mark.slow
def test_crash_test_two_rounds_lose_and_duplicate_nothing() -> None:
    """Two kills of the hub mid-stream: the script exits 0 and reports nothing lost,
    duplicated or missing."""
    # The file is Python below its bash header: run it with this interpreter, not .venv's.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "2", "--every", "0.5:1.5",
         "--publishers", "2", "--window", "16", "--subscribers", "1", "--seed", "7"],
        capture_output=True, text=True, timeout=TIMEOUT * 6)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for figure in ("lost          0", "duplicated    0", "gaps          0",
                   "result        PASS"):
        assert figure in lines, done.stdout
    assert sum(line.startswith("round ") for line in lines) == 2
