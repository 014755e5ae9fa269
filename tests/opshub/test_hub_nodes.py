"""The tools over several hub URLs: ``--hub`` takes a comma-separated list (or is repeated),
HubNodes asks every node's HTTP API, and the replay spreads its agents over the URLs.

Only SQLite hubs exist here, so two nodes are either two hubs with stores of their own (for
what the HTTP API of each says) or one hub reached at two URLs, ws://127.0.0.1:PORT and
ws://localhost:PORT (for where the agents connect)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.connection import AgentConnection
from client.identity import KeyFolder, UnitSpec
from client.replay.engine import Replay
from hub.app import RunningHub
from opshub.cli import build_parser
from opshub.hubapi import HubApi, HubNodes, hub_url_list, registrar
from opshub.replay import run_replay
from protocol.errors import UsageError
from tests.conftest import Keys, create_operation

MINI = Path(__file__).parent.parent / "data" / "mini-scenario.yaml"


def _quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("command", [["replay", "cocair-v"], ["exercise", "x"], ["load"]])
def test_cli_hub_takes_a_list_and_repeats(command: list[str]) -> None:
    """replay, exercise and load take several hubs in one --hub (comma-separated) and in
    repeated --hub options, in the order given."""
    args = build_parser().parse_args([*command, "--hub", "ws://a:1/v1/ws,ws://b:2/v1/ws",
                                      "--hub", "http://c:3"])
    assert hub_url_list(args.hub) == ["ws://a:1/v1/ws", "ws://b:2/v1/ws", "ws://c:3/v1/ws"]


def test_hub_url_list_refuses_an_empty_list_and_a_bad_url() -> None:
    """A --hub value with no URL in it, or with one that is not a hub URL, is a usage
    error naming it."""
    with pytest.raises(UsageError, match="names no hub URL"):
        hub_url_list(" , ")
    with pytest.raises(UsageError, match="'ftp://a' is not a hub URL"):
        hub_url_list("ws://a:1,ftp://a")


async def test_hub_nodes_enrol_on_every_node_and_read_the_union(
        hub: RunningHub, keys: Keys, tmp_path: Path) -> None:
    """HubNodes enrols a credential on every node, and reads the operations of all of
    them (an operation one node has is taken) and the latest credential of each unit."""
    other = RunningHub(keys.config(tmp_path / "other.db"))
    signer = registrar(keys.authority, now=keys.now)
    async with other, AgentConnection(hub.url, keys["OCU-BB"]) as ocu:
        await create_operation(ocu, keys, "OP-ONE-NODE", ["JM-CUSTOMS"])
        later = keys.authority.enroll(UnitSpec("JM-CUSTOMS", "JM", "customs"),
                                      now=keys.now)
        async with HubNodes([hub.url, other.url], signer) as nodes:
            await nodes.enroll([keys["DM-CUSTOMS"]])
            assert nodes.urls == [hub.url, other.url]
            assert "OP-ONE-NODE" in await nodes.operations()
        async with HubApi(other.url, signer) as api:
            await api.enroll([later])
        for url in (hub.url, other.url):
            async with HubApi(url, signer) as api:
                assert "DM-CUSTOMS" in await api.directory()
        async with HubNodes([hub.url, other.url], signer) as nodes:
            newest = (await nodes.directory())["JM-CUSTOMS"].credential.issued_at
        assert newest == later.credential.issued_at > keys["JM-CUSTOMS"].credential.issued_at


async def test_replay_over_two_hub_urls_spreads_its_agents(
        hub: RunningHub, keys: Keys, tmp_path: Path) -> None:
    """`opshub replay --hub A,B`: participant i of the scenario connects to URL i mod 2
    (and would fall back on the other); every published figure is reproduced."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    other = hub.url.replace("127.0.0.1", "localhost")
    seen: dict[str, Replay] = {}
    lines: list[str] = []

    def hook(replay: Replay) -> None:
        seen["replay"] = replay

    report: dict[str, Any] = await run_replay(
        str(MINI), out=tmp_path / "out", hub_url=f"{hub.url},{other}", keys=folder,
        hook=hook, progress=lines.append)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    agents = list(seen["replay"].agents.values())
    assert len(agents) >= 3
    assert [a.agent.conn.urls for a in agents] == [
        (hub.url, other) if i % 2 == 0 else (other, hub.url) for i in range(len(agents))]
    assert [a.agent.conn.current_url for a in agents] == [
        (hub.url, other)[i % 2] for i in range(len(agents))]
    assert any(f"2 hub nodes (agents spread over them) {hub.url}, {other}" in line
               for line in lines)
