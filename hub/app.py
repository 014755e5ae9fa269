"""Composes a hub: store, worker, broker, aiohttp app; runs it and shuts it down cleanly.

``RunningHub`` is an async context manager (tests, demo, bench); ``serve`` runs one
until SIGINT/SIGTERM. Shutdown order: stop accepting, tell every agent
"going away" after its queued frames, wait for in-flight transactions, save
cursors, close the store. Every acknowledged message was committed before its ack,
so nothing acknowledged is lost whatever happens during shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
import time
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from hub import api
from hub.api_auth import ApiError
from hub.audit import AuditTrail, default_audit_path
from hub.broker import Broker
from hub.config import HubConfig
from hub.connection import ServerConnection
from hub.guard import HttpErrorLog, RejectLog, SourceGuard
from hub.metrics import Metrics
from hub.store.jetstream import JetStreamStore
from hub.store.sqlite import SQLiteStore
from hub.store.worker import StoreWorker
from hub.tls import server_context
from protocol.credentials import SignedCredential
from protocol.errors import CloseCode, Code, UsageError
from protocol.session import ServerSession

log = logging.getLogger("opshub.hub")

WS_PATH = "/v1/ws"


class Hub:
    """One hub process's parts, wired together."""

    def __init__(self, config: HubConfig, *, now: Callable[[], float] = time.time,
                 token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.config = config
        self.now = now
        self.token_bytes = token_bytes
        self.metrics = Metrics()
        self.store: SQLiteStore | JetStreamStore
        if config.store:
            self.store = JetStreamStore([u.strip() for u in config.store.split(",")],
                                        name=config.hub_id)
        else:
            self.store = SQLiteStore(config.db)
        self.worker = StoreWorker(self.store)
        audit = AuditTrail(config.audit_db or default_audit_path(config.db),
                           key_path=config.audit_key)
        self.broker = Broker(config, self.worker, now=now, metrics=self.metrics, audit=audit)
        self.rejects = RejectLog(config.reject_log_rate)
        self.guard = SourceGuard(config, self.metrics, self.rejects)
        self._opened = isinstance(self.store, SQLiteStore)
        if self._opened:
            self.broker.load()
        self.connections: set[ServerConnection] = set()
        self._cursor_task: asyncio.Task[None] | None = None
        m = self.metrics
        m.gauges["outbound_queue_bytes"] = (
            "Bytes queued for sending, summed over connections.",
            lambda: float(sum(c.queued_bytes for c in self.connections)))
        m.gauges["outbound_queue_bytes_max"] = (
            "Largest outbound queue of one connection, bytes.",
            lambda: float(max((c.queued_bytes for c in self.connections), default=0)))
        m.gauges["store_pending_commands"] = (
            "Commands waiting for the next transaction.", lambda: float(self.worker.pending))
        m.gauges["store_transactions"] = (
            "Transactions committed since start.", lambda: float(self.worker.transactions))
        m.gauges["store_commands"] = (
            "Commands committed since start (divide by transactions: group commit size).",
            lambda: float(self.worker.commands))
        m.gauges["store_commit_seconds"] = (
            "Seconds spent in transactions (writer thread, wall clock).",
            lambda: self.worker.commit_seconds)
        m.gauges["operations"] = ("Operations on this hub.",
                                  lambda: float(len(self.broker.router.ops)))

    async def open(self) -> None:
        """Connect to a JetStream store and load what it holds (SQLite loads at once)."""
        if not self._opened:
            await self.broker.open()
            self._opened = True

    def preload(self, credentials: list[SignedCredential]) -> None:
        """Enroll a roster of credentials (``opshub serve --roster``)."""
        for signed in credentials:
            self.broker.enroll(signed)

    def app(self) -> web.Application:
        app = web.Application()
        app[api.BROKER] = self.broker
        app[api.REJECTS] = self.rejects
        api.add_routes(app)
        app.router.add_get(WS_PATH, self._websocket)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        limits = self.config.limits
        if not self.guard.admit_handshake(request.remote or "?"):
            raise ApiError(429, Code.RATE_LIMITED,
                               f"too many WebSocket handshakes from {request.remote}: "
                               f"at most {self.config.handshake_rate:g} a second")
        # aiohttp's own limit sits above ours so that our codec reports the oversize
        # frame with an error frame; beyond twice the limit aiohttp closes with 1009.
        ws = web.WebSocketResponse(max_msg_size=2 * limits.max_frame, compress=False,
                                   heartbeat=30.0)
        await ws.prepare(request)
        session = ServerSession(
            hub_id=self.config.hub_id, ring=self.broker.router.ring, directory=self.broker.lookup,
            now=self.now, token_bytes=self.token_bytes, limits=limits,
            session_id=self.token_bytes(8).hex(),
            open_enrollment=self.config.open_enrollment)
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        try:
            async with asyncio.TaskGroup() as tasks:
                conn = ServerConnection(ws, session, self.broker, tasks, request.transport,
                                        self.rejects)
                self.connections.add(conn)
                tasks.create_task(conn.writer())
                try:
                    await conn.reader()
                finally:
                    self.connections.discard(conn)
        finally:
            self.metrics.connections -= 1
        return ws

    async def _on_startup(self, app: web.Application) -> None:
        self._cursor_task = asyncio.create_task(self._flush_cursors_periodically())

    async def _flush_cursors_periodically(self) -> None:
        """Housekeeping: save cursors, close connections that stopped reading."""
        timeout = self.config.slow_consumer_timeout
        while True:
            await asyncio.sleep(min(self.config.cursor_flush_interval, timeout / 2))
            self.broker.flush_cursors()
            now = time.monotonic()
            for conn in list(self.connections):
                # Also a connection closing after its queued frames: they may never go.
                if (not conn.closed and not conn.tearing_down
                        and conn.stalled_for(now) > timeout):
                    conn.abort_slow(f"took no bytes for {timeout:g} s, "
                                    f"{conn.waiting_bytes()} waiting")

    async def _on_shutdown(self, app: web.Application) -> None:
        for conn in list(self.connections):
            conn.close_soon(CloseCode.GOING_AWAY, Code.SHUTTING_DOWN, flush=True)

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._cursor_task is not None:
            self._cursor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cursor_task
        await self.worker.drain()
        self.broker.flush_cursors()
        await self.worker.drain()
        await self.worker.close()
        await asyncio.to_thread(self.broker.audit.close)


class RunningHub:
    """A hub listening on ``config.host``:``config.port`` (0 picks a free port), and its
    monitoring (/healthz, /metrics) on ``config.metrics_host``:``metrics_port``."""

    def __init__(self, config: HubConfig, **kwargs: Callable[..., object]) -> None:
        self.hub = Hub(config, **kwargs)  # type: ignore[arg-type]
        self._runner: web.AppRunner | None = None
        self._monitoring: web.AppRunner | None = None
        self.port = config.port
        self.metrics_port = config.metrics_port

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{self.hub.config.host}:{self.port}{WS_PATH}"

    @property
    def http(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.hub.config.host}:{self.port}"

    @property
    def metrics_http(self) -> str:
        """Where /healthz and /metrics are (plain http: they stay on a trusted network)."""
        return f"http://{self.hub.config.metrics_host}:{self.metrics_port}"

    @property
    def tls(self) -> bool:
        """Whether the hub listens with TLS (wss://, https://)."""
        return self.hub.config.tls_cert is not None

    async def start(self) -> RunningHub:
        """Listen. Raises OSError (the port is taken, a TLS file cannot be read) and
        ssl.SSLError (a TLS file that is not PEM, a key that does not match)."""
        config = self.hub.config
        context = None  # built first: a bad certificate or key fails before anything starts
        if config.tls_cert is not None:
            if config.tls_key is None:
                raise UsageError("a TLS certificate needs its key (tls_key)")
            context = server_context(config.tls_cert, config.tls_key)
        await self.hub.open()
        logger = HttpErrorLog(self.hub.rejects, self.hub.metrics)
        self._runner = web.AppRunner(self.hub.app(), handle_signals=False, access_log=None,
                                     shutdown_timeout=5.0, logger=logger)
        await self._runner.setup()
        assert self._runner.server is not None
        self.hub.guard.install(self._runner.server)
        site = web.TCPSite(self._runner, config.host, config.port, backlog=512,
                           ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        metrics_port = config.metrics_port
        if metrics_port is None:
            metrics_port = self.port + 1 if config.port else 0
        self._monitoring = web.AppRunner(api.monitoring_app(self.hub.broker),
                                         handle_signals=False, access_log=None, logger=logger)
        await self._monitoring.setup()
        await web.TCPSite(self._monitoring, config.metrics_host, metrics_port).start()
        self.metrics_port = self._monitoring.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._monitoring is not None:
            monitoring, self._monitoring = self._monitoring, None
            await monitoring.cleanup()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> RunningHub:
        return await self.start()

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running process on the hot path.

    Every decoded frame allocates many small lists; with the default thresholds the
    collector ran often enough to take ~10 % of the hub's CPU (py-spy, bench hub).
    Objects alive after start-up are frozen out of collection, and the young
    generation is collected every 50,000 allocations instead of every 700. Cycles
    are rare on the hot path, so memory stays bounded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)



async def serve(config: HubConfig, roster: list[SignedCredential] | None = None,
                ready: Callable[[RunningHub], None] | None = None) -> None:
    """Run a hub until SIGINT or SIGTERM, then shut it down cleanly."""
    running = RunningHub(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await running.hub.open()
        if roster:
            running.hub.preload(roster)
        await running.start()  # inside: a port in use still closes the store
        tune_gc()
        if ready is not None:
            ready(running)
        await stop.wait()
    finally:
        log.info("shutting down")
        await running.stop()
