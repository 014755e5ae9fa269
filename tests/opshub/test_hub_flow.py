"""The README's hub flow as a user types it: `opshub keys`, `opshub serve`, then replays
and benchmarks against that one running hub, each any number of times. The hub's API is
read as the tools read it (signed by a registrar of the key folder's authority); its
/healthz and /metrics are on their own listener, at PORT + 1 by default."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from client.connection import TIMEOUT
from client.identity import KeyFolder
from opshub.hubapi import HubApi, registrar
from tests.opshub.conftest import opshub, serve_port

T = TypeVar("T")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())


def _status(url: str) -> int:
    """The HTTP status of a GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


class Served:
    """`opshub serve` in a subprocess, as the README starts it."""

    def __init__(self, cwd: Path, port: int) -> None:
        self.cwd, self.port = cwd, port
        self.ws = f"ws://127.0.0.1:{port}/v1/ws"
        self.http = f"http://127.0.0.1:{port}"
        self.metrics = f"http://127.0.0.1:{port + 1}"  # the default: --port + 1
        self.ready = cwd / "ready.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opshub", "serve", "--keys", "keys", "--db", "x.db",
             "--port", str(port), "--ready-file", str(self.ready)], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_healthy(self) -> None:
        """Once the ready file says the hub listens, /healthz answers on port + 1. (Not
        polled before: a connection to a port of the ephemeral range that nothing listens
        on can connect to itself and read back its own request.)"""
        deadline = time.monotonic() + TIMEOUT * 6
        while not self.ready.exists():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the hub did not write its ready file"
            time.sleep(0.05)
        assert json.loads(self.ready.read_text())["metrics"] == self.metrics
        assert _get(f"{self.metrics}/healthz")["status"] == "ok"

    def ask(self, question: Callable[[HubApi], Awaitable[T]]) -> T:
        """Ask the hub's API as the tools do: signed by a registrar of ``keys/``."""
        async def asking() -> T:
            signer = registrar(KeyFolder(self.cwd / "keys").authority(), now=int(time.time()))
            async with HubApi(self.ws, signer) as api:
                return await question(api)

        return asyncio.run(asking())

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=TIMEOUT * 6)
        return self.proc.returncode, out, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    assert opshub("keys", "--out", "keys", cwd=tmp_path).returncode == 0
    hub = Served(tmp_path, serve_port())
    try:
        hub.wait_healthy()
        yield hub
    finally:
        if hub.proc.poll() is None:
            rc, _, err = hub.stop()
            assert rc == 0, err
            assert "Traceback" not in err, err


@pytest.mark.slow
def test_hub_flow_readme_replay_runs_twice_against_one_hub(served: Served) -> None:
    """keys, serve, then `opshub replay trigger-vii --hub URL --keys keys` twice in a row:
    both reproduce every published figure, as two operations on the one hub."""
    outs = []
    for n in (1, 2):
        done = opshub("replay", "trigger-vii", "--hub", served.ws, "--keys", "keys",
                      "--out", f"run{n}", cwd=served.cwd)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        outs.append(json.loads((served.cwd / f"run{n}" / "report.json").read_text()))
    assert [r["operation_id"] for r in outs] == ["TRIGGER-VII", "TRIGGER-VII-2"]
    assert {"TRIGGER-VII", "TRIGGER-VII-2"} <= served.ask(HubApi.operations)
    # the key folder's units were not re-issued: the hub still holds the roster's DM-CUSTOMS
    roster = json.loads((served.cwd / "keys" / "roster.json").read_text())["units"]
    ours = next(u for u in roster if u["unit"] == "DM-CUSTOMS")
    on_file = served.ask(HubApi.directory)["DM-CUSTOMS"]
    assert on_file.to_json()["credential"] == ours["credential"]


def test_hub_flow_bench_runs_twice_against_one_hub(served: Served) -> None:
    """`opshub bench hub --hub URL --keys keys` twice in a row against one hub: both
    runs deliver everything, each in operations of its own."""
    for n in (1, 2):
        done = opshub("bench", "hub", "--hub", served.ws, "--keys", "keys", "--subscribers",
                      "2", "--sub-procs", "1", "--duration", "0.5", "--warmup", "0.1",
                      "--window", "64", "--json", f"bench{n}.json", cwd=served.cwd)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        result = json.loads((served.cwd / f"bench{n}.json").read_text())
        assert result["lost"] == 0
        assert result["deliveries_received"] == result["deliveries_expected"] > 0
    ops = served.ask(HubApi.operations)
    assert len([o for o in ops if o.startswith("BENCH")]) == 2


@contextlib.contextmanager
def _served_with_ready_file(tmp_path: Path, *flags: str
                            ) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`opshub serve --port 0 --ready-file run/hub.json FLAGS`, and the ready file once it
    exists; the hub is stopped with SIGTERM at the end, and must exit 0 and remove it."""
    assert opshub("keys", "--out", "keys", cwd=tmp_path).returncode == 0
    ready = tmp_path / "run" / "hub.json"
    ready.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "opshub", "serve", "--keys", "keys", "--db", "x.db",
         "--port", "0", "--ready-file", str(ready), *flags], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT * 6
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield proc, ready
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT * 6)
    assert proc.returncode == 0, err
    assert not ready.exists(), "the ready file outlives the hub"


def test_hub_flow_serve_ready_file_names_the_hub(tmp_path: Path) -> None:
    """`opshub serve --ready-file PATH` writes the hub's URLs and pid as JSON once it is
    listening (and not before), so scripts need not parse its human-readable output."""
    with _served_with_ready_file(tmp_path) as (proc, ready):
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid
        assert info["url"].startswith("ws://127.0.0.1:")
        assert info["url"].endswith("/v1/ws")
        assert info["http"].startswith("http://127.0.0.1:")
        assert _get(f"{info['metrics']}/healthz")["status"] == "ok"
        assert [p.name for p in ready.parent.iterdir()] == ["hub.json"]  # no temp file left


def test_hub_flow_serve_metrics_listen_apart_from_the_agents(tmp_path: Path) -> None:
    """The ready file's "metrics" URL (--metrics-port 0: a free port) serves /healthz and
    /metrics; the agents' port serves neither (404), and its API wants a signature."""
    with _served_with_ready_file(tmp_path, "--metrics-port", "0") as (_, ready):
        info = json.loads(ready.read_text())
        assert info["metrics"].startswith("http://127.0.0.1:")
        assert info["metrics"] != info["http"]
        assert _get(f"{info['metrics']}/healthz")["status"] == "ok"
        with urllib.request.urlopen(f"{info['metrics']}/metrics", timeout=TIMEOUT) as resp:
            assert "opshub_connections " in resp.read().decode()
        assert _status(f"{info['http']}/metrics") == 404
        assert _status(f"{info['http']}/healthz") == 404
        assert _status(f"{info['http']}/v1/operations") == 401


def test_hub_flow_replay_interrupted_writes_a_partial_report(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during a replay stops
    it cleanly: exit status 130, the report of what happened so far marked partial, the
    hub it started stopped, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "opshub", "replay", "cocair-v", "--out", "out"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("day 3 "):
            break
    else:
        pytest.fail("".join(seen) + proc.communicate()[1])
    hub_url = next(line for line in seen if line.startswith("replay ")).rsplit(" ", 1)[1]
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT * 6)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert "Traceback" not in out + err, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["partial"] is True
    assert 0 < report["messages"] < 8000
    assert "partial" in (tmp_path / "out" / "report.md").read_text().lower()
    assert "partial" in (tmp_path / "out" / "report.html").read_text().lower()
    assert "interrupted" in err
    port = int(hub_url.split(":")[2].split("/")[0])
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
