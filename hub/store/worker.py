"""Runs a blocking Store off the event loop, with group commit.

Commands submitted while a transaction is in flight wait and go together in the
next one: under load each transaction (and fsync) carries hundreds of appends,
with no per-message commit; when idle, a lone command commits at once. Results
come back on the event loop, in commit order, through each submitter's callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from protocol.errors import StoreError
from protocol.store import Command, DirectedEntry, LogEntry, Result, Store

log = logging.getLogger("opshub.store")

OnDone = Callable[[list[Result] | StoreError], None]


class StoreWorker:
    """One writer thread (group commit) and one reader thread around a Store."""

    def __init__(self, store: Store, *, max_batch: int = 8192, max_pending: int = 65536) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="opshub-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="opshub-reader")
        self._pending: deque[tuple[list[Command], OnDone]] = deque()
        self._pending_count = 0
        self._inflight = False
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Called on the loop once per transaction, after every submitter's callback:
        #: the broker's fan-out, so a transaction becomes one write per connection.
        self.after_commit: Callable[[], None] | None = None
        self.transactions = 0
        self.commands = 0
        self.commit_seconds = 0.0

    @property
    def pending(self) -> int:
        return self._pending_count

    def submit(self, commands: list[Command], on_done: OnDone) -> None:
        """Queue commands for the next transaction; ``on_done`` runs on the loop after it."""
        self._pending.append((commands, on_done))
        self._pending_count += len(commands)
        self._idle.clear()
        if self._pending_count >= self.max_pending:
            self._room.clear()
        if not self._inflight:
            self._start()

    async def wait_for_room(self) -> None:
        """Backpressure for readers: returns once the pending queue is under its limit."""
        await self._room.wait()

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        await self._idle.wait()

    def _start(self) -> None:
        batch: list[tuple[list[Command], OnDone]] = []
        count = 0
        while self._pending and (count == 0 or count + len(self._pending[0][0]) <= self.max_batch):
            item = self._pending.popleft()
            batch.append(item)
            count += len(item[0])
        self._pending_count -= count
        if self._pending_count < self.max_pending:
            self._room.set()
        commands = [c for cmds, _ in batch for c in cmds]
        self._inflight = True
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        fut = loop.run_in_executor(self._writer, self.store.apply, commands)
        fut.add_done_callback(lambda f: self._finish(batch, f, started))

    def _finish(self, batch: list[tuple[list[Command], OnDone]],
                fut: asyncio.Future[list[Result]], started: float) -> None:
        self._inflight = False
        self.transactions += 1
        self.commit_seconds += time.perf_counter() - started
        exc = fut.exception()
        if exc is None:
            results = fut.result()
            self.commands += len(results)
            i = 0
            for cmds, on_done in batch:
                self._call(on_done, results[i : i + len(cmds)])
                i += len(cmds)
        else:
            err = exc if isinstance(exc, StoreError) else StoreError(f"store failed: {exc}")
            log.error("transaction of %d commands failed: %s", len(batch), err)
            for _, on_done in batch:
                self._call(on_done, err)
        if self.after_commit is not None:
            self._call_hook(self.after_commit)
        if self._pending:
            self._start()
        else:
            self._idle.set()

    @staticmethod
    def _call(on_done: OnDone, arg: list[Result] | StoreError) -> None:
        try:
            on_done(arg)
        except Exception:  # one submitter's bug must not stall every other one
            log.exception("store completion callback failed")

    @staticmethod
    def _call_hook(hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:
            log.exception("after-commit hook failed")

    async def read_log(self, op: str, after: int, limit: int) -> list[LogEntry]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self.store.read_log, op, after, limit)

    async def pending_directed(self, recipient: str, limit: int) -> list[DirectedEntry]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, self.store.pending_directed, recipient, limit)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self.store.close()
