"""Recorder: what one load process has counted and measured, for its ticks and its result.

Pure (times are passed in). Latencies are recorded only for messages whose intended send
time falls in the measured window (after the warm-up); counts always, but a tick reports
only what happened since the previous one, and nothing before t_measure.
"""

from __future__ import annotations

from collections import Counter

from opshub.load import histograms
from opshub.load import messages as m


class Recorder:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.t_measure_ns = 2**63  # nothing is measured before Start
        self.totals: Counter[str] = Counter()
        self.interval: Counter[str] = Counter()
        self.latency = histograms.Recording()
        self.uncorrected = histograms.Recording()
        self.ack_latency = histograms.Recording()
        self._interval = histograms.Recording()
        self.errors_by_kind: Counter[str] = Counter()
        self.closes_by_code: Counter[int] = Counter()
        self.catchup_s: list[float] = []
        self.inflight = 0
        self.lag_ns = 0

    def count(self, name: str, n: int = 1) -> None:
        self.totals[name] += n
        self.interval[name] += n

    def error(self, kind: str) -> None:
        self.count(m.ERRORS)
        self.errors_by_kind[kind] += 1

    def close(self, code: int) -> None:
        self.count(m.CLOSES)
        self.closes_by_code[code] += 1

    def delivery(self, intended_ns: int, sent_ns: int, now_ns: int) -> None:
        """One message received (its latency counts if it was meant for the window)."""
        if intended_ns >= self.t_measure_ns:
            micros = (now_ns - intended_ns) // 1000
            self.latency.add(micros)
            self._interval.add(micros)
            self.uncorrected.add((now_ns - sent_ns) // 1000)

    def acked(self, intended_ns: int, now_ns: int) -> None:
        if intended_ns >= self.t_measure_ns:
            self.ack_latency.add((now_ns - intended_ns) // 1000)

    def start(self, t_measure_ns: int) -> None:
        self.t_measure_ns = t_measure_ns

    def tick(self, second: int) -> m.Tick:
        """What happened since the last tick (the first one: since t_measure)."""
        recording = self._interval
        tick = m.Tick(worker=self.worker, second=second, counts=dict(self.interval),
                      hist=histograms.encode(recording.histogram()) if recording.total else None,
                      inflight=self.inflight, lag_ms=round(self.lag_ns / 1e6, 3),
                      expected_total=self.totals[m.EXPECTED],
                      delivered_total=self.totals[m.DELIVERED]
                      + self.totals[m.DIRECTED_DELIVERED])
        self.interval.clear()
        if recording.total:
            self._interval = histograms.Recording()
        return tick

    def drop_interval(self) -> None:
        """Forget the counts of the warm-up (ticks start at t_measure)."""
        self.interval.clear()

    def result(self, *, missing: int = 0, missing_directed: int = 0,
               short: list[str] | None = None) -> m.Result:
        return m.Result(worker=self.worker, counts=dict(self.totals),
                        latency=histograms.encode(self.latency.histogram()),
                        uncorrected=histograms.encode(self.uncorrected.histogram()),
                        ack_latency=histograms.encode(self.ack_latency.histogram()),
                        closes_by_code=dict(self.closes_by_code),
                        errors_by_kind=dict(self.errors_by_kind),
                        catchup_s=list(self.catchup_s), missing=missing,
                        missing_directed=missing_directed, short_subscribers=short or [])
