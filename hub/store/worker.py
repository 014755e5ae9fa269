"""Runs a Store with group commit: a blocking one (SQLite) off the event loop, an async
one (JetStream) on it.

Commands submitted while a batch is in flight wait and go together in the next one:
under load each batch (and fsync) carries hundreds of appends, with no per-message
commit; when idle, a lone command goes at once. Results come back on the event loop,
in order, through each submitter's callback. An async store may fail single commands
of a batch (it has no transaction across them): each submitter then hears of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from protocol.errors import StoreError
from protocol.store import AsyncStore, Command, DirectedEntry, LogEntry, Result, Store

log = logging.getLogger("opshub.store")

OnDone = Callable[[list[Result] | StoreError], None]


class StoreWorker:
    """One writer thread (group commit) and one reader thread around a Store."""

    def __init__(self, store: Store | AsyncStore, *, max_batch: int = 8192,
                 max_pending: int = 65536) -> None:
        self.store = store
        self.is_async = inspect.iscoroutinefunction(store.apply)
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
        fut: asyncio.Future[list[Result | StoreError]]
        if self.is_async:
            fut = asyncio.ensure_future(cast(AsyncStore, self.store).apply(commands))
        else:
            apply = cast(Callable[[list[Command]], list[Result | StoreError]], self.store.apply)
            fut = loop.run_in_executor(self._writer, apply, commands)
        fut.add_done_callback(lambda f: self._finish(batch, f, started))

    def _finish(self, batch: list[tuple[list[Command], OnDone]],
                fut: asyncio.Future[list[Result | StoreError]], started: float) -> None:
        self._inflight = False
        self.transactions += 1
        self.commit_seconds += time.perf_counter() - started
        exc = fut.exception()
        if exc is None:
            results = fut.result()
            self.commands += len(results)
            i = 0
            for cmds, on_done in batch:
                mine = results[i : i + len(cmds)]
                failed = next((r for r in mine if isinstance(r, StoreError)), None)
                self._call(on_done, failed if failed is not None else mine)  # type: ignore[arg-type]
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
        if self.is_async:
            return await cast(AsyncStore, self.store).read_log(op, after, limit)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, cast(Store, self.store).read_log, op, after, limit)

    async def pending_directed(self, recipient: str, limit: int) -> list[DirectedEntry]:
        if self.is_async:
            return await cast(AsyncStore, self.store).pending_directed(recipient, limit)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, cast(Store, self.store).pending_directed, recipient, limit)

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        if self.is_async:
            await cast(AsyncStore, self.store).close()
        else:
            cast(Store, self.store).close()
