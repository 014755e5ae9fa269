"""The result of a load run: the load processes' Results merged, delivery checked against
the heads, the steps, the thresholds judged; one JSON-ready dictionary.

Pure: everything comes in as data (results, series rows, hub samples, step outcomes).
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hdrh.histogram import HdrHistogram

from opshub.load import cpu, histograms
from opshub.load import messages as m
from opshub.load.spec import LoadOptions
from opshub.load.thresholds import Threshold, Verdict, evaluate


@dataclass
class Merged:
    """Every load process's Result added up."""

    counts: Counter[str] = field(default_factory=Counter)
    latency: HdrHistogram = field(default_factory=histograms.new)
    uncorrected: HdrHistogram = field(default_factory=histograms.new)
    ack_latency: HdrHistogram = field(default_factory=histograms.new)
    closes_by_code: Counter[int] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    catchup_s: list[float] = field(default_factory=list)
    missing: int = 0
    missing_directed: int = 0
    short: list[str] = field(default_factory=list)
    #: the Results themselves (cpu.py reads each process's CPU and crypto)
    processes: list[m.Result] = field(default_factory=list)

    @classmethod
    def of(cls, results: Sequence[m.Result]) -> Merged:
        out = cls()
        out.latency = histograms.merge(r.latency for r in results)
        out.uncorrected = histograms.merge(r.uncorrected for r in results)
        out.ack_latency = histograms.merge(r.ack_latency for r in results)
        for r in results:
            out.counts.update(r.counts)
            out.closes_by_code.update(r.closes_by_code)
            out.errors_by_kind.update(r.errors_by_kind)
            out.catchup_s += r.catchup_s
            out.missing += r.missing
            out.missing_directed += r.missing_directed
            out.short += r.short_subscribers
        out.processes = list(results)
        return out


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One step of a stepped run or of --find-max."""

    index: int
    rates: dict[str, float | None]
    offered_per_s: float
    seconds: float
    acked: int
    delivered: int
    errors: int
    latency_ms: dict[str, float]
    settled: bool = True
    verdicts: tuple[Verdict, ...] = ()

    @property
    def passed(self) -> bool:
        return self.settled and all(v.passed for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.index + 1, "rate_per_publisher": self.rates,
            "offered_per_s": round(self.offered_per_s, 1),
            "msgs_in_per_s": round(self.acked / self.seconds, 1),
            "deliveries_per_s": round(self.delivered / self.seconds, 1),
            "errors": self.errors, "latency_ms": self.latency_ms}
        if self.verdicts or not self.settled:
            out["settled"] = self.settled
            out["objective"] = [_verdict(v) for v in self.verdicts]
            out["passed"] = self.passed
        return out


def lookup(t: Threshold, *, latency: HdrHistogram, ack: HdrHistogram,
           figures: dict[str, float]) -> float:
    """The figure a threshold is about."""
    if not t.is_latency:
        return figures[t.metric]
    hist = ack if t.metric.startswith("ack_") else latency
    name = t.metric.removeprefix("ack_")
    if not hist.get_total_count():
        return 0.0
    if name == "max":
        return round(float(hist.get_max_value()) / 1000, 3)
    if name == "mean":
        return round(float(hist.get_mean_value()) / 1000, 3)
    p = t.percentile
    assert p is not None, t
    return histograms.percentile_ms(hist, p)


def options_json(opts: LoadOptions) -> dict[str, Any]:
    """The run's options but its shapes (those are described), JSON-ready: thresholds as
    written, paths and anything else unusual as text."""
    out: dict[str, Any] = {}
    for f in fields(opts):
        value = getattr(opts, f.name)
        if f.name == "shapes":
            continue
        if isinstance(value, tuple):
            value = [getattr(v, "text", str(v)) for v in value]
        elif not isinstance(value, bool | int | float | str | None):
            value = str(value)
        out[f.name] = value
    return out


def _verdict(v: Verdict) -> dict[str, Any]:
    return {"threshold": v.threshold.text, "actual": v.actual, "passed": v.passed}


def _catchup(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "total_s": 0.0, "max_s": 0.0}
    return {"count": len(values), "total_s": round(sum(values), 3),
            "max_s": round(max(values), 3)}


def build(opts: LoadOptions, merged: Merged, *, heads: dict[str, int],
          subscribers_of: dict[str, int], directed_owed: int, measured_s: float,
          measured: Counter[str], rows: list[dict[str, Any]], hub: dict[str, Any],
          steps: Sequence[StepOutcome], best: StepOutcome | None, broke: StepOutcome | None,
          unanswered: int, operations: list[str]) -> dict[str, Any]:
    """The run's result. ``measured`` holds the counts of the measured seconds."""
    c = merged.counts
    expected_log = sum(max(0, heads.get(op, 1) - 1) * n for op, n in subscribers_of.items())
    if opts.e2ee:  # the log holds commits too, and an agent skips its own: count the acks
        expected_log = c[m.EXPECTED]
    received = c[m.DELIVERED] + c[m.DIRECTED_DELIVERED]
    lost = merged.missing + merged.missing_directed
    errors = c[m.ERRORS] + unanswered
    figures = {
        "errors": float(errors), "lost": float(lost), "gaps": float(c[m.GAPS]),
        "duplicates": float(c[m.DUPLICATES]), "closes": float(c[m.CLOSES]),
        "resumes": float(c[m.RESUMES]),
        "rate": round((measured[m.ACKED] + measured[m.DIRECTED_ACKED]) / measured_s, 1),
        "deliveries": round((measured[m.DELIVERED] + measured[m.DIRECTED_DELIVERED])
                            / measured_s, 1),
    }
    verdicts = evaluate(opts.thresholds, lambda t: lookup(
        t, latency=merged.latency, ack=merged.ack_latency, figures=figures))
    complete = lost == 0 and c[m.GAPS] == 0
    out: dict[str, Any] = {
        "ok": complete and errors == 0 and hub.get("exit_status") in (0, None),
        "thresholds_passed": all(v.passed for v in verdicts),
        "mode": "closed loop" if all(s.rate is None for s in opts.shapes) else "open loop",
        "shapes": [s.describe() for s in opts.shapes],
        "options": options_json(opts),
        "operations": operations,
        "measured_s": round(measured_s, 3), "warmup_s": opts.warmup,
        "messages": {"sent": c[m.SENT], "acked": c[m.ACKED],
                     "directed_sent": c[m.DIRECTED_SENT],
                     "directed_acked": c[m.DIRECTED_ACKED],
                     "unanswered": unanswered,
                     "msgs_in_per_s": figures["rate"],
                     "deliveries_per_s": figures["deliveries"]},
        "latency_ms": histograms.summary_ms(merged.latency),
        "latency_uncorrected_ms": histograms.summary_ms(merged.uncorrected),
        "ack_latency_ms": histograms.summary_ms(merged.ack_latency),
        "delivery": {"expected": expected_log + directed_owed, "received": received,
                     "lost": lost, "lost_directed": merged.missing_directed,
                     "gaps": c[m.GAPS], "duplicates": c[m.DUPLICATES],
                     "complete": complete, "short_subscribers": merged.short},
        "errors": {"total": errors, "by_kind": dict(merged.errors_by_kind)},
        "subscribers": {"closes": c[m.CLOSES],
                        "closes_by_code": {str(k): v for k, v in
                                           sorted(merged.closes_by_code.items())},
                        "resumes": c[m.RESUMES], "catchup": _catchup(merged.catchup_s)},
        "hub": hub,
        "cpu": cpu.summary(merged.processes, hub=hub,
                           acked=measured[m.ACKED] + measured[m.DIRECTED_ACKED],
                           delivered=measured[m.DELIVERED] + measured[m.DIRECTED_DELIVERED]),
        "thresholds": [_verdict(v) for v in verdicts],
        # the delivery latency histogram (HdrHistogram V2, base64; microseconds), for
        # merging with other runs' (``opshub load merge``)
        "histogram": histograms.encode(merged.latency).decode(),
        # the other two, for the report's latency spectrum
        "histogram_uncorrected": histograms.encode(merged.uncorrected).decode(),
        "histogram_ack": histograms.encode(merged.ack_latency).decode(),
        "steps": [s.to_json() for s in steps],
        "series": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    if opts.find_max:
        out["find_max"] = {
            "objective": [t.text for t in opts.slo],
            "highest_sustainable": best.to_json() if best else None,
            "broke_at": broke.to_json() if broke else None,
        }
    return out
