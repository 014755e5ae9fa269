"""``opshub load`` and ``opshub load merge`` on the command line: the options, their checks
(every mistake is refused before anything runs, naming the option and what is accepted),
and the run's output. cli.py builds the parsers with these; nothing heavy is imported
until a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from protocol.errors import UsageError

SUMMARY = "load-test a hub: open-loop rates, HDR percentiles, thresholds"
DESCRIPTION = """\
Load-test a hub. Publishers send at a constant or stepped rate (open loop: latency is
measured from each message's intended send time, so a publisher that falls behind has the
delay counted: no coordinated omission), or keep a window in flight (closed loop).
Subscribers in separate processes verify that every delivery arrives once, in order,
and resume when the hub closes them (1013 slow consumer, dropped connection), as agents
do. Latency goes into HdrHistograms merged across processes: p50, p90, p99, p99.9, p99.99
and max; the hub's CPU, memory, connections and queues are sampled from /metrics (on
each hub node's metrics listener: --metrics).

Shape: --operations x --publishers x --subscribers per operation, --directed share,
--size distribution; or --profile FILE.yaml mixing shapes:

  shapes:
    - name: fanout            # default shape-1, shape-2 ...
      operations: 1
      publishers: 1
      subscribers: 30
      rate: 2000              # per publisher; or START:STOP:STEP; or window: N instead
      size: lognormal:1024:0.5
      directed: 0.1           # share sent to one member instead of the operation

The hub is started here (its own process, removed afterwards) unless --hub names a
running one; each run then uses operations of its own, LOAD-<run>-<i>, which stay there.
--find-max raises the rate step by step (--rate START:STOP:STEP, or R, 2R, 3R ...) until
the --slo objective breaks or deliveries fall behind, and reports the highest
sustainable rate. Thresholds (k6 style) decide the exit status: 0 all passed and every
delivery arrived; 1 a threshold failed or a delivery was lost; 2 could not run."""
EXAMPLES = (
    "--operations 1 --subscribers 30 --rate 2000 --duration 10",
    "--rate 500:5000:500 --step-seconds 5 --csv series.csv",
    "--find-max --rate 1000:20000:1000 --slo 'p99<50ms'",
    "--profile mixed.yaml --threshold 'p99<50ms' --threshold 'errors==0' --json out.json",
    "--hub ws://127.0.0.1:8765/v1/ws --keys keys --window 64 --histogram run1.hlog",
    "--hub ws://127.0.0.1:8765/v1/ws,ws://127.0.0.1:8775/v1/ws --keys keys --rate 2000",
    "--hub ws://127.0.0.1:8765/v1/ws --metrics http://127.0.0.1:9100 --keys keys    (a hub "
    "serving with --metrics-port 9100)",
    "--rate 2000 --json out.json --html report.html",
)
MERGE_SUMMARY = "merge histogram files of load runs and print the percentiles"
MERGE_DESCRIPTION = """\
Merge the latency histograms that `opshub load --histogram FILE` wrote (HdrHistogram
interval logs; any HdrHistogram log with microsecond values works) and print the
percentiles of all their samples together, in milliseconds."""
MERGE_EXAMPLES = ("run1.hlog run2.hlog run3.hlog", "runs/*.hlog --json merged.json")
REPORT_SUMMARY = "report a load run from its JSON: the summary, and an HTML page"
REPORT_DESCRIPTION = """\
Print the summary of a load run from the result `opshub load --json FILE` wrote, and
with --html write its report: one HTML file that works offline (no scripts, nothing
fetched) with the figures, throughput and latency over time, the latency distribution
and the hub's CPU and memory; the same page `opshub load --html FILE` writes."""
REPORT_EXAMPLES = ("out.json --html report.html", "run1.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    shape = p.add_argument_group("shape (per operation; or --profile)")
    shape.add_argument("--operations", type=int, default=None, metavar="N",
                       help="operations, each a closed user group (default: 1)")
    shape.add_argument("--publishers", type=int, default=None, metavar="P",
                       help="publishing units per operation (default: 1)")
    shape.add_argument("--subscribers", type=int, default=None, metavar="S",
                       help="subscribed units per operation (default: 30)")
    shape.add_argument("--rate", default=None, metavar="R|START:STOP:STEP",
                       help="open loop: messages/s per publisher, constant or stepped "
                       "(default: 1000)")
    shape.add_argument("--window", type=int, default=None, metavar="W",
                       help="closed loop instead: messages in flight per publisher")
    shape.add_argument("--directed", type=float, default=None, metavar="SHARE",
                       help="share (0 to 1) of the messages sent as directed messages to "
                       "one member (default: 0)")
    shape.add_argument("--size", default=None, metavar="SPEC",
                       help="payload bytes: N, A-B (uniform) or lognormal:MEDIAN:SIGMA "
                       "(default: 1024)")
    shape.add_argument("--profile", type=Path, default=None, metavar="FILE",
                       help="YAML file of shapes run together (format above)")
    shape.add_argument("--scenario", default=None, metavar="NAME|FILE",
                       help="one operation shaped like a scenario (seeds/NAME.yaml or a "
                       "file): its participants publish their share of its traffic (as a "
                       "replay of --seed sends it) at the sizes of its messages, and all "
                       "read; --rate is then the total (default: 100)")
    e2ee = p.add_argument_group("end-to-end encryption")
    e2ee.add_argument("--e2ee", action="store_true",
                      help="run every unit as a SecureAgent: publishers sign and encrypt, "
                      "readers decrypt and verify (latency until then), each operation's "
                      "OCU creates its channel, reads it and rotates its keys; reports the "
                      "agents' CPU per message beside the hub's")
    e2ee.add_argument("--rotate-messages", type=int, default=None, metavar="N",
                      help="with --e2ee: the OCU rotates the keys after N messages of an "
                      "epoch (default: the SecureAgent's, 10000)")
    run = p.add_argument_group("time and objectives")
    run.add_argument("--duration", type=float, default=10.0,
                     help="measured seconds (a stepped rate runs steps x --step-seconds)")
    run.add_argument("--warmup", type=float, default=1.0,
                     help="seconds of traffic before the measurement")
    run.add_argument("--step-seconds", type=int, default=5,
                     help="seconds of each step of a stepped rate or of --find-max")
    run.add_argument("--find-max", action="store_true",
                     help="climb the rate until --slo breaks; report the highest that held")
    run.add_argument("--slo", action="append", default=None, metavar="EXPR",
                     help="objective of --find-max, as a threshold (repeat; default: "
                     "p99<50ms)")
    run.add_argument("--threshold", action="append", default=None, metavar="EXPR",
                     help="pass/fail rule judged at the end, e.g. 'p99<50ms', 'errors==0', "
                     "'rate>=1000' (repeat); any failure exits 1")
    hub = p.add_argument_group("hub")
    hub.add_argument("--hub", action="append", default=None, metavar="URL[,URL...]",
                     help="load this running hub (ws://HOST:PORT/v1/ws) instead of "
                     "starting one; needs --keys. Several hub nodes of one cluster: a "
                     "comma-separated list, or --hub repeated; the units' connections "
                     "are spread over them round robin, each falling back on the others, "
                     "and the hub figures are summed over every node's /metrics")
    hub.add_argument("--metrics", action="append", default=None, metavar="URL[,URL...]",
                     help="with --hub: where each hub node's /metrics listens "
                     "(http://HOST:PORT, `opshub serve --metrics-port`), one per --hub URL "
                     "in the same order (default: each --hub URL's host at its port + 1, "
                     "over http://, where `opshub serve` puts it unless told otherwise)")
    hub.add_argument("--keys", type=Path, default=None, metavar="DIR",
                     help="with --hub: the key folder of that hub's authority")
    hub.add_argument("--tls-ca", type=Path, default=None, metavar="FILE",
                     help="with --hub wss://...: the CA certificate (PEM) that signed the "
                     "hub's certificate, e.g. the ca.pem of `opshub keys tls` (default: the "
                     "system's CAs)")
    hub.add_argument("--tls", action="store_true",
                     help="the started hub serves TLS (wss://, https://) with a "
                     "certificate of a fresh local CA")
    hub.add_argument("--keep", action="store_true",
                     help="keep the temporary folder (keys, the started hub's database)")
    procs = p.add_argument_group("load processes")
    procs.add_argument("--pub-procs", type=int, default=1,
                       help="processes the publishers are spread over")
    procs.add_argument("--sub-procs", type=int, default=2,
                       help="processes the subscribers are spread over")
    procs.add_argument("--max-inflight", type=int, default=10_000,
                       help="open loop: unanswered messages per publisher before it waits "
                       "(the wait counts in the latency)")
    procs.add_argument("--drain-timeout", type=float, default=60.0,
                       help="seconds to wait at the end for every delivery")
    procs.add_argument("--seed", type=int, default=1,
                       help="seed of sizes and directed recipients, and of the traffic "
                       "--scenario takes from its scenario")
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, default=None, metavar="FILE",
                     help="write the full result as JSON")
    out.add_argument("--csv", type=Path, default=None, metavar="FILE",
                     help="write the per-second series (sent, acked, delivered, errors, "
                     "p99, hub gauges)")
    out.add_argument("--histogram", type=Path, default=None, metavar="FILE",
                     help="write the latency HdrHistogram (interval log) for `opshub load "
                     "merge`")
    out.add_argument("--html", type=Path, default=None, metavar="FILE",
                     help="write the report as one offline HTML page (charts included)")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="no progress line (the summary is still printed)")


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="histogram files written by --histogram")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="write the merged percentiles as JSON too")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the merged histogram as a histogram file too")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", type=Path, metavar="RESULT.json",
                   help="the result `opshub load --json FILE` wrote")
    p.add_argument("--html", type=Path, default=None, metavar="FILE",
                   help="write the report as one offline HTML page")


SHAPE_FLAGS = ("operations", "publishers", "subscribers", "rate", "window", "directed",
               "size")


def options(args: argparse.Namespace) -> Any:
    """LoadOptions from the command line. Raises UsageError naming the option."""
    from opshub.load.profile import load_profile
    from opshub.load.spec import LoadOptions, Shape, parse_rate, parse_size
    from opshub.load.thresholds import parse_thresholds

    thresholds = tuple(parse_thresholds(args.threshold or []))
    slo = tuple(parse_thresholds(args.slo or ["p99<50ms"], "--slo"))
    for t in slo:
        if t.metric.startswith("ack_") or t.metric in ("lost", "gaps", "duplicates"):
            raise UsageError(f"--slo {t.text!r}: a step is judged on delivery latency, "
                             f"errors, closes, resumes, rate and deliveries; {t.metric} is "
                             f"for --threshold (judged on the whole run)")
    if args.slo and not args.find_max:
        raise UsageError("--slo is the objective of --find-max; for a pass/fail rule use "
                         "--threshold")
    if args.scenario is not None:
        from opshub.load.scenario_shape import load_mix, scenario_shape

        given = [f"--{n}" for n in SHAPE_FLAGS if n != "rate" and getattr(args, n) is not None]
        given += ["--profile"] if args.profile is not None else []
        if given:
            raise UsageError(f"--scenario takes the operation's participants, traffic and "
                             f"sizes from the scenario (--rate is the total): drop "
                             f"{', '.join(given)}")
        shapes: tuple[Shape, ...] = (scenario_shape(load_mix(args.scenario, args.seed),
                                                    parse_rate(args.rate or "100")),)
    elif args.profile is not None:
        given = [f"--{n}" for n in SHAPE_FLAGS if getattr(args, n) is not None]
        if given:
            raise UsageError(f"--profile describes the shapes: drop {', '.join(given)}")
        shapes = tuple(load_profile(args.profile))
    else:
        rate = None if args.window is not None and args.rate is None else parse_rate(
            args.rate or "1000")
        shapes = (Shape(name="load", operations=_or(args.operations, 1),
                        publishers=_or(args.publishers, 1),
                        subscribers=_or(args.subscribers, 30), rate=rate, window=args.window,
                        directed=_or(args.directed, 0.0), size=parse_size(args.size or "1024"),
                        where="--"),)
    if args.find_max and any(s.rate is None for s in shapes):
        raise UsageError("--find-max climbs a rate: give --rate (open loop), not --window")
    for name, low in (("duration", 0.1), ("warmup", 0.0), ("step_seconds", 1),
                      ("pub_procs", 1), ("sub_procs", 1), ("max_inflight", 1),
                      ("drain_timeout", 1.0)):
        if getattr(args, name) < low:
            raise UsageError(f"--{name.replace('_', '-')}: must be at least {low:g}, got "
                             f"{getattr(args, name)!r}")
    for name in ("json", "csv", "histogram", "html"):
        path: Path | None = getattr(args, name)
        if path is not None and not path.resolve().parent.is_dir():
            raise UsageError(f"--{name}: no folder {path.parent} to write {path.name} in")
    hubs = metrics = None
    if args.hub is not None:
        from opshub.hubapi import hub_url_list
        from opshub.load.target import metrics_urls

        hubs = tuple(hub_url_list(args.hub))
        metrics = tuple(metrics_urls(args.metrics, hubs))
        if args.keys is None:
            raise UsageError("--hub needs --keys: the key folder of that hub's authority")
        if args.tls:
            raise UsageError("--tls starts the run's own hub over TLS; a running hub's "
                             "wss:// URL goes with --tls-ca FILE")
    elif args.tls_ca is not None:
        raise UsageError("--tls-ca goes with --hub wss://... (the run's own hub over TLS: "
                         "--tls)")
    elif args.metrics is not None:
        raise UsageError("--metrics goes with --hub: the run's own hub says where its "
                         "/metrics are")
    if args.rotate_messages is not None and not args.e2ee:
        raise UsageError("--rotate-messages: keys are rotated by the operations' OCUs as "
                         "SecureAgents: add --e2ee")
    if args.rotate_messages is not None and args.rotate_messages < 1:
        raise UsageError(f"--rotate-messages: must be at least 1, got {args.rotate_messages}")
    if args.e2ee:
        from opshub.load.e2ee_traffic import check_e2ee

        check_e2ee(shapes)
    return LoadOptions(shapes=shapes, duration=args.duration, warmup=args.warmup,
                       step_seconds=args.step_seconds, find_max=args.find_max, slo=slo,
                       thresholds=thresholds, hub_url=hubs, metrics=metrics, keys=args.keys,
                       tls_ca=args.tls_ca, tls=args.tls,
                       keep=args.keep, pub_procs=args.pub_procs, sub_procs=args.sub_procs,
                       max_inflight=args.max_inflight, drain_timeout=args.drain_timeout,
                       seed=args.seed, e2ee=args.e2ee, rotate_messages=args.rotate_messages)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def cmd_load(args: argparse.Namespace) -> int:
    from opshub.load import histograms
    from opshub.load.report import ProgressLine, summary, write_csv, write_json
    from opshub.load.runner import run_load

    opts = options(args)
    line = ProgressLine() if not args.quiet else None
    try:
        result = run_load(opts, line)
    finally:
        if line is not None:
            line.done()
    if args.json is not None:
        write_json(args.json, result)
    if args.csv is not None:
        write_csv(args.csv, result["series"])
    if args.histogram is not None:
        histograms.write_log(args.histogram, [(0.0, result["measured_s"],
                                              histograms.decode(result["histogram"]))],
                             f"opshub load: delivery latency, {', '.join(result['shapes'])}")
    if args.html is not None:
        from opshub.load.report_html import write_html

        write_html(args.html, result)
    print(summary(result))
    if result.get("kept"):
        print(f"  kept: {result['kept']}")
    failed = not result["thresholds_passed"] or not result["delivery"]["complete"]
    return 1 if failed else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from opshub.load import histograms

    hists = [h for path in args.files for h in histograms.read_log(path)]
    merged = histograms.merge(hists)
    figures = histograms.summary_ms(merged)
    print(f"{len(args.files)} file(s), {len(hists)} histogram(s), "
          f"{int(figures['count']):,} samples")
    for key, value in figures.items():
        if key != "count":
            print(f"  {key:<8} {value:>12,.3f} ms")
    if args.json is not None:
        args.json.write_text(json.dumps({"files": [str(p) for p in args.files],
                                         "latency_ms": figures}, indent=2) + "\n")
    if args.out is not None:
        histograms.write_log(args.out, [(0.0, 0.0, merged)],
                             f"opshub load merge of {len(args.files)} file(s)")
    sys.stdout.flush()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Exit status 0 once reported, whatever the run's verdict (the run had its own)."""
    from opshub.load.report import summary
    from opshub.load.report_html import read_result, write_html

    result = read_result(args.result)
    if args.html is not None:
        if not args.html.resolve().parent.is_dir():
            raise UsageError(f"--html: no folder {args.html.parent} to write "
                             f"{args.html.name} in")
        write_html(args.html, result)
    print(summary(result))
    return 0
