"""`opshub exercise` over a running hub at a wss:// URL: with the CA that signed the hub's
certificate its agents enrol over https:// and open the operation's channel over wss://;
without it the exercise stops before anything listens, with one line naming the URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client.identity import KeyFolder
from hub.app import RunningHub
from opshub.exercise import load, run_exercise
from opshub.tls import TlsFiles
from protocol.errors import TlsError
from tests.conftest import Keys


async def test_exercise_over_wss_opens_its_channel(tmp_path: Path, tls_hub: RunningHub,
                                                   keys: Keys, tls_files: TlsFiles) -> None:
    """The sample exercise against a TLS hub with --tls-ca: its web app listens and the
    OCU's agent creates the operation on the hub (every agent got through TLS)."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    stop = asyncio.Event()
    ex = load("cocair-v-tabletop", None)
    task = asyncio.create_task(run_exercise(
        ex, host="127.0.0.1", port=0, speed=60.0, hub_url=tls_hub.url, keys=folder,
        tls_ca=tls_files.ca, ready_file=tmp_path / "ready.json", stop=stop,
        say=lambda _line: None))
    try:
        async with asyncio.timeout(60):
            while ex.scenario.code not in tls_hub.hub.broker.router.ops:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.1)
        assert (tmp_path / "ready.json").exists()
    finally:
        stop.set()
        await task


async def test_exercise_without_the_ca_stops_before_listening(
        tmp_path: Path, tls_hub: RunningHub, keys: Keys) -> None:
    """Without --tls-ca the hub's certificate does not verify: TlsError naming the URL,
    and no ready file."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    with pytest.raises(TlsError, match=f"TLS with {tls_hub.url} failed"):
        await run_exercise(load("cocair-v-tabletop", None), host="127.0.0.1", port=0,
                           speed=60.0, hub_url=tls_hub.url, keys=folder,
                           ready_file=tmp_path / "ready.json", say=lambda _line: None)
    assert not (tmp_path / "ready.json").exists()
