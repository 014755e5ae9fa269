"""Hub counters and gauges, rendered in the Prometheus text exposition format."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.router_io import Counts


@dataclass(slots=True)
class Metrics:
    connections: int = 0
    connections_total: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    slow_consumers: int = 0
    #: the router's counters (messages, duplicates, deliveries, error frames by code)
    counts: Counts = field(default_factory=Counts)
    #: requests and connections refused before any frame, by reason (hub/guard.py, hub/api.py)
    rejected: dict[str, int] = field(default_factory=dict)
    #: Callables read at scrape time (queue depths, store counters).
    gauges: dict[str, tuple[str, Callable[[], float]]] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def render(self) -> str:
        lines: list[str] = []

        def emit(name: str, kind: str, help_: str, value: float,
                 labels: str = "") -> None:
            if not any(line.startswith(f"# TYPE opshub_{name} ") for line in lines):
                lines.append(f"# HELP opshub_{name} {help_}")
                lines.append(f"# TYPE opshub_{name} {kind}")
            lines.append(f"opshub_{name}{labels} {value}")

        emit("connections", "gauge", "Open WebSocket connections.", self.connections)
        emit("connections_total", "counter", "Connections accepted.", self.connections_total)
        emit("frames_in_total", "counter", "Frames received.", self.frames_in)
        emit("bytes_in_total", "counter", "WebSocket payload bytes received.", self.bytes_in)
        emit("bytes_out_total", "counter", "WebSocket payload bytes sent.", self.bytes_out)
        emit("messages_in_total", "counter", "Messages appended to operation logs.",
             self.counts.messages_in)
        emit("duplicates_total", "counter", "Publishes answered from an earlier copy.",
             self.counts.duplicates)
        emit("deliveries_total", "counter", "Log entries delivered to subscribers.",
             self.counts.deliveries)
        emit("slow_consumers_total", "counter", "Connections closed for reading too slowly.",
             self.slow_consumers)
        emit("subscribers_fell_behind_total", "counter", "Live subscriptions that left the "
             "live path for the store (their queue was full).", self.counts.fell_behind)
        emit("subscribers_caught_up_total", "counter", "Subscriptions that read the store up "
             "to the head and went live again.", self.counts.caught_up)
        emit("catchup_pages_total", "counter", "Pages of the log read from the store for "
             "subscriptions catching up.", self.counts.catchup_pages)
        for code, n in sorted(self.counts.errors.items()):
            emit("errors_total", "counter", "Error frames sent, by code.", n,
                 f'{{code="{code}"}}')
        for reason, n in sorted(self.rejected.items()):
            emit("rejected_total", "counter", "Connections and HTTP requests refused before "
                 "any frame (limits per source, authentication, malformed), by reason.", n,
                 f'{{reason="{reason}"}}')
        for name, (help_, read) in sorted(self.gauges.items()):
            emit(name, "gauge", help_, read())
        # The process, so that a load test of a hub it did not start sees its cost too.
        emit("process_cpu_seconds_total", "counter",
             "User and system CPU time of the hub process (all threads), seconds.",
             round(time.process_time(), 3))
        emit("process_resident_memory_bytes", "gauge", "Resident memory of the hub process.",
             _resident_bytes())
        emit("process_peak_resident_memory_bytes", "gauge",
             "Peak resident memory of the hub process.", _peak_resident_bytes())
        return "\n".join(lines) + "\n"


def _peak_resident_bytes() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux


def _resident_bytes() -> float:
    """Now, from /proc (Linux); elsewhere the peak, which is all getrusage knows."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, IndexError, ValueError):
        return _peak_resident_bytes()
