"""`opshub load` as a user runs it: thresholds decide the exit status, runs repeat against
one running hub leaving nothing behind but their operations, bad options are refused
before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from client.connection import TIMEOUT
from tests.opshub.load.conftest import ServedHub

SMALL = ["--subscribers", "2", "--sub-procs", "1", "--rate", "100", "--duration", "2",
         "--warmup", "0.5", "--quiet"]


def load(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tmp = cwd / "tmp"
    tmp.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "opshub", "load", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT * 12,
                          env={**os.environ, "TMPDIR": str(tmp)}, check=False)


def test_cli_load_thresholds_pass_and_fail_as_written(tmp_path: Path) -> None:
    """Each threshold is printed passed or FAILED; one failure makes the exit status 1
    (the run itself went well: every delivery arrived)."""
    done = load(*SMALL, "--threshold", "errors==0", "--threshold", "p99<1us",
                "--threshold", "rate>=50", "--json", "out.json", "--csv", "series.csv",
                cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:3] == ["threshold", "passed", "errors==0"] for line in lines)
    assert any(line.split()[:3] == ["threshold", "FAILED", "p99<1us"] for line in lines)
    assert any(line.split()[:3] == ["threshold", "passed", "rate>=50"] for line in lines)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["delivery"]["complete"]
    assert result["hub"]["started"]
    assert [t["passed"] for t in result["thresholds"]] == [True, False, True]
    header = (tmp_path / "series.csv").read_text().splitlines()[0].split(",")
    assert {"second", "sent", "acked", "delivered", "errors", "p99_ms"} <= set(header)
    assert not list((tmp_path / "tmp").iterdir()), "a temporary folder was left behind"


def test_cli_load_twice_against_one_running_hub(tmp_path: Path, served_hub: ServedHub
                                                 ) -> None:
    """Two runs in a row against the same running hub, the second from a profile with
    directed messages: both pass their thresholds, each on operations of its own, and
    nothing but those operations is left."""
    hub = ["--hub", served_hub.url, "--metrics", served_hub.metrics, "--keys",
           str(served_hub.keys)]
    checks = ["--threshold", "errors==0", "--threshold", "lost==0"]
    first = load(*SMALL, *hub, *checks, "--json", "first.json", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    (tmp_path / "mixed.yaml").write_text(
        "shapes:\n"
        "  - {name: fanout, subscribers: 3, rate: 100, directed: 0.2, size: 512-2048}\n"
        "  - {name: chatter, operations: 2, subscribers: 1, window: 2, "
        "size: 'lognormal:300:0.5'}\n")
    second = load("--profile", "mixed.yaml", "--duration", "2", "--warmup", "0.5",
                  "--sub-procs", "1", "--quiet", *hub, *checks, "--json", "second.json",
                  "--histogram", "second.hlog", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("first.json", "second.json"))
    assert len(two["operations"]) == 3
    assert not set(one["operations"]) & set(two["operations"])
    assert two["messages"]["directed_acked"] > 0
    assert two["delivery"]["received"] == two["delivery"]["expected"]
    assert not one["hub"]["started"]
    assert (tmp_path / "second.hlog").read_text().count("HISTFAA") == 1
    assert not list((tmp_path / "tmp").iterdir()), "a temporary folder was left behind"


@pytest.mark.parametrize(("args", "says"), [
    (["--threshold", "p99 < fast"], "--threshold 'p99 < fast' is not a threshold: expected "
                                    "METRIC OP VALUE"),
    (["--size", "1k"], "--size: '1k' is not a size: expected N (bytes), A-B (uniform) or "
                       "lognormal:MEDIAN:SIGMA"),
    (["--profile", "bad.yaml"], "bad.yaml: shapes[0].directed: expected a share between 0 "
                                "and 1, got 2"),
    (["--rate", "100", "--window", "8"], "--rate: give a rate (open loop) or a window"),
    (["--profile", "bad.yaml", "--rate", "5"], "--profile describes the shapes: drop --rate"),
    (["--find-max", "--window", "4"], "--find-max climbs a rate"),
])
def test_cli_load_refuses_bad_options_before_running(tmp_path: Path, args: list[str],
                                                     says: str) -> None:
    """A bad option gets one line naming it, exit status 2, and no hub is started."""
    (tmp_path / "bad.yaml").write_text("shapes:\n  - directed: 2\n")
    done = load(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("opshub load: "), done.stderr
    assert says in lines[0], lines[0]
    assert not list((tmp_path / "tmp").iterdir())
