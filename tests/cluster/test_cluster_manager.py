"""opshub.cluster on real nats-server processes on 127.0.0.1: a cluster starts with a meta
leader, an R3 stream takes acknowledged writes through nats-py, survives the kill -9 of
one server (quorum 2 of 3), a server restarted with its data catches up, and close()
leaves no process behind. Hub nodes start over the cluster's URLs."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from client.connection import TIMEOUT
from opshub.cluster import HubProcesses, NatsCluster, ServerPorts, server_config
from opshub.cluster_up import key_folder
from protocol.errors import OpshubError, UsageError

pytestmark = pytest.mark.slow

#: the bound of every wait in these tests, in seconds: an election after a kill -9 takes
#: 4 to 9 s here (nats-server's election timeout), a restart's catch-up about 2 s
WITHIN = 3 * TIMEOUT


def _gone(pid: int) -> bool:
    """Whether no process (not even a zombie) has this pid."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with NatsCluster() as running:
        yield running


async def _quiet(_error: Exception) -> None:
    """nats-py's default error callback logs a traceback for each server it cannot reach
    (a killed one); the tests check the outcome instead."""


@pytest.fixture
async def js(cluster: NatsCluster) -> AsyncIterator[JetStreamContext]:
    nc: Client = await nats.connect(cluster.urls, error_cb=_quiet, connect_timeout=2,
                                    reconnect_time_wait=0.2, max_reconnect_attempts=-1)
    try:
        yield nc.jetstream(timeout=2)
    finally:
        await nc.close()


async def _r3(js: JetStreamContext, name: str = "OPS") -> None:
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"], num_replicas=3)


async def _publish(js: JetStreamContext, subject: str, payload: bytes) -> PubAck:
    """Publish until acknowledged: while a stream elects a leader a publish times out or
    finds no responder, and a client retries (with the same Nats-Msg-Id, as the hub does)."""
    msg_id = payload.hex()
    async with asyncio.timeout(WITHIN):
        while True:
            try:
                return await js.publish(subject, payload, timeout=1,
                                        headers={"Nats-Msg-Id": msg_id})
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError,
                    nats.js.errors.APIError):
                await asyncio.sleep(0.1)


def test_cluster_server_config_is_the_documented_one(tmp_path: Path) -> None:
    """The config names the server, listens on 127.0.0.1 only, allows 8 MB payloads,
    fsyncs before acknowledging and routes to the other servers."""
    text = server_config("nats-0", ServerPorts(client=4222, cluster=6222, http=8222),
                         [6223, 6224], tmp_path / "data")
    assert "server_name: nats-0\n" in text
    assert "listen: 127.0.0.1:4222\n" in text
    assert "http: 127.0.0.1:8222\n" in text
    assert "max_payload: 8MB\n" in text
    assert "sync_interval: always\n" in text
    assert f"store_dir: {json.dumps(str(tmp_path / 'data'))}" in text
    assert "listen: 127.0.0.1:6222\n" in text
    assert "nats-route://127.0.0.1:6223" in text
    assert "nats-route://127.0.0.1:6224" in text
    assert "6222\n  ]" not in text  # no route to itself
    assert "cluster {" not in server_config("solo", ServerPorts(client=1, cluster=2, http=3),
                                            [], tmp_path)


def test_cluster_starts_three_servers_with_one_meta_leader(cluster: NatsCluster) -> None:
    """Three servers come up with JetStream, every one names the same meta leader, and
    each runs with the settings of its config (fsync always, 8 MiB payloads)."""
    assert len(set(cluster.urls)) == 3
    leader = cluster.servers[cluster.meta_leader()].name
    for server in cluster.servers:
        jsz = server.get("/jsz")
        assert jsz is not None
        assert jsz["meta_cluster"]["leader"] == leader
        assert jsz["meta_cluster"]["cluster_size"] == 3
        assert jsz["config"]["sync_always"] is True
        varz = server.get("/varz")
        assert varz is not None
        assert varz["server_name"] == server.name
        assert varz["host"] == "127.0.0.1"
        assert varz["max_payload"] == 8 * 1024 * 1024
        assert varz["cluster"]["addr"] == "127.0.0.1"


async def test_cluster_r3_stream_acknowledges_a_publish(cluster: NatsCluster,
                                                        js: JetStreamContext) -> None:
    """A stream with three replicas is created through nats-py, a publish is acked, every
    server holds it, and leader_of names the server nats-py reports as leader."""
    await _r3(js)
    ack = await _publish(js, "ops.a", b"first")
    assert (ack.stream, ack.seq) == ("OPS", 1)
    info = await js.stream_info("OPS")
    assert info.cluster is not None
    i = cluster.leader_of("OPS")
    assert cluster.servers[i].name == info.cluster.leader
    async with asyncio.timeout(WITHIN):
        while [(cluster.stream_state(k, "OPS") or {}).get("last_seq") for k in range(3)] \
                != [1, 1, 1]:
            await asyncio.sleep(0.1)


async def test_cluster_kill_of_the_stream_leader_leaves_the_stream_writable(
        cluster: NatsCluster, js: JetStreamContext) -> None:
    """kill -9 of the server leading a stream: the two left elect a leader (quorum 2 of
    3) and go on acknowledging publishes, in sequence after the ones before."""
    await _r3(js)
    for n in range(5):
        await _publish(js, "ops.a", b"before %d" % n)
    killed = cluster.leader_of("OPS")
    cluster.kill(killed)
    assert not cluster.servers[killed].running
    ack = await _publish(js, "ops.a", b"after the kill")
    assert ack.seq == 6
    assert not ack.duplicate
    leader = await asyncio.to_thread(cluster.leader_of, "OPS")
    assert leader != killed
    info = await js.stream_info("OPS")
    assert info.state.last_seq == 6


async def test_cluster_restarted_server_catches_up_with_its_data(
        cluster: NatsCluster, js: JetStreamContext) -> None:
    """A server killed with -9 misses writes; restarted on the same ports and data folder,
    it has every one of them when restart() returns, and the stream's three replicas hold
    the same sequence."""
    await _r3(js)
    await _publish(js, "ops.a", b"seen by all")
    leader = cluster.leader_of("OPS")
    follower = (leader + 1) % 3
    port = cluster.servers[follower].ports.client
    cluster.kill(follower)
    for n in range(20):
        await _publish(js, "ops.a", b"missed %d" % n)
    assert (await js.stream_info("OPS")).state.last_seq == 21
    await asyncio.to_thread(cluster.restart, follower)
    server = cluster.servers[follower]
    assert server.running
    assert server.ports.client == port
    assert (server.folder / "data" / "jetstream").is_dir()
    assert "Starting nats-server" in server.log.read_text()
    states = [cluster.stream_state(k, "OPS") for k in range(3)]
    assert [(s or {}).get("last_seq") for s in states] == [21, 21, 21]
    assert [(s or {}).get("messages") for s in states] == [21, 21, 21]


def test_cluster_close_leaves_no_process_and_no_folder() -> None:
    """close() stops every server it started, killed ones included, reaps them (no
    zombie) and removes its temporary folder; a second close() does nothing."""
    cluster = NatsCluster()
    pids = [s.proc.pid for s in cluster.servers if s.proc is not None]
    cluster.kill(1)
    cluster.close()
    assert len(pids) == 3
    assert all(_gone(pid) for pid in pids)
    assert not cluster.folder.exists()
    cluster.close()


def test_cluster_keeps_a_given_folder_and_restarts_on_its_data(tmp_path: Path) -> None:
    """With a folder of the caller's, each server's config, log and data stay there
    after close(), and a new cluster on that folder starts on the data."""
    with NatsCluster(tmp_path, servers=3) as cluster:
        assert cluster.folder == tmp_path.resolve()
    for i in range(3):
        assert (tmp_path / f"nats-{i}" / "nats.conf").is_file()
        assert (tmp_path / f"nats-{i}" / "data" / "jetstream").is_dir()
    with NatsCluster(tmp_path, servers=3) as again:
        again.meta_leader()


def test_cluster_not_ready_in_time_names_the_server_and_its_log() -> None:
    """A cluster that is not ready in time raises one error naming a server and quoting
    its log, and has stopped what it started."""
    before = {p.name for p in Path("/proc").iterdir() if p.name.isdigit()}
    with pytest.raises(OpshubError, match=r"NATS server nats-\d .*its log .*nats-server\.log"):
        NatsCluster(ready_within=0.0)
    after = {p.name for p in Path("/proc").iterdir() if p.name.isdigit()}
    for pid in after - before:
        assert "nats-server" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()


def test_cluster_refuses_no_servers() -> None:
    """A cluster of no server is a usage error."""
    with pytest.raises(UsageError, match="at least one server"):
        NatsCluster(servers=0)


def test_hub_processes_start_over_the_cluster(cluster: NatsCluster, tmp_path: Path) -> None:
    """Two hub nodes start with --store naming every NATS server, each listening on a
    port of its own, its /healthz on another port of its own answering; kill -9 of one
    leaves the other answering, and close() leaves no process."""
    keys = tmp_path / "keys"
    assert key_folder(keys) is True
    with HubProcesses(keys, cluster.urls) as hubs:
        assert hubs.store == ",".join(cluster.urls)
        assert len(set(hubs.urls)) == 2
        assert all(u.startswith("ws://127.0.0.1:") for u in hubs.urls)
        ports = [int(u.rsplit(":", 1)[1]) for u in [*hubs.http, *hubs.metrics]]
        assert len(set(ports)) == 4  # no node's metrics port is another's, nor an API's
        for metrics in hubs.metrics:
            assert _health(metrics)["status"] == "ok"
        pids = [n.pid for n in hubs.nodes]
        hubs.kill(0)
        assert _gone(pids[0])
        assert _health(hubs.metrics[1])["status"] == "ok"
    deadline = time.monotonic() + WITHIN
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _health(metrics: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{metrics}/healthz", timeout=5) as resp:
        answer: dict[str, object] = json.load(resp)
    return answer


def test_key_folder_is_created_once(tmp_path: Path) -> None:
    """key_folder creates a key folder with an authority where there is none, and leaves
    an existing one as it is."""
    keys = tmp_path / "keys"
    assert key_folder(keys) is True
    before = (keys / "authority.pub").read_text()
    assert key_folder(keys) is False
    assert (keys / "authority.pub").read_text() == before
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"authority\.key is missing"):
        key_folder(tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == []
