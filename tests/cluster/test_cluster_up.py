"""``opshub cluster up`` as a user runs it (scripts/cluster execs it): it creates the key
folder, starts NATS servers and hub nodes, says where they are (on stdout and in the ready
file), and on Ctrl-C or SIGTERM stops everything it started and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from client.connection import TIMEOUT

pytestmark = pytest.mark.slow

#: the bound of every wait in these tests, in seconds (a cold start imports the hub)
WITHIN = 6 * TIMEOUT


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize(("sig", "data"), [(signal.SIGTERM, None), (signal.SIGINT, "data")],
                         ids=["sigterm", "sigint-data-kept"])
def test_cluster_up_runs_until_a_signal_and_stops_everything(
        tmp_path: Path, sig: signal.Signals, data: str | None) -> None:
    """cluster up prints and writes the NATS and hub URLs (each node's metrics listener
    answering /healthz) and the replay and load commands; the signal stops every process
    it started, removes the ready file and its temporary data (a --data folder stays),
    and it exits 0."""
    ready = tmp_path / "ready.json"
    args = ["--keys", "keys", "--hubs", "1", "--ready-file", str(ready)]
    args += ["--data", data] if data else []
    proc = subprocess.Popen([sys.executable, "-m", "opshub", "cluster", "up", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + WITHIN
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert len(info["nats"]) == 3
        assert all(u.startswith("nats://127.0.0.1:") for u in info["nats"])
        assert [h["url"].startswith("ws://127.0.0.1:") for h in info["hubs"]] == [True]
        assert info["store"] == ",".join(info["nats"])
        assert info["replay"] == (f"opshub replay cocair-v --hub {info['hubs'][0]['url']} "
                                  f"--keys keys")
        metrics = info["hubs"][0]["metrics"]
        with urllib.request.urlopen(f"{metrics}/healthz", timeout=TIMEOUT) as resp:
            assert json.load(resp)["status"] == "ok"
        assert info["load"] == (f"opshub load --hub {info['hubs'][0]['url']} --metrics "
                                f"{metrics} --keys keys")
        assert (tmp_path / "keys" / "authority.key").is_file()
        pids = [*info["nats_pids"], *(h["pid"] for h in info["hubs"])]
        assert not any(_gone(pid) for pid in pids)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=WITHIN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    for url in [*info["nats"], info["hubs"][0]["url"], info["hubs"][0]["metrics"],
                info["replay"], info["load"]]:
        assert url in out
    assert "stopped 1 hub nodes and 3 NATS servers" in out
    assert all(_gone(pid) for pid in pids)
    assert not ready.exists()
    assert Path(info["data"]).exists() == (data is not None)


def test_cluster_up_refuses_a_key_folder_without_an_authority(tmp_path: Path) -> None:
    """A --keys folder that exists but holds no authority key is refused with one line,
    before anything starts."""
    (tmp_path / "keys").mkdir()
    done = subprocess.run([sys.executable, "-m", "opshub", "cluster", "up", "--keys", "keys"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=WITHIN)
    assert done.returncode == 2
    assert done.stderr.startswith("opshub cluster up: keys/authority.key is missing")
