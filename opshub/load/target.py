"""The hub under test: one the load run starts (``opshub serve`` in a child process, as the
bench does, with keys and database in a temporary folder) or a running one (``--hub URL
--keys DIR``: the run's units are enrolled with credentials the folder's authority signs),
or the nodes of one cluster (``--hub URL,URL...``); over TLS, a wss:// hub checked against
``--tls-ca``, or a started hub with a certificate of a fresh local CA (``--tls``). Also
what the run asks of it: the operations, and samples of its /metrics (of every node, added
up), read from each node's metrics listener (hub/config.py metrics_port): the one the
started hub's ready file names, or ``--metrics`` (by default each hub URL's port + 1).

Everything the run creates is in the temporary folder, removed at the end unless ``keep``;
on a running hub only the run's operations stay (a hub has no way to delete one).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from client.connection import AgentConnection
from client.identity import KeyFolder, UnitSpec
from client.membership import OperationAdmin
from client.tls import client_context
from opshub.hubapi import HubNodes, hub_url_list, registrar, ws_url
from opshub.hubprocess import HubProcess
from opshub.identities import Cast, cast, open_folder, own_identities
from opshub.load.plan import run_operations
from opshub.tls import trust, write_tls_folder
from protocol.errors import UsageError

#: The /metrics families a run samples, by the name the series gives them.
SAMPLED = {
    "cpu_s": "opshub_process_cpu_seconds_total",
    "rss_mb": "opshub_process_resident_memory_bytes",
    "connections": "opshub_connections",
    "queue_bytes": "opshub_outbound_queue_bytes",
    "queue_bytes_max": "opshub_outbound_queue_bytes_max",
    "store_pending": "opshub_store_pending_commands",
    "slow_consumers": "opshub_slow_consumers_total",
    "fell_behind": "opshub_subscribers_fell_behind_total",
    "caught_up": "opshub_subscribers_caught_up_total",
}


@dataclass
class Target:
    #: the hub's WebSocket URL, or its nodes' (the units are spread over them)
    urls: list[str]
    cast: Cast
    operations: list[str]
    hub: HubProcess | None
    folder: Path
    #: the base URL of each node's /metrics listener (http://HOST:PORT), as ``urls``
    metrics: list[str]
    #: wss://: the CA file the hub's certificate is checked against (None: the system's)
    tls_ca: Path | None = None

    @property
    def started(self) -> bool:
        return self.hub is not None

    def ssl(self) -> SSLContext | None:
        """What checks the hub's certificate (None: the system's CAs, or no TLS)."""
        return None if self.tls_ca is None else client_context(self.tls_ca)


def metrics_urls(given: Sequence[str] | None, hubs: Sequence[str]) -> list[str]:
    """The base URLs of the /metrics listeners of the hub nodes ``hubs`` (WebSocket URLs):
    ``given`` (``--metrics``: one URL, comma-separated URLs, or several of either; one per
    hub node, in the same order), or by default each hub URL's host at its port + 1 over
    http://, where ``opshub serve`` listens unless told otherwise. Raises UsageError for a
    URL that is not http(s)://HOST:PORT, or a count unlike the hub nodes'."""
    if not given:
        return [_beside(url) for url in hubs]
    urls = [_metrics_base(u.strip()) for text in given for u in text.split(",") if u.strip()]
    if len(urls) != len(hubs):
        raise UsageError(f"--metrics names {len(urls)} URL(s) for {len(hubs)} hub node(s): "
                         f"give one per --hub URL, in the same order")
    return urls


def _beside(url: str) -> str:
    """http://HOST:PORT+1 of the hub whose WebSocket URL is ``url``."""
    parts = urlsplit(ws_url(url))
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    host = parts.hostname or ""
    return f"http://{f'[{host}]' if ':' in host else host}:{port + 1}"


def _metrics_base(url: str) -> str:
    """``url`` as the base URL of a metrics listener (a trailing /metrics dropped)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or \
            parts.path.rstrip("/") not in ("", "/metrics"):
        raise UsageError(f"--metrics {url!r} is not the URL of a hub's metrics listener "
                         f"(expected http://HOST:PORT)")
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


@contextlib.asynccontextmanager
async def open_target(specs: Sequence[UnitSpec], operations: int, *,
                      hub_url: str | Sequence[str] | None, keys: Path | None, keep: bool,
                      db: Path | None = None, tls_ca: Path | None = None,
                      tls: bool = False, metrics: Sequence[str] | None = None
                      ) -> AsyncIterator[Target]:
    """The hub to load, with ``specs`` enrolled and ``operations`` ids of the run's own;
    ``tls_ca``: the CA of a wss:// hub's certificate; ``tls``: the started hub serves TLS;
    ``metrics``: the running hub's metrics listeners (metrics_urls). Raises UsageError (key
    folder, hub not there, credential refused, CA file, a metrics URL), TlsError (the hub's
    certificate does not verify)."""
    folder = Path(tempfile.mkdtemp(prefix="opshub-load-"))
    hub: HubProcess | None = None
    try:
        if hub_url is None:
            chosen = cast(specs, now=int(time.time()))
            KeyFolder(folder / "keys").write(chosen.authority, list(chosen.identities.values()))
            files = write_tls_folder(folder / "tls") if tls else None
            hub = HubProcess(folder / "keys", db or folder / "load.db", tls=files)
            target = Target([hub.url], chosen, run_operations(set(), operations), hub,
                            folder, [hub.metrics], None if files is None else files.ca)
        else:
            if keys is None:
                raise UsageError("--hub needs --keys: the key folder of that hub's authority")
            listeners = metrics_urls(metrics, hub_url_list(hub_url))
            target = await _join(hub_url, keys, specs, operations, folder, tls_ca, listeners)
        yield target
    finally:
        if hub is not None:
            hub.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


async def _join(url: str | Sequence[str], keys: Path, specs: Sequence[UnitSpec],
                operations: int, folder: Path, tls_ca: Path | None,
                metrics: list[str]) -> Target:
    kf = open_folder(keys, authority_key=True)
    own = own_identities(kf, specs)
    signer = registrar(kf.authority(), now=int(time.time()))
    async with HubNodes(url, signer, ssl=trust(hub_url_list(url), tls_ca)) as nodes:
        on_file = {u: c.credential.issued_at for u, c in (await nodes.directory()).items()}
        chosen = cast(specs, now=int(time.time()), folder=kf, own=own, on_file=on_file)
        await nodes.enroll(chosen.identities.values())
        ops = run_operations(await nodes.operations(), operations)
        return Target(nodes.urls, chosen, ops, None, folder, metrics, tls_ca)


async def create_operations(target: Target, admin: str,
                            members: dict[str, tuple[str, ...]]) -> None:
    """``admin`` creates each operation with its members. Raises RequestError if the hub
    refuses one."""
    ident = target.cast.identities
    async with AgentConnection(target.urls, ident[admin], ssl=target.ssl()) as conn:
        for op, units in members.items():
            chain = OperationAdmin(ident[admin], op, now=time.time)
            await chain.send(conn, chain.create(f"load {op}",
                                                [ident[u].signed for u in units]))


class MetricsSampler:
    """Reads the /metrics of every node of the hub (all of them: each node's CPU, memory,
    connections and queues are its own) and adds them up; a failed read gives an empty
    sample, never an error. One node failing empties the whole sample: a sum with a node
    missing would make the counters and the CPU seem to jump back."""

    def __init__(self, metrics: Sequence[str], ssl: SSLContext | None = None) -> None:
        """``metrics``: the base URL of each node's metrics listener (Target.metrics)."""
        self.urls = [f"{url}/metrics" for url in metrics]
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=2.0),
            connector=aiohttp.TCPConnector(ssl=True if ssl is None else ssl))
        self.failures = 0

    async def sample(self) -> dict[str, float]:
        texts = await asyncio.gather(*(self._read(url) for url in self.urls))
        if any(text is None for text in texts):
            self.failures += 1
            return {}
        return add_up([parse_metrics(text) for text in texts if text is not None])

    async def _read(self, url: str) -> str | None:
        try:
            async with self._http.get(url) as resp:
                return await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def close(self) -> None:
        await self._http.close()


def parse_metrics(text: str) -> dict[str, float]:
    """The SAMPLED families of a Prometheus text page (RSS in MiB)."""
    wanted = {v: k for k, v in SAMPLED.items()}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            try:
                out[wanted[name]] = float(value)
            except ValueError:
                continue
    if "rss_mb" in out:
        out["rss_mb"] = round(out["rss_mb"] / 2**20, 1)
    return out


def add_up(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    """The samples of several nodes as one hub's: each family summed, but the largest
    outbound queue, which stays the largest."""
    out: dict[str, float] = {}
    for sample in samples:
        for key, value in sample.items():
            held = out.get(key)
            out[key] = (value if held is None
                        else max(held, value) if key == "queue_bytes_max" else held + value)
    if "rss_mb" in out:
        out["rss_mb"] = round(out["rss_mb"], 1)
    return out
