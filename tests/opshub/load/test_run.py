"""Load runs against a real hub on 127.0.0.1 (`opshub serve` in a subprocess), in process so
that a test can pause a load process: open loop near the closed-loop floor, coordinated
omission corrected, a subscriber the hub closes resumed with nothing lost, --find-max.

Timing is compared loosely (ratios with wide margins, never the machine's speed)."""

from __future__ import annotations

from typing import Any

from opshub.load.runner import run_load
from opshub.load.spec import LoadOptions, Shape, parse_rate, parse_size
from opshub.load.thresholds import parse_thresholds
from tests.opshub.load.conftest import Pause, ServedHub


def _run(hub: ServedHub, shape: Shape, observer: Any = None, **kw: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"duration": 2.0, "warmup": 0.5, "sub_procs": 1,
                                "drain_timeout": 20.0, **kw}
    opts = LoadOptions(shapes=(shape,), hub_url=hub.url, metrics=(hub.metrics,),
                       keys=hub.keys, **settings)
    return run_load(opts, observer)


def _complete(result: dict[str, Any]) -> None:
    d = result["delivery"]
    assert d["complete"], d
    assert (d["lost"], d["gaps"]) == (0, 0), d
    assert d["received"] == d["expected"] > 0, d
    assert result["errors"]["total"] == 0, result["errors"]


def test_run_open_loop_near_the_closed_loop_floor(served_hub: ServedHub) -> None:
    """At a rate the hub easily holds, the open-loop p99 is near the floor that one
    message in flight at a time gives; both runs use the same running hub, each with
    operations of its own."""
    floor = _run(served_hub, Shape(subscribers=3, rate=None, window=1))
    _complete(floor)
    open_loop = _run(served_hub, Shape(subscribers=3, rate=parse_rate("100")))
    _complete(open_loop)
    assert floor["operations"] != open_loop["operations"]
    assert open_loop["messages"]["acked"] == 250  # 2.5 s at 100/s, warm-up included
    low, p99 = floor["latency_ms"]["p99"], open_loop["latency_ms"]["p99"]
    assert 0 < p99 <= 5 * low + 25, (low, p99)


def test_run_counts_a_late_publisher_from_its_intended_send_times(
        served_hub: ServedHub) -> None:
    """A publisher stopped for 1 s (SIGSTOP) falls behind its 500/s schedule: the
    messages it owed go out late, and latency from their intended send times shows the
    second of lateness; measured from when they were actually sent (what a closed loop
    reports: coordinated omission) it hides it."""
    pause = Pause("publisher", at=1, seconds=1.0)
    result = _run(served_hub, Shape(subscribers=2, rate=parse_rate("500")), pause,
                  duration=4.0)
    _complete(result)
    corrected, uncorrected = result["latency_ms"], result["latency_uncorrected_ms"]
    assert corrected["max"] >= 700, corrected
    assert corrected["p99"] >= 500, corrected
    assert uncorrected["p99"] * 5 < corrected["p99"], (uncorrected, corrected)
    worst = max((row["p99_ms"] or 0) for row in result["series"])
    assert worst >= 500, result["series"]


def test_run_resumes_a_subscriber_the_hub_closed(served_hub: ServedHub) -> None:
    """A subscriber process stopped for longer than the hub's slow-consumer timeout is
    closed by the hub; the tool resumes it from its last seq, like an agent, and every
    delivery still arrives once, in order."""
    pause = Pause("subscriber", at=1, seconds=2.5)
    result = _run(served_hub, Shape(subscribers=2, rate=parse_rate("400"),
                                    size=parse_size("16384")), pause,
                  duration=4.0, sub_procs=2)
    _complete(result)
    subs = result["subscribers"]
    assert subs["closes"] >= 1, subs
    assert subs["resumes"] >= 1, subs
    assert subs["catchup"]["count"] >= 1, subs
    assert result["hub"]["slow_consumer_closes"] >= 1, result["hub"]
    # before it was closed its queue filled: the hub took it off the live path (/metrics)
    assert result["hub"]["fell_behind"] >= 1, result["hub"]
    assert result["delivery"]["duplicates"] == 0


def test_run_find_max_reports_the_highest_step_that_held(served_hub: ServedHub) -> None:
    """--find-max climbs while the objective holds, and stops at the first step that
    breaks it."""
    shape = Shape(subscribers=2, rate=parse_rate("100:200:100"))
    held = _run(served_hub, shape, find_max=True, step_seconds=1,
                slo=tuple(parse_thresholds(["p99<5s"], "--slo")))
    _complete(held)
    fm = held["find_max"]
    assert fm["broke_at"] is None, fm
    assert fm["highest_sustainable"]["step"] == 2, fm
    assert [s["passed"] for s in held["steps"]] == [True, True]
    broke = _run(served_hub, shape, find_max=True, step_seconds=1,
                 slo=tuple(parse_thresholds(["p99<1us"], "--slo")))
    fm = broke["find_max"]
    assert fm["highest_sustainable"] is None, fm
    assert fm["broke_at"]["step"] == 1, fm
    assert len(broke["steps"]) == 1
