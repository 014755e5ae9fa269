"""The hub under test: one the load run starts (``opshub serve`` in a child process, as the
bench does, with keys and database in a temporary folder) or a running one (``--hub URL
--keys DIR``: the run's units are enrolled with credentials the folder's authority signs).
Also what the run asks of it: the operations, and samples of its /metrics.

Everything the run creates is in the temporary folder, removed at the end unless ``keep``;
on a running hub only the run's operations stay (a hub has no way to delete one).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from client.connection import AgentConnection
from client.identity import KeyFolder, UnitSpec
from client.membership import OperationAdmin
from opshub.hubapi import HubApi, http_url
from opshub.hubprocess import HubProcess
from opshub.identities import Cast, cast, open_folder, own_identities
from opshub.load.plan import run_operations
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
    url: str
    cast: Cast
    operations: list[str]
    hub: HubProcess | None
    folder: Path

    @property
    def started(self) -> bool:
        return self.hub is not None


@contextlib.asynccontextmanager
async def open_target(specs: Sequence[UnitSpec], operations: int, *, hub_url: str | None,
                      keys: Path | None, keep: bool, db: Path | None = None
                      ) -> AsyncIterator[Target]:
    """The hub to load, with ``specs`` enrolled and ``operations`` ids of the run's own.
    Raises UsageError (key folder, hub not there, credential refused)."""
    folder = Path(tempfile.mkdtemp(prefix="opshub-load-"))
    hub: HubProcess | None = None
    try:
        if hub_url is None:
            chosen = cast(specs, now=int(time.time()))
            KeyFolder(folder / "keys").write(chosen.authority, list(chosen.identities.values()))
            hub = HubProcess(folder / "keys", db or folder / "load.db")
            target = Target(hub.url, chosen, run_operations(set(), operations), hub, folder)
        else:
            if keys is None:
                raise UsageError("--hub needs --keys: the key folder of that hub's authority")
            target = await _join(hub_url, keys, specs, operations, folder)
        yield target
    finally:
        if hub is not None:
            hub.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


async def _join(url: str, keys: Path, specs: Sequence[UnitSpec], operations: int,
                folder: Path) -> Target:
    kf = open_folder(keys, authority_key=True)
    own = own_identities(kf, specs)
    async with HubApi(url) as api:
        on_file = {u: c.credential.issued_at for u, c in (await api.directory()).items()}
        chosen = cast(specs, now=int(time.time()), folder=kf, own=own, on_file=on_file)
        await api.enroll(chosen.identities.values())
        ops = run_operations(await api.operations(), operations)
        return Target(api.url, chosen, ops, None, folder)


async def create_operations(target: Target, admin: str,
                            members: dict[str, tuple[str, ...]]) -> None:
    """``admin`` creates each operation with its members. Raises RequestError if the hub
    refuses one."""
    ident = target.cast.identities
    async with AgentConnection(target.url, ident[admin]) as conn:
        for op, units in members.items():
            chain = OperationAdmin(ident[admin], op, now=time.time)
            await chain.send(conn, chain.create(f"load {op}",
                                                [ident[u].signed for u in units]))


class MetricsSampler:
    """Reads the hub's /metrics; a failed read gives an empty sample, never an error."""

    def __init__(self, url: str) -> None:
        self.url = f"{http_url(url)}/metrics"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        self.failures = 0

    async def sample(self) -> dict[str, float]:
        try:
            async with self._http.get(self.url) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.failures += 1
            return {}
        return parse_metrics(text)

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
