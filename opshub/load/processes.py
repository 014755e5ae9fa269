"""Workers: the load processes of a run (``spawn``ed, each running worker.py) and their
channels, as the parent sees them: ticks go into the Series, every other message into an
inbox that ``collect`` reads; a process that fails or exits early raises OpshubError.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
from collections.abc import Sequence
from typing import TypeVar

from client.connection import rotated
from opshub.load import messages as m
from opshub.load.channel import Channel, ChannelClosed
from opshub.load.e2ee import E2eeConfig
from opshub.load.plan import Assignment
from opshub.load.series import Series
from opshub.load.target import Target
from opshub.load.worker import WorkerConfig, worker_main
from protocol.errors import OpshubError

log = logging.getLogger("opshub.load")
M = TypeVar("M")


def spread(urls: Sequence[str], assignments: Sequence[Assignment]
           ) -> dict[str, tuple[str, ...]]:
    """Unit -> the hub URLs it connects to, in the order it tries them: the units are
    spread over the nodes round robin across the processes (the k-th unit of the
    assignments first tries node k mod n, then the others in turn)."""
    units = dict.fromkeys(u for a in assignments for u in a.units)
    return {u: rotated(urls, k) for k, u in enumerate(units)}


class Workers:
    """The load processes and their channels."""

    def __init__(self, urls: list[str], assignments: list[Assignment], target: Target,
                 max_inflight: int, e2ee: E2eeConfig | None = None) -> None:
        """``urls``: the hub's, or its nodes' (the units are spread over them: ``spread``)."""
        ctx = mp.get_context("spawn")
        self.assignments = assignments
        self.procs: list[mp.process.BaseProcess] = []
        self.chans: list[Channel] = []
        self.pids: dict[int, int] = {}
        self.inbox: asyncio.Queue[m.FromWorker] = asyncio.Queue()
        self.ticked = asyncio.Event()  # a tick came in
        self.reported: set[int] = set()  # processes whose Result came in
        self.stopping = False
        ids = target.cast.identities
        hubs = spread(urls, assignments)
        for a in assignments:
            parent, child = ctx.Pipe()
            config = WorkerConfig({u: hubs[u] for u in a.units}, a,
                                  {u: ids[u].to_json() for u in a.units}, max_inflight,
                                  None if e2ee is None else e2ee.for_units(a.units),
                                  target.tls_ca)
            proc = ctx.Process(target=worker_main, args=(config, child), daemon=True,
                               name=f"opshub-load-{a.role}-{a.index}")
            proc.start()
            child.close()
            self.procs.append(proc)
            self.chans.append(Channel(parent))

    def indexes(self, role: str) -> list[int]:
        """The processes that run publishers (``role`` "publishers") or subscribers; with
        --e2ee a subscriber process may publish too (a unit that does both)."""
        return [a.index for a in self.assignments
                if (a.publishers if role == "publishers" else a.subscribers)]

    def send(self, message: m.ToWorker, to: list[int] | None = None) -> None:
        for i in range(len(self.chans)) if to is None else to:
            self.chans[i].send(message)

    async def pump(self, index: int, series: Series) -> None:
        """Ticks into the series, the rest into the inbox; raises if the process fails."""
        chan = self.chans[index]
        chan.start()
        while True:
            try:
                msg: m.FromWorker = await chan.recv()
            except ChannelClosed:
                if self.stopping or index in self.reported:
                    return  # it sent its Result: its end closed after it
                self.procs[index].join(1.0)
                raise OpshubError(f"load process {index} exited (status "
                                  f"{self.procs[index].exitcode})") from None
            if isinstance(msg, m.Tick):
                series.add(msg)
                self.ticked.set()
            elif isinstance(msg, m.Failed):
                log.info("load process %d failed:\n%s", index, msg.reason)
                raise OpshubError(f"load process {index} failed: "
                                  f"{msg.reason.splitlines()[0]}")
            else:
                if isinstance(msg, m.Ready):
                    self.pids[index] = msg.pid
                elif isinstance(msg, m.Result):
                    self.reported.add(index)
                self.inbox.put_nowait(msg)

    async def collect(self, kind: type[M], frm: list[int], within: float, what: str
                      ) -> list[M]:
        """One message of ``kind`` from each process in ``frm``. Raises OpshubError if they
        are not all in ``within`` seconds."""
        got: dict[int, M] = {}
        try:
            async with asyncio.timeout(within):
                while len(got) < len(frm):
                    msg = await self.inbox.get()
                    if isinstance(msg, kind):
                        got[msg.worker] = msg
        except TimeoutError:
            missing = sorted(set(frm) - set(got))
            raise OpshubError(f"load process(es) {missing} did not {what} within "
                              f"{within:g} s") from None
        return [got[i] for i in frm]

    def close(self) -> None:
        self.stopping = True
        for proc in self.procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for chan in self.chans:
            chan.close()
