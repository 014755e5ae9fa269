"""A documented operation replayed over two hub nodes on a three-server JetStream cluster,
with the operation's stream leader and a hub node both killed (-9) mid-replay: every
published figure is still reproduced, and the stream holds each message once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.store.jetstream import op_stream
from opshub.cluster import HubProcesses, NatsCluster
from opshub.cluster_up import key_folder

pytestmark = pytest.mark.slow

OP = "COCAIR-V"  # the replay's operation id on a hub of its own choosing
BOUND = 240.0


def test_replay_over_two_nodes_survives_the_leader_and_a_node_killed(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    key_folder(keys)
    out = tmp_path / "report"
    with NatsCluster(tmp_path / "nats", servers=3) as cluster, \
            HubProcesses(keys, cluster.urls, hubs=2) as hubs:
        replay = subprocess.Popen(
            [sys.executable, "-m", "opshub", "replay", "cocair-v", "--hub", ",".join(hubs.urls),
             "--keys", str(keys), "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            stream = op_stream(OP)
            deadline = time.monotonic() + BOUND
            while True:  # mid-replay: a quarter of the traffic is in
                leader = cluster.leader_of(stream, within=BOUND)
                state = cluster.stream_state(leader, stream) or {}
                if state.get("last_seq", 0) >= 2000:
                    break
                assert replay.poll() is None, replay.communicate()[0]
                assert time.monotonic() < deadline
                time.sleep(0.2)
            cluster.kill(leader)
            hubs.kill(0)
            output, _ = replay.communicate(timeout=BOUND)
        finally:
            if replay.poll() is None:
                replay.kill()
                replay.wait()
        assert replay.returncode == 0, output
        report = json.loads((out / "report.json").read_text())
        checks = report["checks"]
        assert checks, output
        assert all(c["ok"] for c in checks), output
        survivors = [i for i in range(3) if cluster.servers[i].running]
        lasts = {(cluster.stream_state(i, stream) or {}).get("last_seq") for i in survivors}
        # one entry per message sent and per statement, nothing twice
        assert lasts == {report["sent"] + report["final_epoch"] + 1}, (lasts, report["sent"])
