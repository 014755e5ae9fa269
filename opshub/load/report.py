"""What a person reads of a load run: the live progress line, the summary table, and the
files (JSON, CSV of the per-second series). Plain text: the project has no table library.

The progress line is rewritten in place on a terminal; elsewhere (CI logs, pipes) a plain
line is printed every PLAIN_EVERY seconds, so a log does not fill with carriage returns.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from opshub.load import cpu
from opshub.load.runner import Progress, RunInfo

PLAIN_EVERY = 5


class ProgressLine:
    """An Observer that prints the run's progress to ``out`` (stderr by default)."""

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self._shown = False

    def started(self, info: RunInfo) -> None:
        hub = f" (started here, pid {info.hub_pid})" if info.hub_pid else ""
        ops = info.operations
        shown = ", ".join(ops[:3]) + (f" ... ({len(ops)})" if len(ops) > 3 else "")
        self._print(f"opshub load: hub {', '.join(info.urls)}{hub}; operations {shown}; "
                    f"{len(info.publisher_pids)} publisher and {len(info.subscriber_pids)} "
                    f"subscriber process(es)")

    def progress(self, p: Progress) -> None:
        left = max(0.0, p.planned_s - p.elapsed_s)
        line = (f"{p.elapsed_s:5.0f}/{p.planned_s:g} s  {p.stage:<14} in {p.acked_per_s:>8,}/s  "
                f"deliveries {p.delivered_per_s:>10,}/s  p99 {p.p99_ms:>9,.1f} ms  "
                f"errors {p.errors}  closes {p.closes}  resumes {p.resumes}  "
                f"left {left:.0f} s")
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            self.out.flush()
            self._shown = True
        elif int(p.elapsed_s) % PLAIN_EVERY == 0:
            self._print(line)

    def note(self, text: str) -> None:
        self._print(text)

    def _print(self, text: str) -> None:
        if self._shown:
            self.out.write("\r\x1b[2K")
            self._shown = False
        self.out.write(text + "\n")
        self.out.flush()

    def done(self) -> None:
        if self._shown:
            self.out.write("\n")
            self._shown = False


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def summary(result: dict[str, Any]) -> str:
    """The table printed at the end of a run."""
    msg, dl, subs, hub = (result["messages"], result["delivery"], result["subscribers"],
                          result["hub"])
    options = result.get("options", {})
    e2ee = ", end to end encrypted (SecureAgents)" if options.get("e2ee") else ""
    urls = options.get("hub_url") or []
    urls = [urls] if isinstance(urls, str) else urls
    if options.get("tls") or any(str(u).startswith("wss://") for u in urls):
        e2ee += ", over TLS"
    lines = [f"opshub load: {result['mode']}{e2ee}, {result['measured_s']:g} s measured "
             f"(+{result['warmup_s']:g} s warm-up)"]
    lines += [f"  shape  {s}" for s in result["shapes"]]
    lines.append("")
    lines.append(f"  messages in      {_n(msg['msgs_in_per_s'], 1):>12} /s   "
                 f"(sent {msg['sent']:,}, acked {msg['acked']:,}; directed sent "
                 f"{msg['directed_sent']:,}, accepted {msg['directed_acked']:,})")
    lines.append(f"  deliveries       {_n(msg['deliveries_per_s'], 1):>12} /s")
    lines.append("")
    # a space before each column: 23,445.50 ms beside a count of 13,079,040 stay apart
    head = f"  {'latency (ms)':<24}" + "".join(
        f" {k:>10}" for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max")) + f" {'count':>12}"
    lines.append(head)
    for label, key in (("delivery (intended)", "latency_ms"),
                       ("delivery (uncorrected)", "latency_uncorrected_ms"),
                       ("publish to ack", "ack_latency_ms")):
        lat = result[key]
        lines.append(f"  {label:<24}" + "".join(
            f" {_n(lat[k], 2):>10}" for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max"))
            + f" {_n(lat['count']):>12}")
    lines.append("")
    verdict = "complete" if dl["complete"] else "INCOMPLETE"
    lines.append(f"  delivery         {verdict}: {dl['received']:,} of {dl['expected']:,} "
                 f"received, lost {dl['lost']:,}, gaps {dl['gaps']:,}, duplicates "
                 f"{dl['duplicates']:,}")
    if dl["short_subscribers"]:
        lines.append(f"                   short: {', '.join(dl['short_subscribers'])}")
    errors = result["errors"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(errors["by_kind"].items()))
    lines.append(f"  errors           {errors['total']:,}" + (f" ({kinds})" if kinds else ""))
    codes = ", ".join(f"{k}: {v}" for k, v in subs["closes_by_code"].items())
    cu = subs["catchup"]
    lines.append(f"  subscribers      closes {subs['closes']:,}" + (f" ({codes})" if codes
                                                                     else "")
                 + f", resumes {subs['resumes']:,}, caught up {cu['count']:,} "
                 f"(total {cu['total_s']:g} s, longest {cu['max_s']:g} s)")
    where = "started here" if hub.get("started") else "running"
    lines.append(f"  hub ({where})   CPU {_n(hub.get('cpu_per_s'), 2)} cores, RSS peak "
                 f"{_n(hub.get('peak_rss_mb') or hub.get('rss_mb_peak'), 1)} MB, "
                 f"connections {_n(hub.get('connections_peak'))}, queue peak "
                 f"{_n(hub.get('queue_bytes_peak'))} B (one connection "
                 f"{_n(hub.get('queue_bytes_max_peak'))} B), store backlog peak "
                 f"{_n(hub.get('store_pending_peak'))}, slow-consumer closes "
                 f"{hub.get('slow_consumer_closes', 0)}, subscriptions that fell behind "
                 f"and read the store {hub.get('fell_behind', 0):,} (caught up "
                 f"{hub.get('caught_up', 0):,})")
    if result.get("cpu"):  # (results written before it had one have none)
        lines += cpu.lines(result["cpu"])
    if result["steps"]:
        lines.append("")
        lines.append(f"  {'step':<6}{'rate/pub':>12}{'offered/s':>12}{'in/s':>12}"
                     f"{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}  verdict")
        for s in result["steps"]:
            rates = ", ".join(sorted({f"{r:g}" if r is not None else "window"
                                      for r in s["rate_per_publisher"].values()}))
            verdict = ("" if "passed" not in s else "passed" if s["passed"]
                       else "FAILED" if s["settled"] else "FAILED (fell behind)")
            lat = s["latency_ms"]
            lines.append(f"  {s['step']:<6}{rates:>12}{_n(s['offered_per_s']):>12}"
                         f"{_n(s['msgs_in_per_s']):>12}{_n(lat['p50'], 2):>10}"
                         f"{_n(lat['p99'], 2):>10}{_n(lat['max'], 2):>10}{s['errors']:>8}"
                         f"  {verdict}")
    if "find_max" in result:
        fm = result["find_max"]
        best = fm["highest_sustainable"]
        objective = " and ".join(fm["objective"])
        lines.append("")
        if best is None:
            lines.append(f"  find-max: no step met {objective}")
        else:
            rates = ", ".join(f"{k} {v:g}/s" for k, v in best["rate_per_publisher"].items()
                              if v is not None)
            lines.append(f"  find-max: highest sustainable rate with {objective}: step "
                         f"{best['step']}, {rates} per publisher = "
                         f"{_n(best['offered_per_s'])} msgs/s offered, "
                         f"{_n(best['msgs_in_per_s'])} in/s")
        if fm["broke_at"] is None and best is not None:
            lines.append("            (the ladder ended before the objective broke)")
    if result["thresholds"]:
        lines.append("")
        for t in result["thresholds"]:
            mark = "passed" if t["passed"] else "FAILED"
            lines.append(f"  threshold {mark:<7} {t['threshold']:<22} actual {t['actual']:g}")
    return "\n".join(lines)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The per-second series, one row a second from the start of the measurement."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in keys})
