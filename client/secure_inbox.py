"""What a SecureAgent hands its application: the messages it decrypted (``Message``), in a
bounded queue (``Inbox``), and the entries it refused (``Rejected``).

Plain values: no keys, no I/O. A saved agent state (``client.secure_state``) lists what
waits in the inbox, so that a restart does not lose it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.messages.catalog import Problem


@dataclass(frozen=True, slots=True)
class Message:
    """A decrypted, signature-checked message, with its place in the operation's log."""

    op: str
    seq: int
    sender: str
    content_type: int
    content: bytes
    epoch: int
    #: the checked message (a dict) when content_type is MESSAGE
    body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A log entry or directed message this agent refused, and why."""

    op: str
    seq: int | None
    sender: str
    code: str
    reason: str
    problems: list[Problem] = field(default_factory=list)


class Inbox(asyncio.Queue[Message | None]):
    """Decrypted messages on their way to the application: those ``handing`` (waiting for
    room: the queue holds at most ``maxsize``), then those queued. None, once queued, says
    the agent stopped. ``unread_messages`` lists both kinds, for a saved state."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.handing: deque[Message] = deque()
        self._stopped = False

    def _init(self, maxsize: int) -> None:
        # asyncio.Queue's hook for subclasses (LifoQueue, PriorityQueue); its qsize(),
        # empty() and full() read self._queue
        self._queue: deque[Message | None] = deque()

    async def hand_over(self) -> None:
        """Queue what is in ``handing``; waits while the queue is full (backpressure). A
        message leaves ``handing`` only once it is queued, so that it is listed either way
        whenever this waits."""
        while self.handing:
            await self.put(self.handing[0])
            self.handing.popleft()

    def unread_messages(self) -> list[Message]:
        """The messages the application has not taken yet, in order."""
        return [*(m for m in self._queue if m is not None), *self.handing]

    @property
    def unread(self) -> int:
        """Messages queued for the application."""
        return self.qsize() - self._stopped

    def stop(self) -> None:
        """The agent stopped or closed: wake a reader, which then asks the agent why."""
        if not self._stopped and not self.full():  # full: nobody is waiting
            self._stopped = True
            self.put_nowait(None)

    async def take(self, check_running: Callable[[], None]) -> Message:
        """The next message; ``check_running`` raises why there is none to come."""
        if self.empty():
            check_running()
        m = await self.get()
        if m is None:
            self.put_nowait(None)  # for the next reader too
            check_running()
            raise AssertionError("the inbox says stopped, the agent does not")
        return m
