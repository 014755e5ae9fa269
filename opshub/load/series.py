"""Series: the parent's view of a run as the ticks come in, per second and per step.

Pure. Each load process sends one Tick per second (counts and the latency histogram of
that second's deliveries); a second is final once every process has sent its tick for it
(a paused process sends late: its second is completed then). A step window (a --rate step
or a --find-max step) merges the ticks of its seconds into one histogram, so each step
has its own percentiles.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from opshub.load import histograms
from opshub.load import messages as m


@dataclass
class Second:
    second: int
    counts: Counter[str] = field(default_factory=Counter)
    hist: HdrHistogram | None = None
    reported: set[int] = field(default_factory=set)
    inflight: int = 0
    lag_ms: float = 0.0
    hub: dict[str, float] = field(default_factory=dict)
    p99_ms: float | None = None

    def row(self) -> dict[str, float | int | None]:
        c = self.counts
        return {"second": self.second, "sent": c[m.SENT] + c[m.DIRECTED_SENT],
                "acked": c[m.ACKED] + c[m.DIRECTED_ACKED],
                "delivered": c[m.DELIVERED] + c[m.DIRECTED_DELIVERED],
                "errors": c[m.ERRORS], "closes": c[m.CLOSES], "resumes": c[m.RESUMES],
                "p99_ms": self.p99_ms, "inflight": self.inflight, "lag_ms": self.lag_ms,
                **{f"hub_{k}": v for k, v in self.hub.items()}}


@dataclass
class Window:
    """The seconds ``first`` .. ``last`` (None: open) of one step."""

    index: int
    first: int
    last: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    hist: HdrHistogram = field(default_factory=histograms.new)

    def covers(self, second: int) -> bool:
        return second >= self.first and (self.last is None or second <= self.last)


class Series:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.seconds: dict[int, Second] = {}
        self.total = histograms.new()  # every tick so far: "p99 so far"
        self.counts: Counter[str] = Counter()
        self.windows: list[Window] = []
        self.newest = -1  # the highest second any process has reported
        #: worker -> (expected, delivered, in flight) as of its newest tick
        self.latest: dict[int, tuple[int, int, int]] = {}

    def add(self, tick: m.Tick) -> None:
        sec = self.seconds.setdefault(tick.second, Second(tick.second))
        sec.counts.update(tick.counts)
        sec.reported.add(tick.worker)
        sec.inflight += tick.inflight
        sec.lag_ms = max(sec.lag_ms, tick.lag_ms)
        self.counts.update(tick.counts)
        self.newest = max(self.newest, tick.second)
        self.latest[tick.worker] = (tick.expected_total, tick.delivered_total, tick.inflight)
        windows = [w for w in self.windows if w.covers(tick.second)]
        for w in windows:
            w.counts.update(tick.counts)
        if tick.hist is not None:
            hist = histograms.decode(tick.hist)
            self.total.add(hist)
            for w in windows:
                w.hist.add(hist)
            if sec.hist is None:
                sec.hist = histograms.new()
            sec.hist.add(hist)
        if len(sec.reported) >= self.workers:
            self._final(sec)

    def _final(self, sec: Second) -> None:
        """Every process has reported this second: keep its p99, drop its histogram."""
        if sec.hist is not None:
            sec.p99_ms = histograms.percentile_ms(sec.hist, 99)
            sec.hist = None

    def complete_through(self) -> int:
        """The highest second every earlier one of which is final (-1: none)."""
        s = -1
        while (sec := self.seconds.get(s + 1)) is not None and len(sec.reported) >= self.workers:
            s += 1
        return s

    def hub_sample(self, second: int, sample: dict[str, float]) -> None:
        self.seconds.setdefault(second, Second(second)).hub.update(sample)

    def open_window(self, index: int, first: int) -> Window:
        w = Window(index, first)
        self.windows.append(w)
        return w

    def rows(self) -> list[dict[str, float | int | None]]:
        for sec in self.seconds.values():
            self._final(sec)
        return [self.seconds[s].row() for s in sorted(self.seconds)]

    def settled(self) -> bool:
        """Nothing in flight and every delivery the acks owe received, as of the newest
        ticks (the warm-up included)."""
        expected = sum(e for e, _, _ in self.latest.values())
        delivered = sum(d for _, d, _ in self.latest.values())
        inflight = sum(i for _, _, i in self.latest.values())
        return inflight == 0 and delivered >= expected

    def last_rate(self) -> tuple[int, int]:
        """(acked, delivered) in the newest final second."""
        sec = self.seconds.get(self.complete_through())
        if sec is None:
            return 0, 0
        c = sec.counts
        return c[m.ACKED] + c[m.DIRECTED_ACKED], c[m.DELIVERED] + c[m.DIRECTED_DELIVERED]
