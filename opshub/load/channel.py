"""Channel: one end of a multiprocessing pipe between load processes, read by the event
loop (``add_reader``) so that waiting for the other side never blocks the loop."""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection
from typing import Any


class ChannelClosed(Exception):
    """The process at the other end has gone (its end of the pipe closed)."""


class _Eof:
    pass


class Channel:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._queue.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            self._stop_reading()
            self._queue.put_nowait(_Eof())

    def _stop_reading(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.conn.fileno())
            self._loop = None

    async def recv(self) -> Any:
        """The next message. Raises ChannelClosed once the other end has gone."""
        item = await self._queue.get()
        if isinstance(item, _Eof):
            self._queue.put_nowait(item)  # for the next reader too
            raise ChannelClosed("the process at the other end of the pipe has gone")
        return item

    def send(self, message: object) -> None:
        """Send a message (pickled). Raises ChannelClosed if the other end has gone."""
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
            raise ChannelClosed(f"the process at the other end of the pipe has gone ({exc})"
                                ) from None

    def close(self) -> None:
        self._stop_reading()
        self.conn.close()
