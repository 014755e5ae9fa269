"""What keeps unauthenticated and malformed traffic cheap: limits per source address,
and a log of rejected requests that cannot be flooded.

``SourceGuard`` counts, per source address, the connections open and the new
connections and WebSocket handshakes per second (token buckets). A connection over a
limit is reset as soon as it is accepted, before any byte of it is read; a handshake over
its limit is answered 429 ``rate_limited``. Every refusal is counted in /metrics
(``opshub_rejected_total{reason=...}``).

``RejectLog`` writes one WARNING line per rejected request (no traceback: a rejected
request is the peer's fault, not the hub's), at most ``rate`` lines a second; beyond that
it counts, and the next line it writes says how many it left out. ``HttpErrorLog`` routes
aiohttp's own reports of requests it could not parse (bad request lines, headers too
long) there, and leaves every other exception (a bug in a handler) to the ordinary log
with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hub.config import HubConfig
from hub.metrics import Metrics

log = logging.getLogger("opshub.rejected")

#: Buckets of sources not seen for this long are forgotten (a full bucket is the default).
IDLE = 60.0


class Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` kept."""

    __slots__ = ("at", "tokens")

    def __init__(self, burst: float, at: float) -> None:
        self.tokens = burst
        self.at = at

    def take(self, rate: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RejectLog:
    """One WARNING line per rejected request, at most ``rate`` a second (see the module)."""

    def __init__(self, rate: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.now = now
        self._bucket = Bucket(max(1.0, rate), now())
        self.left_out = 0

    def warn(self, source: str | None, what: str) -> None:
        """``what``: the request and why it was rejected, one line."""
        if not self._bucket.take(self.rate, max(1.0, self.rate), self.now()):
            self.left_out += 1
            return
        more = f" ({self.left_out} more rejected requests not logged)" if self.left_out else ""
        self.left_out = 0
        log.warning("rejected %s from %s%s", " ".join(what.split())[:300], source or "?", more)


class HttpErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's request logger (``logger=`` of its request handler): an HTTP request it
    cannot parse becomes a RejectLog line; anything else goes on to ``opshub.http``."""

    def __init__(self, rejects: RejectLog, metrics: Metrics) -> None:
        super().__init__(logging.getLogger("opshub.http"), {})
        self.rejects = rejects
        self.metrics = metrics

    def _rejected(self, msg: object, args: tuple[Any, ...], exc_info: Any) -> bool:
        if not isinstance(exc_info, HttpProcessingError):
            return False
        source = str(args[0]) if args and "from %s" in str(msg) else None
        self.metrics.reject("http_malformed")
        self.rejects.warn(source, f"malformed HTTP request: {exc_info.message or exc_info}")
        return True

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        if not self._rejected(msg, args, exc_info):
            super().exception(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: object, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        # aiohttp reports a first request line that is not HTTP at all at debug level
        if not self._rejected(msg, args, exc_info):
            super().debug(msg, *args, exc_info=exc_info, **kw)


class SourceGuard:
    """Per-source limits on connections and handshakes (see the module)."""

    def __init__(self, config: HubConfig, metrics: Metrics, rejects: RejectLog, *,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.metrics = metrics
        self.rejects = rejects
        self.now = now
        self.open: dict[str, int] = {}
        self._connects: dict[str, Bucket] = {}
        self._handshakes: dict[str, Bucket] = {}
        self._admitted: dict[object, str] = {}  # request handler -> its source
        self._swept = now()

    def install(self, server: web.Server) -> None:
        """Count and limit the connections ``server`` (aiohttp's protocol factory) gets:
        its request handlers report each connection made and lost to it."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            source = _source(transport)
            if self.admit(source):
                self._admitted[handler] = source
            else:
                transport.abort()

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            source = self._admitted.pop(handler, None)
            if source is not None:
                self.release(source)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def admit(self, source: str) -> bool:
        """A new connection from ``source``: False (counted, logged) if over a limit."""
        config, now = self.config, self.now()
        self._sweep(now)
        reason = ""
        if self.open.get(source, 0) >= config.max_connections_per_source:
            reason = (f"connection: {config.max_connections_per_source} already open from "
                      "this address")
        elif not self._bucket(self._connects, source, config.connection_burst, now).take(
                config.connection_rate, config.connection_burst, now):
            reason = f"connection: more than {config.connection_rate:g} a second"
        if reason:
            self.metrics.reject("connection_limit")
            self.rejects.warn(source, reason)
            return False
        self.open[source] = self.open.get(source, 0) + 1
        return True

    def release(self, source: str) -> None:
        self.open[source] -= 1
        if not self.open[source]:
            del self.open[source]

    def admit_handshake(self, source: str) -> bool:
        """A WebSocket handshake from ``source``: False (counted, logged) if over its rate."""
        config, now = self.config, self.now()
        if self._bucket(self._handshakes, source, config.handshake_burst, now).take(
                config.handshake_rate, config.handshake_burst, now):
            return True
        self.metrics.reject("handshake_limit")
        self.rejects.warn(source, f"handshake: more than {config.handshake_rate:g} a second")
        return False

    @staticmethod
    def _bucket(buckets: dict[str, Bucket], source: str, burst: float, now: float) -> Bucket:
        bucket = buckets.get(source)
        if bucket is None:
            bucket = buckets[source] = Bucket(burst, now)
        return bucket

    def _sweep(self, now: float) -> None:
        """Forget idle sources' buckets, so that many addresses cost no lasting memory."""
        if now - self._swept < IDLE:
            return
        self._swept = now
        for buckets in (self._connects, self._handshakes):
            for source in [s for s, b in buckets.items() if now - b.at > IDLE]:
                del buckets[source]


def _source(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unix"
