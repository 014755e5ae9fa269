"""``opshub cluster up``: a local cluster on 127.0.0.1 for people (opshub/cluster.py has the
parts): NATS servers with JetStream and hub nodes over them, their URLs printed (and written
to ``--ready-file``), everything stopped on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.identity import generate
from opshub.cluster import CLUSTER_NAME, HubProcesses, NatsCluster
from opshub.identities import DEFAULT_ROSTER, open_folder
from opshub.webapp import write_ready
from protocol.errors import UsageError


def key_folder(path: Path) -> bool:
    """Make sure ``path`` is a key folder with an authority key; create one with the demo
    roster (as ``opshub keys --out PATH`` would) if nothing is there. Returns whether it
    was created. Raises UsageError if ``path`` exists but is not a usable key folder."""
    if path.exists():
        open_folder(path, authority_key=True)
        return False
    generate(path, DEFAULT_ROSTER, now=int(time.time()))
    return True


def replay_command(hub_urls: Sequence[str], keys: Path) -> str:
    """The command that replays an operation over the hub nodes (agents spread over them)."""
    return shlex.join(["opshub", "replay", "cocair-v", "--hub", ",".join(hub_urls),
                       "--keys", str(keys)])


def load_command(hub_urls: Sequence[str], metrics: Sequence[str], keys: Path) -> str:
    """The command that load-tests the hub nodes, sampling each node's /metrics (on a port
    of its own, not beside the node's: ``--metrics`` cannot be left to its default)."""
    return shlex.join(["opshub", "load", "--hub", ",".join(hub_urls), "--metrics",
                       ",".join(metrics), "--keys", str(keys)])


def cmd_cluster_up(args: argparse.Namespace) -> int:
    if args.servers < 1:
        raise UsageError(f"--servers {args.servers}: at least 1")
    if args.hubs < 0:
        raise UsageError(f"--hubs {args.hubs}: 0 or more")
    ready_file: Path | None = args.ready_file
    if ready_file is not None and not os.access(ready_file.parent, os.W_OK):
        raise UsageError(f"cannot write the ready file in {ready_file.parent}/: no such "
                         f"folder, or not writable")
    keys: Path = args.keys
    if key_folder(keys):
        print(f"opshub cluster: created the key folder {keys}/ (an authority and "
              f"{len(DEFAULT_ROSTER)} units)", flush=True)
    if args.data is not None:
        args.data.mkdir(parents=True, exist_ok=True)
    # SIGTERM stops us as Ctrl-C does: what was started is stopped on the way out
    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, _interrupt), (signal.SIGINT, signal.default_int_handler))}
    try:
        with NatsCluster(args.data, servers=args.servers, keep=args.keep) as cluster, \
                HubProcesses(keys, cluster.urls, hubs=args.hubs) as hubs:
            info = _announce(cluster, hubs, keys)
            if ready_file is not None:
                write_ready(ready_file, info)
            try:
                _watch(cluster, hubs)
            except KeyboardInterrupt:
                # a second Ctrl-C would leave the servers half-stopped
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                print("\nopshub cluster: stopping", flush=True)
            finally:
                if ready_file is not None:
                    ready_file.unlink(missing_ok=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    kept = args.data is not None or args.keep
    print(f"opshub cluster: stopped {len(hubs.nodes)} hub nodes and {len(cluster.servers)} "
          f"NATS servers" + (f"; their data is in {cluster.folder}" if kept else ""),
          flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _announce(cluster: NatsCluster, hubs: HubProcesses, keys: Path) -> dict[str, Any]:
    """Print where everything is; return the same as the ready file's JSON."""
    replicas = min(3, len(cluster.servers))
    print(f"opshub cluster: {len(cluster.servers)} NATS servers with JetStream (R{replicas}, "
          f"cluster {CLUSTER_NAME!r}), data in {cluster.folder}")
    for s in cluster.servers:
        print(f"  {s.name}  {s.url}  monitoring {s.monitoring}  log {s.log}")
    print(f"{len(hubs.nodes)} hub nodes (opshub serve --store {hubs.store}):")
    for i, node in enumerate(hubs.nodes):
        print(f"  hub-{i}  WebSocket {node.url}  HTTP {node.http}  metrics {node.metrics}")
    if hubs.nodes:
        print("replay an operation over them (its agents spread over the nodes):")
        print(f"  {replay_command(hubs.urls, keys)}")
        print("load-test them (the hub figures summed over every node's /metrics):")
        print(f"  {load_command(hubs.urls, hubs.metrics, keys)}")
    print("Ctrl-C stops everything.", flush=True)
    return {"nats": cluster.urls, "monitoring": [s.monitoring for s in cluster.servers],
            "nats_pids": [s.proc.pid for s in cluster.servers if s.proc is not None],
            "hubs": [{"url": n.url, "http": n.http, "metrics": n.metrics, "pid": n.pid}
                     for n in hubs.nodes],
            "store": hubs.store, "keys": str(keys), "data": str(cluster.folder),
            "replay": replay_command(hubs.urls, keys) if hubs.nodes else None,
            "load": load_command(hubs.urls, hubs.metrics, keys) if hubs.nodes else None,
            "pid": os.getpid()}


def _watch(cluster: NatsCluster, hubs: HubProcesses) -> None:
    """Run until interrupted, saying once when a server or a hub node exits (someone may be
    killing them on purpose, to watch a failover: that is no reason to stop)."""
    seen: set[int] = set()
    while True:
        time.sleep(0.5)
        for s in cluster.servers:
            if s.proc is not None and s.proc.pid not in seen and s.proc.poll() is not None:
                seen.add(s.proc.pid)
                print(f"opshub cluster: {s.name} exited with status {s.proc.returncode}; "
                      f"its log says: {s.log_says()}", flush=True)
        for i, node in enumerate(hubs.nodes):
            if node.pid not in seen and node.proc.poll() is not None:
                seen.add(node.pid)
                print(f"opshub cluster: hub-{i} exited with status {node.proc.returncode}",
                      flush=True)
