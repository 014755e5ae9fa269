"""The offline HTML report of a load run: one page (inline style and SVG charts, no
scripts, nothing fetched) made from the result ``opshub load`` builds, at the end of the
run (``--html``) or later from its JSON (``opshub load report``), so runs can be compared.

Renders the result dict and nothing else (no clock): one result gives the same bytes, at
the end of a run or from its JSON. Only read_result and write_html do I/O. The page,
tables and charts are the replay report's (client/replay/report.py, report_svg.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from client.replay.report import Chart, Section, Table, fmt_count, html_page
from client.replay.report_svg import Line, column_chart, line_chart
from opshub.load import histograms
from protocol.errors import UsageError

#: What every result of ``opshub load --json`` holds; a file without them is refused.
REQUIRED = ("mode", "shapes", "measured_s", "warmup_s", "messages", "latency_ms",
            "latency_uncorrected_ms", "ack_latency_ms", "delivery", "errors", "subscribers",
            "hub", "thresholds", "steps", "series")
PERCENTILE_KEYS = ("p50", "p90", "p99", "p99.9", "p99.99", "max", "mean")
#: The three latencies: result key, histogram key, name.
LATENCIES = (("latency_ms", "histogram", "delivery (intended)"),
             ("latency_uncorrected_ms", "histogram_uncorrected", "delivery (uncorrected)"),
             ("ack_latency_ms", "histogram_ack", "publish to ack"))
#: Points of the percentile spectrum per decade of 1/(1-p) (90 %, 99 %, 99.9 % ...).
SPECTRUM_PER_DECADE = 20
#: How options are written on the command line, where not --name-with-dashes.
FLAGS = {"hub_url": "--hub", "thresholds": "--threshold", "slo": "--slo"}
#: Line charts as wide as the page's text (60rem).
CHART_WIDTH = 940
#: A section's small tables side by side rather than one under the other.
CSS = """
table { display: inline-table; vertical-align: top; margin-right: 2rem; }
"""


def read_result(path: Path) -> dict[str, Any]:
    """The result JSON ``opshub load --json`` wrote. Raises UsageError if the file cannot be
    read, is not JSON, or is not a load result."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {path}: {why.lower()}") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg.lower()} at line {exc.lineno}); "
                         f"give the file `opshub load --json FILE` wrote") from None
    if not isinstance(result, dict):
        raise UsageError(f"{path}: not an opshub load result (a JSON {type(result).__name__}"
                         f", not an object); give the file `opshub load --json FILE` wrote")
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        raise UsageError(f"{path}: not an opshub load result (no {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''}); give the file "
                         f"`opshub load --json FILE` wrote")
    return result


def write_html(path: Path, result: dict[str, Any]) -> None:
    """Raises OSError if the file cannot be written, UsageError for a histogram in the
    result that does not decode."""
    path.write_text(render_html(result), encoding="utf-8")


def render_html(result: dict[str, Any]) -> str:
    """The report as one HTML page that works offline. Raises UsageError for a histogram
    in the result that does not decode."""
    return html_page("opshub load report", _heading(result), _verdicts(result),
                     _sections(result), css=CSS)


# -- numbers ------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    """A latency as the result holds it (ms, to the microsecond)."""
    return "—" if value is None else f"{value:,.3f}"


def _figure(value: Any) -> str:
    """A threshold's figure: a count, a rate or a latency in ms (to the microsecond)."""
    if value is None:
        return "—"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _cost(value: Any) -> str:
    """CPU per message: three significant digits, however small."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _rate(value: Any) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _seconds(x: float) -> str:
    return f"{fmt_count(x)} s"


def _percent(x: float) -> str:
    """The percentile at x = log10(1/(1-p)): 0 is 0 %, 1 is 90 %, 2 is 99 %, 3 is 99.9 %."""
    p = 100 - 100 / 10**x
    text = f"{p:.{max(1, math.floor(x + 1e-9))}f}".rstrip("0").rstrip(".")
    return f"{text}%"


# -- heading and verdicts -----------------------------------------------------------------


def _heading(r: Mapping[str, Any]) -> list[str]:
    opts = r.get("options") or {}
    lines = []
    if r.get("started_at"):
        try:
            started = datetime.fromisoformat(str(r["started_at"])).astimezone(UTC)
            lines.append(f"Run started {started:%Y-%m-%d %H:%M:%S} UTC")
        except ValueError:
            lines.append(f"Run started {r['started_at']}")
    warm = f" after a {fmt_count(r['warmup_s'])} s warm-up" if r["warmup_s"] else ""
    kind = ("--find-max climb, " if "find_max" in r
            else f"{len(r['steps'])} steps, " if r["steps"] else "")
    e2ee = "end-to-end encrypted (SecureAgents), " if opts.get("e2ee") else ""
    lines.append(f"{str(r['mode']).capitalize()}, {e2ee}{kind}{fmt_count(r['measured_s'])} s "
                 f"measured{warm}")
    lines += [f"Shape {s}" for s in r["shapes"]]
    hub = opts.get("hub_url")
    if isinstance(hub, list):  # the nodes of a cluster
        hub = ", ".join(map(str, hub))
    ops = [str(o) for o in r.get("operations") or []]
    shown = ", ".join(ops[:3]) + (f" and {len(ops) - 3} more" if len(ops) > 3 else "")
    where = f"hub {hub}" if hub else "a hub started for the run"
    lines.append(f"Against {where}" + (f"; operations {shown}" if ops else ""))
    machine = r.get("machine") or {}
    if machine:
        lines.append(f"Load machine: {machine.get('cpus')} CPUs, Python "
                     f"{machine.get('python')}, {machine.get('platform')}")
    return lines


def _verdicts(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    d, errors = r["delivery"], r["errors"]
    if d["complete"]:
        out = [("ok", f"Every delivery arrived: {d['received']:,} of {d['expected']:,}, none "
                      f"lost, no gaps, {d['duplicates']:,} duplicates")]
    else:
        out = [("fail", f"Delivery INCOMPLETE: {d['received']:,} of {d['expected']:,} "
                        f"received, {d['lost']:,} lost, {d['gaps']:,} gaps")]
    if errors["total"]:
        out.append(("fail", f"{errors['total']:,} errors"))
    thresholds = r["thresholds"]
    failed = sum(1 for t in thresholds if not t["passed"])
    if failed:
        out.append(("fail", f"{failed} of {len(thresholds)} thresholds FAILED"))
    elif thresholds:
        out.append(("ok", f"All {len(thresholds)} thresholds passed"))
    status = r["hub"].get("exit_status")
    if status not in (0, None):
        out.append(("fail", f"The hub exited with status {status}"))
    if "find_max" in r:
        out.append(_find_max(r["find_max"]))
    return out


def _find_max(fm: Mapping[str, Any]) -> tuple[str, str]:
    objective = " and ".join(fm["objective"])
    best = fm["highest_sustainable"]
    if best is None:
        return "fail", f"Find-max: no step met {objective}"
    rates = ", ".join(f"{k} {v:g}/s" for k, v in best["rate_per_publisher"].items()
                      if v is not None)
    ended = " (the ladder ended before it broke)" if fm["broke_at"] is None else ""
    return "ok", (f"Highest sustainable rate with {objective}: step {best['step']}, {rates} "
                  f"per publisher = {best['offered_per_s']:,.0f} msgs/s offered, "
                  f"{best['msgs_in_per_s']:,.0f} in/s{ended}")


# -- sections -----------------------------------------------------------------------------


def _sections(r: Mapping[str, Any]) -> Iterator[Section]:
    yield _summary(r)
    if r["series"]:
        yield from _over_time(r)
    yield _distribution(r)
    if r["steps"]:
        yield _steps(r)
    yield _delivery(r)
    yield _thresholds(r)
    yield _hub(r)
    if isinstance(r.get("cpu"), dict):
        yield _cpu(r["cpu"])
    if isinstance(r.get("options"), dict):
        yield _options(r["options"])


def _pairs(heading: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table: what, and its figure."""
    return Table([heading, ""], [False, True], [list(row) for row in rows])


def _summary(r: Mapping[str, Any]) -> Section:
    msg = r["messages"]
    rows = [("Messages in (acked by the hub)", f"{_rate(msg['msgs_in_per_s'])} /s"),
            ("Deliveries", f"{_rate(msg['deliveries_per_s'])} /s"),
            ("Sent, acked", f"{msg['sent']:,}, {msg['acked']:,}")]
    if msg["directed_sent"]:
        rows.append(("Directed sent, accepted",
                     f"{msg['directed_sent']:,}, {msg['directed_acked']:,}"))
    if msg.get("unanswered"):
        rows.append(("Unanswered at the end", f"{msg['unanswered']:,}"))
    latency = Table(["Latency (ms)", *PERCENTILE_KEYS, "count"], [False] + [True] * 8,
                    [[name, *(_ms(r[key].get(k)) for k in PERCENTILE_KEYS),
                      fmt_count(r[key].get("count"))] for key, _, name in LATENCIES])
    lat = r["latency_ms"]
    headline = (f"{_rate(msg['msgs_in_per_s'])} messages in/s and "
                f"{_rate(msg['deliveries_per_s'])} deliveries/s; delivery latency p50 "
                f"{_ms(lat.get('p50'))} ms, p99 {_ms(lat.get('p99'))} ms, max "
                f"{_ms(lat.get('max'))} ms.")
    return Section("Summary", paragraphs=[headline,
        "Rates are per second of the measurement (the warm-up not counted). Delivery "
        "latency runs from the message's intended send time (open loop: a publisher that "
        "falls behind has its delay counted) or from when it was sent (uncorrected, what "
        "a closed loop reports) to its arrival at a subscriber."],
        tables=[_pairs("Throughput", rows), latency])


def _delivery(r: Mapping[str, Any]) -> Section:
    """Completeness, errors, closes and resumes."""
    d, errors, subs = r["delivery"], r["errors"], r["subscribers"]
    delivery = [("Expected", fmt_count(d["expected"])), ("Received", fmt_count(d["received"])),
                ("Lost", fmt_count(d["lost"])),
                ("of them directed", fmt_count(d["lost_directed"])),
                ("Gaps", fmt_count(d["gaps"])), ("Duplicates", fmt_count(d["duplicates"]))]
    short = d.get("short_subscribers") or []
    rows = [("Errors", fmt_count(errors["total"]))]
    rows += [(f"error: {kind}", fmt_count(n)) for kind, n in sorted(errors["by_kind"].items())]
    rows.append(("Subscriber closes", fmt_count(subs["closes"])))
    rows += [(f"closed with code {code}", fmt_count(n))
             for code, n in subs["closes_by_code"].items()]
    cu = subs["catchup"]
    rows += [("Resumes", fmt_count(subs["resumes"])),
             ("Caught up from the store", fmt_count(cu["count"])),
             ("Catch-up time, total", f"{fmt_count(cu['total_s'])} s"),
             ("Catch-up time, longest", f"{fmt_count(cu['max_s'])} s")]
    return Section("Delivery, errors, closes and resumes", paragraphs=[
        "Every subscriber checks that each message of its operation arrives once and in "
        "order, up to the head the publishers reached; a subscriber the hub closes is "
        "resumed from its last message, as an agent does."],
        bullets=[f"Short: {s}" for s in short],
        tables=[_pairs("Delivery", delivery), _pairs("Event", rows)])


def _thresholds(r: Mapping[str, Any]) -> Section:
    thresholds = r["thresholds"]
    if not thresholds:
        return Section("Thresholds", paragraphs=["No thresholds were set (--threshold)."])
    return Section("Thresholds", tables=[Table(
        ["Threshold", "Actual", "Verdict"], [False, True, False],
        [[t["threshold"], _figure(t["actual"]), "passed" if t["passed"] else "FAILED"]
         for t in thresholds],
        ["" if t["passed"] else "fail" for t in thresholds])])


def _hub(r: Mapping[str, Any]) -> Section:
    hub = r["hub"]

    def n(key: str, unit: str = "") -> str:
        value = hub.get(key)
        return "—" if value is None else f"{fmt_count(value)}{unit}"

    rss = "peak_rss_mb" if hub.get("peak_rss_mb") is not None else "rss_mb_peak"
    rows = [("Where", "started for the run" if hub.get("started") else "already running"),
            ("CPU (mean)", n("cpu_per_s", " cores")), ("RSS peak", n(rss, " MB")),
            ("Connections peak", n("connections_peak")),
            ("Queued bytes peak, all connections", n("queue_bytes_peak", " B")),
            ("Queued bytes peak, one connection", n("queue_bytes_max_peak", " B")),
            ("Store backlog peak", n("store_pending_peak")),
            ("Slow-consumer closes", n("slow_consumer_closes")),
            ("Subscriptions that fell behind and read the store", n("fell_behind")),
            ("Subscriptions that caught up from the store", n("caught_up")),
            ("Failed /metrics reads", n("metrics_failures"))]
    if "exit_status" in hub:
        rows.append(("Exit status", n("exit_status")))
    return Section("Hub", paragraphs=["Sampled from the hub's /metrics once a second."],
                   charts=_hub_charts(r["series"]), tables=[_pairs("Figure", rows)])


def _cpu(cpu: Mapping[str, Any]) -> Section:
    """Where the CPU went: the hub's and the load processes' (with --e2ee the agents'
    crypto too), per message so runs compare."""
    hub = cpu.get("hub") or {}
    rows = [["hub", "1", fmt_count(hub.get("cpu_s")), _cost(hub.get("ms_per_message")),
             _cost(hub.get("ms_per_delivery"))]]
    rows += [[str(role), fmt_count(g.get("processes")), fmt_count(g.get("cpu_s")),
              _cost(g.get("ms_per_message")), "—"]
             for role, g in (cpu.get("load_processes") or {}).items()]
    tables = [Table(["CPU", "Processes", "CPU s", "ms per message", "ms per delivery"],
                    [False, True, True, True, True], rows)]
    crypto = cpu.get("crypto") or {}
    if crypto:
        tables.append(Table(["Crypto (agents)", "Calls", "Seconds", "ms each"],
                            [False, True, True, True],
                            [[str(kind), fmt_count(v.get("count")), fmt_count(v.get("seconds")),
                              _cost(v.get("ms_each"))] for kind, v in crypto.items()]))
    notes = ["The hub per message acked in the measured seconds (and per delivery); a load "
             "process per message it sent or received."]
    if "rotations" in cpu:
        notes.append(f"Key rotations: {fmt_count(cpu['rotations'])}.")
    return Section("CPU cost", paragraphs=notes, tables=tables)


def _over_time(r: Mapping[str, Any]) -> Iterator[Section]:
    rows = r["series"]
    note = (f"Seconds from the start of the measurement; the publishers stop at "
            f"{fmt_count(r['measured_s'])} s and the subscribers drain after that.")
    if "find_max" in r:
        note = ("Seconds from the start of the measurement; each step is drained before "
                "the next one starts.")

    yield Section("Throughput over time", paragraphs=[note], charts=[
        _chart("Messages per second: sent by the publishers, acked by the hub (one line "
               "over the other while the hub keeps up)",
               [_line(rows, "sent", lambda row: row["sent"]),
                _line(rows, "acked", lambda row: row["acked"])]),
        _chart("Deliveries per second", [_line(rows, "delivered", lambda row: row["delivered"])])])
    yield Section("Latency over time", paragraphs=[
        "The p99 of each second's deliveries, from their intended send times."],
        charts=[_chart("Delivery latency p99 per second (ms)",
                       [_line(rows, "p99", lambda row: row["p99_ms"])])])


def _hub_charts(rows: Sequence[Mapping[str, Any]]) -> list[Chart]:
    """The hub's CPU and memory per second, as far as it was sampled."""
    cpu = _cpu_per_second(rows)
    rss = _line(rows, "RSS", lambda row: row.get("hub_rss_mb"))
    charts = []
    if any(y is not None for _, y in cpu):
        charts.append(_chart("Hub CPU (cores: CPU seconds per second)", [("CPU", cpu)]))
    if any(y is not None for _, y in rss[1]):
        charts.append(_chart("Hub memory (RSS, MB)", [rss]))
    return charts


def _line(rows: Sequence[Mapping[str, Any]], name: str,
          value: Callable[[Mapping[str, Any]], float | None]) -> Line:
    """A line of one figure of each second of the series."""
    return name, [(float(row["second"]), value(row)) for row in rows]


def _chart(caption: str, lines: Sequence[Line]) -> Chart:
    """A chart of lines over the seconds of the series."""
    return Chart(caption, partial(line_chart, caption, lines, fmt_count, x_fmt=_seconds,
                                  width=CHART_WIDTH))


def _cpu_per_second(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, float | None]]:
    """The hub's CPU use in each second: the growth of its CPU seconds since the previous
    sample (none for the first)."""
    out: list[tuple[float, float | None]] = []
    last: tuple[float, float] | None = None
    for row in rows:
        second, cpu = float(row["second"]), row.get("hub_cpu_s")
        if cpu is None:
            out.append((second, None))
            continue
        out.append((second, None if last is None
                    else round(max(0.0, cpu - last[1]) / (second - last[0]), 3)))
        last = (second, cpu)
    return out


def spectrum(hist: HdrHistogram) -> list[tuple[float, float]]:
    """The percentile spectrum, as HdrHistogram plots it: (x, ms) with x = log10(1/(1-p)),
    SPECTRUM_PER_DECADE points a decade, ending at the max where one sample is left
    (x = log10(count)). Empty for an empty histogram."""
    count = hist.get_total_count()
    if not count:
        return []
    top = math.log10(count)
    out = [(i / SPECTRUM_PER_DECADE, round(hist.get_value_at_percentile(
        100 - 100 / 10 ** (i / SPECTRUM_PER_DECADE)) / 1000, 3))
        for i in range(math.floor(top * SPECTRUM_PER_DECADE + 1e-9) + 1)]
    if out[-1][0] < top:
        out.append((top, 0.0))
    out[-1] = (out[-1][0], round(hist.get_max_value() / 1000, 3))
    return out


def _distribution(r: Mapping[str, Any]) -> Section:
    lines = [(name, spectrum(histograms.decode(r[key]))) for _, key, name in LATENCIES
             if isinstance(r.get(key), str)]
    lines = [(name, points) for name, points in lines if points]
    if not lines:
        return Section("Latency distribution", paragraphs=["No latency was recorded."])
    decades = math.ceil(max(points[-1][0] for _, points in lines) - 1e-9)
    ticks = [(float(d), _percent(d)) for d in range(max(1, decades) + 1)]
    caption = "Latency by percentile (ms)"
    draw = partial(line_chart, caption, lines, fmt_count, x_fmt=_percent, x_ticks=ticks,
                   width=CHART_WIDTH)
    return Section("Latency distribution", paragraphs=[
        "The percentile spectrum of the merged HdrHistograms: latency at each percentile, "
        "the percentiles spaced by 1/(1-p) on a log scale, so 90 %, 99 %, 99.9 % and "
        "99.99 % are equally far apart; each line ends at its max. A gap between the "
        "intended and the uncorrected line is time a message waited to be sent."],
        charts=[Chart(caption, draw)])


def _steps(r: Mapping[str, Any]) -> Section:
    steps = r["steps"]

    def rates(s: Mapping[str, Any]) -> str:
        return ", ".join(sorted({f"{v:g}/s" if v is not None else "window"
                                 for v in s["rate_per_publisher"].values()}))

    def verdict(s: Mapping[str, Any]) -> str:
        if "passed" not in s:
            return ""
        return "passed" if s["passed"] else "FAILED" if s["settled"] else "FAILED (fell behind)"

    judged = any("passed" in s for s in steps)  # only --find-max judges its steps
    table = Table(
        ["Step", "Rate per publisher", "Offered /s", "In /s", "Deliveries /s", "p50 ms",
         "p99 ms", "max ms", "Errors", *(["Verdict"] if judged else [])],
        [True, False] + [True] * 7 + [False] * judged,
        [[str(s["step"]), rates(s), fmt_count(s["offered_per_s"]), _rate(s["msgs_in_per_s"]),
          _rate(s["deliveries_per_s"]), _ms(s["latency_ms"].get("p50")),
          _ms(s["latency_ms"].get("p99")), _ms(s["latency_ms"].get("max")),
          fmt_count(s["errors"]), *([verdict(s)] if judged else [])] for s in steps],
        ["fail" if s.get("passed") is False else "" for s in steps])
    caption = "Delivery latency p99 by step (ms)"
    bars = [(f"{s['step']}: {rates(s)}", float(s["latency_ms"].get("p99", 0.0)))
            for s in steps]
    paragraphs = ["Each step's figures come from the seconds of that step alone."]
    if "find_max" in r:
        paragraphs.append(f"--find-max raised the rate step by step until "
                          f"{' and '.join(r['find_max']['objective'])} broke or the "
                          f"deliveries fell behind.")
    return Section("Steps", paragraphs=paragraphs, tables=[table],
                   charts=[Chart(caption, partial(column_chart, caption, bars, fmt_count))]
                   if any(v > 0 for _, v in bars) else [])


def _options(options: Mapping[str, Any]) -> Section:
    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "—"
        return fmt_count(value) if isinstance(value, int | float) or value is None else str(
            value)

    # --metrics (where the hub's /metrics were read) stays in the JSON only: the page names
    # nothing it could fetch, and an http:// URL would read as one
    rows = [(FLAGS.get(k, f"--{k.replace('_', '-')}"), shown(v)) for k, v in options.items()
            if (k != "slo" or options.get("find_max")) and k != "metrics"]
    return Section("Options", tables=[_pairs("Option", rows)])
