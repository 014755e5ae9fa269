"""The hub under test: one the load run starts (``opshub serve`` in a child process, as the
bench does, with keys and database in a temporary folder) or a running one (``--hub URL
--keys DIR``: the run's units are enrolled with credentials the folder's authority signs),
or the nodes of one cluster (``--hub URL,URL...``); over TLS, a wss:// hub checked against
``--tls-ca``, or a started hub with a certificate of a fresh local CA (``--tls``). Also
what the run asks of it: the operations, and samples of its /metrics (of every node, added
up).

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

import aiohttp

from client.connection import AgentConnection
from client.identity import KeyFolder, UnitSpec
from client.membership import OperationAdmin
from client.tls import client_context
from opshub.hubapi import HubNodes, http_url, hub_url_list
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
    #: wss://: the CA file the hub's certificate is checked against (None: the system's)
    tls_ca: Path | None = None

    @property
    def started(self) -> bool:
        return self.hub is not None

    def ssl(self) -> SSLContext | None:
        """What checks the hub's certificate (None: the system's CAs, or no TLS)."""
        return None if self.tls_ca is None else client_context(self.tls_ca)


@contextlib.asynccontextmanager
async def open_target(specs: Sequence[UnitSpec], operations: int, *,
                      hub_url: str | Sequence[str] | None, keys: Path | None, keep: bool,
                      db: Path | None = None, tls_ca: Path | None = None,
                      tls: bool = False) -> AsyncIterator[Target]:
    """The hub to load, with ``specs`` enrolled and ``operations`` ids of the run's own;
    ``tls_ca``: the CA of a wss:// hub's certificate; ``tls``: the started hub serves TLS.
    Raises UsageError (key folder, hub not there, credential refused, CA file), TlsError
    (the hub's certificate does not verify)."""
    folder = Path(tempfile.mkdtemp(prefix="opshub-load-"))
    hub: HubProcess | None = None
    try:
        if hub_url is None:
            chosen = cast(specs, now=int(time.time()))
            KeyFolder(folder / "keys").write(chosen.authority, list(chosen.identities.values()))
            files = write_tls_folder(folder / "tls") if tls else None
            hub = HubProcess(folder / "keys", db or folder / "load.db", tls=files)
            target = Target([hub.url], chosen, run_operations(set(), operations), hub,
                            folder, None if files is None else files.ca)
        else:
            if keys is None:
                raise UsageError("--hub needs --keys: the key folder of that hub's authority")
            target = await _join(hub_url, keys, specs, operations, folder, tls_ca)
        yield target
    finally:
        if hub is not None:
            hub.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


async def _join(url: str | Sequence[str], keys: Path, specs: Sequence[UnitSpec],
                operations: int, folder: Path, tls_ca: Path | None) -> Target:
    kf = open_folder(keys, authority_key=True)
    own = own_identities(kf, specs)
    async with HubNodes(url, ssl=trust(hub_url_list(url), tls_ca)) as nodes:
        on_file = {u: c.credential.issued_at for u, c in (await nodes.directory()).items()}
        chosen = cast(specs, now=int(time.time()), folder=kf, own=own, on_file=on_file)
        await nodes.enroll(chosen.identities.values())
        ops = run_operations(await nodes.operations(), operations)
        return Target(nodes.urls, chosen, ops, None, folder, tls_ca)


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

    def __init__(self, urls: Sequence[str], ssl: SSLContext | None = None) -> None:
        self.urls = [f"{http_url(url)}/metrics" for url in urls]
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
