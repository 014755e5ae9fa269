"""k6-style thresholds and --find-max objectives: ``p99<50ms``, ``errors==0``, ``rate>=1000``.

Pure: parsing raises UsageError naming the expression and listing what is accepted;
evaluation takes the run's figures through a lookup function and never raises.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol.errors import UsageError

COUNTS = {
    "errors": "error frames, refused or failed requests, and failed connections",
    "lost": "deliveries missing at the end (log entries and directed messages)",
    "gaps": "deliveries that skipped a sequence number",
    "duplicates": "log entries delivered twice to one subscriber",
    "closes": "subscriber connections the hub closed or dropped",
    "resumes": "subscribers that reconnected and resumed",
}
RATES = {
    "rate": "messages acknowledged per second in the measured time",
    "deliveries": "deliveries per second in the measured time",
}
LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}

_EXPR = re.compile(r"\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.()]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
                   r"(?P<value>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>[a-z]*)\s*")
_PERCENTILE = re.compile(r"(?P<ack>ack_)?p\(?(?P<p>[0-9]+(?:\.[0-9]+)?)\)?")

ACCEPTED = ("METRIC OP VALUE with OP one of < <= > >= == !=; METRIC a latency (p50, p90, "
            "p99, p99.9, p99.99, any pNN, max, mean; ack_ before any of them for publish-to-"
            "ack) with VALUE in ms or with a unit us, ms, s; or a count (" + ", ".join(COUNTS)
            + "); or a rate per second (" + ", ".join(RATES) + ")")


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed expression; latency values are kept in milliseconds."""

    text: str
    metric: str  # "p99", "p99.9", "max", "mean", "ack_p99", "errors", "rate", ...
    op: str
    value: float

    @property
    def is_latency(self) -> bool:
        return self.metric not in COUNTS and self.metric not in RATES

    @property
    def percentile(self) -> float | None:
        """The percentile of a pNN metric, else None."""
        m = _PERCENTILE.fullmatch(self.metric)
        return float(m["p"]) if m else None

    def holds(self, actual: float) -> bool:
        return OPERATORS[self.op](actual, self.value)


@dataclass(frozen=True, slots=True)
class Verdict:
    threshold: Threshold
    actual: float
    passed: bool

    def line(self) -> str:
        unit = " ms" if self.threshold.is_latency else ""
        mark = "passed" if self.passed else "FAILED"
        return f"{mark:<7} {self.threshold.text:<22} actual {_fmt(self.actual)}{unit}"


def _fmt(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"


def parse_threshold(text: str, where: str = "--threshold") -> Threshold:
    """Parse one expression. Raises UsageError naming it and saying what is accepted."""
    m = _EXPR.fullmatch(text)
    if m is None:
        raise UsageError(f"{where} {text!r} is not a threshold: expected {ACCEPTED}")
    name, op, unit = m["metric"], m["op"], m["unit"]
    value = float(m["value"])
    pm = _PERCENTILE.fullmatch(name)
    if pm is not None:
        p = float(pm["p"])
        if not 0 < p <= 100:
            raise UsageError(f"{where} {text!r}: percentile {pm['p']} is not in (0, 100]")
        name = f"{pm['ack'] or ''}p{pm['p']}"
    latency = pm is not None or name in {"max", "mean", "ack_max", "ack_mean"}
    if latency:
        if unit and unit not in LATENCY_UNITS:
            raise UsageError(f"{where} {text!r}: unknown unit {unit!r} (us, ms or s)")
        return Threshold(text, name, op, value * LATENCY_UNITS[unit or "ms"])
    if name not in COUNTS and name not in RATES:
        raise UsageError(f"{where} {text!r}: unknown metric {name!r}; expected {ACCEPTED}")
    if unit:
        raise UsageError(f"{where} {text!r}: {name} takes a plain number, not {unit!r}")
    return Threshold(text, name, op, value)


def parse_thresholds(texts: Iterable[str], where: str = "--threshold") -> list[Threshold]:
    return [parse_threshold(t, where) for t in texts]


def evaluate(thresholds: Iterable[Threshold], lookup: Callable[[Threshold], float]
             ) -> list[Verdict]:
    """Each threshold against the figure ``lookup`` gives for it."""
    out = []
    for t in thresholds:
        actual = lookup(t)
        out.append(Verdict(t, actual, t.holds(actual)))
    return out
