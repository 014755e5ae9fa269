"""Serving a browser tool (the exercise, the lesson) until Ctrl-C: the aiohttp app on its
address, the tool's runtime beside it, the ready file a test or script waits for, and
everything stopped in order on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol.errors import UsageError


@contextlib.asynccontextmanager
async def listening(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on host:port (0: any free port) and yield its base URL. Raises
    UsageError when it cannot listen there."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                             ) from None
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def run_until_stopped(work: Coroutine[Any, Any, None], finish: Callable[[], None],
                            stop: asyncio.Event, ready_file: Path | None,
                            ready: dict[str, Any]) -> None:
    """Run ``work`` until ``stop`` is set, then ``finish()`` it and wait for it to end.
    ``ready`` is written to ``ready_file`` (atomically) once ``work`` has started, and the
    file removed at the end."""
    try:
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(work)
            if ready_file is not None:
                write_ready(ready_file, ready)
            await stop.wait()
            finish()
            await running
    finally:
        if ready_file is not None:
            _remove(ready_file)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_ready(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM set ``stop`` (the tool then ends cleanly)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
