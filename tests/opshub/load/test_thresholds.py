"""Thresholds as written: parsed with units, judged against the figures, refused clearly."""

from __future__ import annotations

import pytest

from opshub.load.thresholds import evaluate, parse_threshold
from protocol.errors import UsageError


@pytest.mark.parametrize(("text", "metric", "op", "value"), [
    ("p99<50ms", "p99", "<", 50.0), ("p(99.9) <= 0.2s", "p99.9", "<=", 200.0),
    ("p50<500us", "p50", "<", 0.5), ("max<1000", "max", "<", 1000.0),
    ("ack_p99<5ms", "ack_p99", "<", 5.0), ("errors==0", "errors", "==", 0.0),
    ("rate>=1000", "rate", ">=", 1000.0), ("lost != 0", "lost", "!=", 0.0),
])
def test_threshold_parsed(text: str, metric: str, op: str, value: float) -> None:
    """Latencies are kept in milliseconds whatever unit they were written in."""
    t = parse_threshold(text)
    assert (t.metric, t.op, t.value) == (metric, op, value)


def test_threshold_judged_as_written() -> None:
    """Each operator holds or fails exactly at its boundary."""
    figures = {"p99": 50.0, "errors": 0.0, "rate": 999.0}
    verdicts = evaluate([parse_threshold(t) for t in
                         ("p99<50ms", "p99<=50ms", "errors==0", "rate>=1000", "rate>998")],
                        lambda t: figures[t.metric])
    assert [v.passed for v in verdicts] == [False, True, True, False, True]


@pytest.mark.parametrize(("text", "says"), [
    ("p99 50ms", "is not a threshold: expected METRIC OP VALUE"),
    ("latency<5ms", "unknown metric 'latency'"),
    ("p99<5min", "unknown unit 'min'"),
    ("errors<5ms", "errors takes a plain number"),
    ("p101<5ms", "percentile 101 is not in (0, 100]"),
])
def test_threshold_refused_with_what_is_accepted(text: str, says: str) -> None:
    """A malformed threshold is named, with the reason."""
    with pytest.raises(UsageError) as err:
        parse_threshold(text)
    assert f"--threshold {text!r}" in err.value.message
    assert says in err.value.message
