"""The ``opshub`` console command: the composition root, the one place that imports
both hub/ and client/. Each subcommand parses its arguments and calls into them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from client.identity import KeyFolder, UnitSpec, generate
from hub.app import RunningHub, serve
from hub.config import HubConfig, load_config_file

DEFAULT_ROSTER = [
    UnitSpec("OCU", "BB", "WCO-RILO", "ocu"),
    UnitSpec("BB-CUSTOMS", "BB", "customs"),
    UnitSpec("JM-CUSTOMS", "JM", "customs"),
    UnitSpec("TT-POLICE", "TT", "police"),
    UnitSpec("DM-CUSTOMS", "DM", "customs"),
    UnitSpec("INTERPOL-LO", "FR", "INTERPOL", "liaison"),
]


def _run(coro: Coroutine[Any, Any, Any], loop: str = "uvloop") -> Any:
    if loop == "asyncio":
        return asyncio.run(coro)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.run(coro)
    return uvloop.run(coro)


def _parse_unit(text: str) -> UnitSpec:
    parts = text.split(",")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(
            f"expected UNIT,COUNTRY,AGENCY[,ROLE], got {text!r}")
    try:
        spec = UnitSpec(*parts)
    except TypeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def cmd_keys(args: argparse.Namespace) -> int:
    out: Path = args.out
    if (out / "authority.key").exists() and not args.force:
        print(f"opshub keys: {out} already holds an authority; use --force to replace it",
              file=sys.stderr)
        return 2
    specs = args.unit or DEFAULT_ROSTER
    try:
        _, identities = generate(out, specs, now=int(time.time()),
                                 validity=int(args.days * 86400))
    except ValueError as exc:
        print(f"opshub keys: {exc}", file=sys.stderr)
        return 2
    print(f"authority and {len(identities)} units written to {out}/")
    for ident in identities:
        c = ident.credential
        print(f"  {c.unit:<16} {c.country} {c.agency:<10} {c.role:<8} {ident.fingerprint}")
    return 0


def hub_config(args: argparse.Namespace) -> tuple[HubConfig, list[Any]]:
    keys = KeyFolder(args.keys)
    authorities = [keys.authority_public()]
    roster = keys.roster() if (args.keys / "roster.json").exists() else []
    config = HubConfig(host=args.host, port=args.port, db=args.db,
                       authorities=tuple(authorities), open_enrollment=args.open_enrollment,
                       fanout=args.fanout)
    if args.config is not None:
        config = load_config_file(args.config, config)
    return config, roster


def cmd_serve(args: argparse.Namespace) -> int:
    if args.config is not None and not args.config.exists():
        print(f"opshub serve: no config file {args.config}", file=sys.stderr)
        return 2
    if not (args.keys / "authority.pub").exists():
        print(f"opshub serve: no authority.pub in {args.keys}; run `opshub keys --out "
              f"{args.keys}` first", file=sys.stderr)
        return 2
    try:
        config, roster = hub_config(args)
    except ValueError as exc:
        print(f"opshub serve: {exc}", file=sys.stderr)
        return 2

    def ready(running: RunningHub) -> None:
        print(f"opshub: hub {config.hub_id!r} listening on {running.http} "
              f"(WebSocket {running.url}), database {config.db}", flush=True)

    _run(serve(config, roster, ready=ready), args.loop)
    print("opshub: stopped cleanly", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from client.demo import run_demo

    return int(_run(run_demo(workdir=args.workdir, messages=args.messages)))


def _emit(result: dict[str, Any], path: str | None) -> None:
    """Print a benchmark's result as JSON, and write it to ``path`` too if given."""
    text = json.dumps(result, indent=2)
    if path:
        Path(path).write_text(text + "\n")
    print(text)


def cmd_bench_hub(args: argparse.Namespace) -> int:
    from client.bench import BenchOptions, median_of, run_bench

    opts = BenchOptions(
        subscribers=args.subscribers, size=args.size, duration=args.duration,
        warmup=args.warmup, window=args.window, batch=args.batch,
        sub_procs=args.sub_procs, operations=args.operations, hub_url=args.hub,
        keys=args.keys, db=args.db, fanout=args.fanout, hub_loop=args.hub_loop)
    runs = [run_bench(opts) for _ in range(args.runs)]
    result = runs[0] if len(runs) == 1 else median_of(runs)
    _emit(result, args.json)
    return 0 if result.get("ok") else 1


def cmd_bench_crypto(args: argparse.Namespace) -> int:
    from client.bench_crypto import run_crypto_bench
    from client.e2ee.suite import CLASSIC, HYBRID

    result = run_crypto_bench(messages=args.messages, size=args.size, members=args.members,
                              runs=args.runs,
                              suite=(HYBRID if args.kem == "hybrid" else CLASSIC).name)
    _emit(result, args.json)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from client.messages import default_catalog
    from client.messages.files import validate_files

    results = validate_files(default_catalog(), args.files, references=args.references)
    if not results:
        print("opshub validate: no message files given", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{"file": str(r.path), "ok": r.ok,
                           "problems": [p.to_json() for p in r.problems]} for r in results],
                         indent=2))
    else:
        for r in results:
            if r.ok:
                if not args.quiet:
                    print(f"{r.path}: ok ({r.message['type']} v{r.message['version']})")
                continue
            for problem in r.problems:
                print(f"{r.path}: {problem.path or '/'}: {problem.message}")
        bad = sum(not r.ok for r in results)
        print(f"{len(results) - bad} of {len(results)} files valid", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def cmd_schemas_docs(args: argparse.Namespace) -> int:
    from client.messages import default_catalog
    from client.messages.docgen import generate

    text = generate(default_catalog())
    if args.check:
        if not args.out.exists() or args.out.read_text(encoding="utf-8") != text:
            print(f"{args.out} is stale: run `opshub schemas docs` to regenerate it",
                  file=sys.stderr)
            return 1
        print(f"{args.out} is current")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def cmd_bench_messages(args: argparse.Namespace) -> int:
    from client.bench_messages import run_messages_bench

    result = run_messages_bench(number=args.number, runs=args.runs)
    _emit(result, args.json)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from client.replay.run import run_replay
    from protocol.errors import ScenarioError

    speed = None if args.speed == "max" else float(args.speed)
    try:
        report = _run(run_replay(args.operation, seed=args.seed, speed=speed, out=args.out,
                                 db=args.db, hub_url=args.hub, keys=args.keys))
    except ScenarioError as exc:
        print(f"opshub replay: {exc.message}", file=sys.stderr)
        return 2
    failed = [c for c in report["checks"] if not c["ok"]]
    rejected = sum(report.get("rejected", {}).values())
    rate = report["messages"] / report["wall_seconds"] if report["wall_seconds"] else 0
    print(f"\n{report['operation']}: {report['messages']} messages in "
          f"{report['wall_seconds']:.1f} s ({rate:,.0f}/s, {rejected} rejected by agents); "
          f"{len(report['checks']) - len(failed)} of {len(report['checks'])} published "
          f"figures reproduced")
    for c in report["checks"]:
        mark = "ok " if c["ok"] else "FAIL"
        print(f"  {mark} {c['metric']:<32} {c['rule']:<9} published {_num(c['published']):>12}"
              f"  observed {_num(c['observed']):>12}")
    print(f"report   {args.out}/report.json, report.md, report.html")
    return 0 if not failed else 1


def _num(value: float) -> str:
    """1631000 -> '1,631,000'; 500.2 -> '500.2'."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}".rstrip("0")


def cmd_scenario_check(args: argparse.Namespace) -> int:
    from client.replay.plan import make_plan
    from client.replay.scenario import load, resolve
    from protocol.errors import ScenarioError

    status = 0
    for name in args.scenarios:
        try:
            scenario = load(resolve(name))
            plan = make_plan(scenario, args.seed)
        except ScenarioError as exc:
            print(exc.message, file=sys.stderr)
            status = 1
            continue
        except ValueError as exc:
            print(f"{name}: cannot generate the traffic: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{scenario.path}: ok ({len(scenario.participants)} participants, "
              f"{len(scenario.steps)} storyline messages, {len(plan.events)} planned "
              f"events, {plan.expected_messages} messages)")
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opshub", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("keys", help="generate an operation authority and unit credentials")
    k.add_argument("--out", type=Path, default=Path("keys"), help="folder to write (keys/)")
    k.add_argument("--unit", type=_parse_unit, action="append",
                   help="UNIT,COUNTRY,AGENCY[,ROLE] (repeat); default: a small demo roster")
    k.add_argument("--days", type=float, default=365, help="credential validity in days")
    k.add_argument("--force", action="store_true", help="replace an existing authority")
    k.set_defaults(func=cmd_keys)

    s = sub.add_parser("serve", help="run a hub until SIGINT/SIGTERM")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    s.add_argument("--db", type=Path, default=Path("opshub.db"))
    s.add_argument("--keys", type=Path, default=Path("keys"),
                   help="folder with authority.pub (trusted) and roster.json (preloaded)")
    s.add_argument("--config", type=Path, default=None,
                   help="TOML file with limits and timeouts (see docs/operations.md)")
    s.add_argument("--open-enrollment", action="store_true",
                   help="accept any credential the authority signed, enrolled or not")
    s.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                   help="event loop of the hub (asyncio by default: ahead of uvloop in 7 of 8 "
                   "interleaved benchmark rounds, see docs/performance.md)")
    s.add_argument("--fanout", choices=["coalesced", "per-delivery"], default="coalesced",
                   help="per-delivery: one frame and one awaited send per delivery (a naive "
                   "design, for benchmark comparison only)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="embedded hub, a handful of agents, one operation")
    d.add_argument("--workdir", type=Path, default=None,
                   help="keep keys and database here (default: a temporary folder)")
    d.add_argument("--messages", type=int, default=12)
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("validate", help="check message files (JSON or YAML) against "
                       "schemas/; exit status 0 only when every file is valid")
    v.add_argument("files", type=Path, nargs="+", help="files, or folders of .json/.yaml")
    v.add_argument("--references", action="store_true",
                   help="take the files as one operation's traffic: ids unique, every "
                   "refers_to names one of them")
    v.add_argument("--json", action="store_true", help="print the results as JSON")
    v.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    v.set_defaults(func=cmd_validate)

    sc = sub.add_parser("schemas", help="schema tools")
    scsub = sc.add_subparsers(dest="schemas", required=True)
    sd = scsub.add_parser("docs", help="generate docs/schemas.md from schemas/")
    sd.add_argument("--out", type=Path, default=Path("docs/schemas.md"))
    sd.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    sd.set_defaults(func=cmd_schemas_docs)

    r = sub.add_parser("replay", help="replay a documented operation as encrypted traffic "
                       "and write the OCU's after-action report")
    r.add_argument("operation", help="a name in seeds/ (cocair-v, trigger-vii, calypso-2) "
                   "or a path to a scenario file")
    r.add_argument("--speed", default="max",
                   help="max (as fast as possible) or a factor of real time, e.g. 3600")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--out", type=Path, default=Path("replay-out"))
    r.add_argument("--db", type=Path, default=None,
                   help="database of the hub started for the replay (default: temporary)")
    r.add_argument("--hub", default=None,
                   help="use a running hub (ws URL) instead of starting one")
    r.add_argument("--keys", type=Path, default=None,
                   help="with --hub: the key folder of that hub's authority")
    r.set_defaults(func=cmd_replay)

    sn = sub.add_parser("scenario", help="scenario tools")
    snsub = sn.add_subparsers(dest="scenario", required=True)
    sck = snsub.add_parser("check", help="check scenario files without running them")
    sck.add_argument("scenarios", nargs="+")
    sck.add_argument("--seed", type=int, default=1)
    sck.set_defaults(func=cmd_scenario_check)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bh = bsub.add_parser("hub", help="durable publish + fan-out throughput and latency")
    bh.add_argument("--subscribers", type=int, default=30)
    bh.add_argument("--size", type=int, default=1024, help="payload bytes")
    bh.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    bh.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    bh.add_argument("--window", type=int, default=4096, help="unacknowledged publishes")
    bh.add_argument("--batch", type=int, default=256, help="publishes per frame")
    bh.add_argument("--sub-procs", type=int, default=2, help="subscriber processes")
    bh.add_argument("--operations", type=int, default=1)
    bh.add_argument("--hub", default=None, help="target a running hub (ws URL) instead")
    bh.add_argument("--keys", type=Path, default=None,
                    help="with --hub: that hub's key folder (its authority signs bench units)")
    bh.add_argument("--db", type=Path, default=None, help="database of the started hub")
    bh.add_argument("--fanout", choices=["coalesced", "per-delivery"], default="coalesced",
                    help="fan-out design of the started hub (per-delivery: the naive "
                    "reference, one awaited send per delivery)")
    bh.add_argument("--hub-loop", choices=["asyncio", "uvloop"], default="asyncio",
                    help="event loop of the started hub")
    bh.add_argument("--runs", type=int, default=1,
                    help="repeat and report the median of each figure (and every run)")
    bh.add_argument("--json", default=None, help="write the result here too")
    bh.set_defaults(func=cmd_bench_hub)
    bc = bsub.add_parser("crypto", help="end-to-end encryption cost on one core")
    bc.add_argument("--messages", type=int, default=2000, help="messages per round")
    bc.add_argument("--size", type=int, default=1024, help="content bytes")
    bc.add_argument("--members", type=int, default=41, help="operation size for the rekey")
    bc.add_argument("--kem", choices=["hybrid", "x25519"], default="hybrid")
    bc.add_argument("--runs", type=int, default=5, help="rounds; medians are reported")
    bc.add_argument("--json", default=None, help="write the result here too")
    bc.set_defaults(func=cmd_bench_crypto)
    bm = bsub.add_parser("messages", help="schema check cost per message (microseconds)")
    bm.add_argument("--number", type=int, default=500, help="calls per example per round")
    bm.add_argument("--runs", type=int, default=5, help="rounds; medians are reported")
    bm.add_argument("--json", default=None, help="write the result here too")
    bm.set_defaults(func=cmd_bench_messages)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:  # e.g. `opshub keys | head`: the reader has gone, nothing to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
