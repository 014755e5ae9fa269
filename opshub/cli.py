"""The ``opshub`` command: argument parsing, help, and the one place where errors become
what a user reads (one line on stderr and an exit status, never a traceback).

opshub/ is the composition root, the only package that imports both hub/ and client/;
each subcommand's work lives in a module of its own (serve, replay, bench, demo).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.identity import UnitSpec, generate
from opshub.identities import DEFAULT_ROSTER
from opshub.replay import INTERRUPTED
from protocol.errors import OpshubError, UsageError

#: exit status when the command could not do what was asked (the reason is on stderr)
FAILED_TO_RUN = 2

DESCRIPTION = """\
Run a simulated secure inter-agency messaging hub and the agents that use it: replay
documented enforcement operations as end-to-end encrypted traffic, benchmark and
load-test the hub, check message files.
"""

EXIT_STATUS = """
exit status: 0 done; 1 a check failed (a published figure not reproduced, an invalid
file, a benchmark that lost messages); 2 the command could not run as asked (the reason
is on stderr); 130 interrupted (Ctrl-C)."""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option's default after its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.option_strings or action.nargs in (argparse.OPTIONAL,
                                                          argparse.ZERO_OR_MORE)
        if (shown and "%(default)" not in text
                and action.default not in (None, False, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(sub: Any, name: str, summary: str, description: str, *examples: str,
             func: Callable[[argparse.Namespace], int] | None = None
             ) -> argparse.ArgumentParser:
    """A subcommand whose help starts with what it does and ends with examples."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name.rsplit(" ", 1)[-1], help=summary, description=description,
        epilog=_examples(*(f"opshub {name} {e}".rstrip() for e in examples)) if examples
        else None, formatter_class=_Help)
    if func is not None:
        parser.set_defaults(func=func, name=name)
    return parser


# --- commands without a module of their own ------------------------------------------


def _parse_unit(text: str) -> UnitSpec:
    parts = text.split(",")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"expected UNIT,COUNTRY,AGENCY[,ROLE], got {text!r}")
    return UnitSpec(*parts)


def cmd_keys(args: argparse.Namespace) -> int:
    out: Path = args.out
    if (out / "authority.key").exists() and not args.force:
        raise UsageError(f"{out} already holds an authority; use --force to replace it")
    specs = args.unit or DEFAULT_ROSTER
    try:
        _, identities = generate(out, specs, now=int(time.time()),
                                 validity=int(args.days * 86400))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {(exc.strerror or str(exc)).lower()}"
                         ) from None
    print(f"authority and {len(identities)} units written to {out}/")
    for ident in identities:
        c = ident.credential
        print(f"  {c.unit:<16} {c.country} {c.agency:<10} {c.role:<8} {ident.fingerprint}")
    return 0


def cmd_keys_tls(args: argparse.Namespace) -> int:
    from opshub.tls import DEFAULT_HOSTS, TlsFiles, fingerprint, write_tls_folder

    out: Path = args.out
    if TlsFiles.at(out).ca_key.exists() and not args.force:
        raise UsageError(f"{out} already holds a CA; use --force to replace it (whoever "
                         f"trusts its ca.pem then no longer trusts the hub)")
    hosts = args.host or list(DEFAULT_HOSTS)
    try:
        files = write_tls_folder(out, hosts, days=args.days)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {(exc.strerror or str(exc)).lower()}"
                         ) from None
    print(f"a local CA and a hub certificate for {', '.join(hosts)} written to {out}/")
    print(f"  ca.pem    the CA certificate: clients trust it (--tls-ca {files.ca})")
    print(f"            SHA-256 {fingerprint(files.ca)}")
    print("  ca.key    the CA's private key (0600): keep it private")
    print("  hub.pem   the hub's certificate, hub.key its private key (0600):")
    print(f"            opshub serve --tls-cert {files.cert} --tls-key {files.key}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from opshub.serve import cmd_serve as serve

    return serve(args)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from opshub.audit import cmd_verify

    return cmd_verify(args)


def cmd_audit_show(args: argparse.Namespace) -> int:
    from opshub.audit import cmd_show

    return cmd_show(args)


def cmd_replay(args: argparse.Namespace) -> int:
    from opshub.replay import cmd_replay as replay

    return replay(args)


def cmd_exercise(args: argparse.Namespace) -> int:
    from opshub.exercise import cmd_exercise as exercise

    return exercise(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from opshub.demo import run_demo
    from opshub.loops import run

    return run(run_demo(workdir=args.workdir, messages=args.messages))


def _emit(result: dict[str, Any], path: Path | None) -> None:
    """Print a benchmark's result as JSON, and write it to ``path`` too if given."""
    text = json.dumps(result, indent=2)
    if path is not None:
        path.write_text(text + "\n")
    print(text)


def cmd_load(args: argparse.Namespace) -> int:
    from opshub.load.command import cmd_load as load

    return load(args)


def cmd_load_merge(args: argparse.Namespace) -> int:
    from opshub.load.command import cmd_merge

    return cmd_merge(args)


def cmd_load_report(args: argparse.Namespace) -> int:
    from opshub.load.command import cmd_report

    return cmd_report(args)


def cmd_bench_hub(args: argparse.Namespace) -> int:
    from opshub.bench import BenchOptions, median_of, run_bench

    opts = BenchOptions(
        subscribers=args.subscribers, size=args.size, duration=args.duration,
        warmup=args.warmup, window=args.window, batch=args.batch,
        sub_procs=args.sub_procs, operations=args.operations, hub_url=args.hub,
        keys=args.keys, db=args.db, fanout=args.fanout, hub_loop=args.hub_loop,
        tls_ca=args.tls_ca, tls=args.tls)
    runs = [run_bench(opts) for _ in range(args.runs)]
    result = runs[0] if len(runs) == 1 else median_of(runs)
    _emit(result, args.json)
    return 0 if result.get("ok") else 1


def cmd_bench_crypto(args: argparse.Namespace) -> int:
    from client.e2ee.suite import CLASSIC, HYBRID
    from opshub.bench_crypto import run_crypto_bench

    result = run_crypto_bench(messages=args.messages, size=args.size, members=args.members,
                              runs=args.runs,
                              suite=(HYBRID if args.kem == "hybrid" else CLASSIC).name)
    _emit(result, args.json)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from opshub.checks import cmd_validate as validate

    return validate(args)


def cmd_schemas_docs(args: argparse.Namespace) -> int:
    from opshub.checks import cmd_schemas_docs as schemas_docs

    return schemas_docs(args)


def cmd_scenario_check(args: argparse.Namespace) -> int:
    from opshub.checks import cmd_scenario_check as scenario_check

    return scenario_check(args)


def cmd_teach(args: argparse.Namespace) -> int:
    from opshub.teach import cmd_teach as teach

    return teach(args)


def cmd_bench_exercise(args: argparse.Namespace) -> int:
    from opshub.bench_exercise import cmd_bench_exercise as bench

    return bench(args)


def cmd_bench_messages(args: argparse.Namespace) -> int:
    from opshub.bench_messages import run_messages_bench

    _emit(run_messages_bench(number=args.number, runs=args.runs), args.json)
    return 0


def _operation_id(text: str) -> str:
    from client.replay.run import check_operation_id

    try:
        return check_operation_id(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


# --- the parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opshub", description=DESCRIPTION, formatter_class=_Help,
        epilog=_examples("opshub keys --out keys",
                         "opshub serve --keys keys --db opshub.db --port 8765",
                         "opshub replay cocair-v --out replay-out",
                         "opshub <command> --help     (each command's options)") + "\n"
        + EXIT_STATUS)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log at debug level (to stderr)")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")
    _keys(sub)
    _serve(sub)
    _audit(sub)
    _cluster(sub)
    _replay(sub)
    _exercise(sub)
    _teach(sub)
    _scenario(sub)
    _validate(sub)
    _schemas(sub)
    _bench(sub)
    _load(sub)
    _demo(sub)
    return p


def _keys(sub: Any) -> None:
    k = _command(sub, "keys", "create an operation authority and unit credentials",
                 "Create an operation authority (authority.key, authority.pub) and one "
                 "identity per unit\n(units/<UNIT>.json, private, 0600), plus roster.json, "
                 "the public credentials a hub\npreloads. Without --unit: a small demo "
                 "roster (an OCU, four national units, a liaison).\n`opshub keys tls` "
                 "makes a local CA and a hub certificate for TLS.",
                 "--out keys",
                 "--out keys --unit OCU,BB,WCO-RILO,ocu --unit JM-CUSTOMS,JM,customs",
                 func=cmd_keys)
    k.add_argument("--out", type=Path, default=Path("keys"), metavar="DIR",
                   help="folder to write")
    k.add_argument("--unit", type=_parse_unit, action="append", metavar="UNIT,CC,AGENCY[,ROLE]",
                   help="a unit to issue a credential for (repeat); CC is an ISO 3166-1 "
                   "alpha-2 country, ROLE one of unit, ocu, liaison, observer (default: "
                   "unit); without --unit, the demo roster")
    k.add_argument("--days", type=float, default=365, help="credential validity in days")
    k.add_argument("--force", action="store_true",
                   help="replace an authority already in --out (its credentials stop working)")
    tools = k.add_subparsers(dest="keys_tool", metavar="<tool>")
    t = _command(tools, "keys tls", "a local CA and a hub certificate for a test setup",
                 "Make a local certificate authority and a hub certificate it signs (ECDSA "
                 "P-256), for a\ntest setup over TLS: ca.pem (what clients trust: --tls-ca), "
                 "ca.key (the CA's key, 0600),\nhub.pem and hub.key (0600) for `opshub serve "
                 "--tls-cert hub.pem --tls-key hub.key`.\nThe certificate is valid for each "
                 "--host (DNS names and IP addresses). Not a PKI for\nproduction: nothing "
                 "revokes a certificate.",
                 "--out keys/tls",
                 "--out keys/tls --host hub.example.org --host 10.0.0.5 --days 30",
                 func=cmd_keys_tls)
    t.add_argument("--out", type=Path, default=Path("keys/tls"), metavar="DIR",
                   help="folder to write")
    t.add_argument("--host", action="append", default=None, metavar="NAME|IP",
                   help="a host name or IP address agents reach the hub at (repeat; default: "
                   "127.0.0.1 and localhost)")
    t.add_argument("--days", type=float, default=365,
                   help="validity of the hub certificate in days (the CA's: five times that)")
    t.add_argument("--force", action="store_true",
                   help="replace a CA already in --out")


def _serve(sub: Any) -> None:
    s = _command(sub, "serve", "run a hub until Ctrl-C or SIGTERM",
                 "Run a hub: WebSocket agents at ws://HOST:PORT/v1/ws, the JSON HTTP API "
                 "(/v1/operations,\n/v1/directory; signed requests, docs/protocol.md 15) "
                 "beside it, one SQLite database;\n/healthz and /metrics on a listener of "
                 "their own (--metrics-host, --metrics-port: this\nmachine, PORT+1, by "
                 "default). It trusts KEYS/authority.pub, preloads KEYS/roster.json\nand "
                 "stops cleanly on Ctrl-C or SIGTERM (every acknowledged message is on disk). "
                 "With\n--tls-cert and --tls-key: wss:// and https://. See "
                 "docs/operations.md.",
                 "--keys keys --db opshub.db --port 8765",
                 "--keys keys --port 0 --ready-file hub.json    (scripts: read the URL "
                 "from hub.json)",
                 "--keys keys --tls-cert keys/tls/hub.pem --tls-key keys/tls/hub.key    "
                 "(wss://, https://)",
                 func=cmd_serve)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one")
    s.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address /healthz and /metrics listen on (plain http, no "
                   "authentication: keep it on a trusted network)")
    s.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="port /healthz and /metrics listen on (default: --port + 1, a free "
                   "one with --port 0; 0 picks a free one)")
    s.add_argument("--db", type=Path, default=Path("opshub.db"), metavar="FILE",
                   help="SQLite database (created if missing; -wal and -shm files beside it)")
    s.add_argument("--store", default="", metavar="nats://HOST:PORT[,...]",
                   help="keep the hub's state in a NATS JetStream cluster instead of --db: "
                   "several hub nodes given the same servers serve the same operations "
                   "(see docs/scale.md and opshub cluster)")
    s.add_argument("--keys", type=Path, default=Path("keys"), metavar="DIR",
                   help="key folder: authority.pub (trusted) and roster.json (preloaded)")
    s.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML file of limits and timeouts (see docs/operations.md)")
    s.add_argument("--ready-file", type=Path, default=None, metavar="FILE",
                   help="once listening, write {\"url\", \"http\", \"metrics\", \"pid\", "
                   "\"hub\", \"db\"} here as JSON (atomically; removed when the hub stops); "
                   "metrics: the base URL of /healthz and /metrics")
    s.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                   help="serve over TLS (wss://, https://) with this certificate (PEM, "
                   "with any intermediates); needs --tls-key. `opshub keys tls` makes one "
                   "with a local CA for a test setup")
    s.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                   help="the private key of --tls-cert (PEM)")
    s.add_argument("--audit-db", type=Path, default=None, metavar="FILE",
                   help="this node's audit trail (default: the database's name + .audit); "
                   "see docs/operations.md, \"Audit trail\"")
    s.add_argument("--audit-key", type=Path, default=None, metavar="FILE",
                   help="the audit trail's key and anchor file (default: the audit file's "
                   "name + .key); keep it off the database's volume")
    s.add_argument("--open-enrollment", action="store_true",
                   help="accept any credential the authority signed, enrolled or not")
    s.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                   help="event loop (asyncio was ahead of uvloop in 7 of 8 interleaved "
                   "benchmark rounds, see docs/performance.md)")
    s.add_argument("--fanout", choices=["coalesced", "per-delivery"], default="coalesced",
                   help="per-delivery: one frame and one awaited send per delivery (a naive "
                   "design, for benchmark comparison only)")


def _audit(sub: Any) -> None:
    from opshub.audit import DEFAULT_AUDIT

    a = _command(sub, "audit", "check and read a hub node's audit trail",
                 "Tools for a hub node's audit trail: enrollments, membership statements, "
                 "key-package\nclaims and failed authentications, hash-chained under a key "
                 "(see docs/operations.md,\n\"Audit trail\").")
    asub = a.add_subparsers(dest="audit", required=True, metavar="<tool>")
    v = _command(asub, "audit verify", "check that no entry was edited or removed",
                 "Check every entry of an audit file against its key and anchor. Prints "
                 "\"N entries, chain\nintact, head HASH\" and exits 0; otherwise names the "
                 "first bad entry and what is wrong\n(edited, missing, truncated, key "
                 "mismatch) and exits 1. Read-only: runs beside the hub.",
                 "", "--db /var/lib/opshub/opshub.db.audit --key /etc/opshub/audit.key",
                 func=cmd_audit_verify)
    s = _command(asub, "audit show", "print audit entries, one line each",
                 "Print an audit file's entries, oldest first: seq, time (UTC), kind, unit, "
                 "operation,\nsource address and details. Read-only.",
                 "--last 20", "--kind auth_failure", func=cmd_audit_show)
    for p in (v, s):
        p.add_argument("--db", type=Path, default=DEFAULT_AUDIT, metavar="FILE",
                       help="the audit file (a hub writes <its database>.audit unless "
                       "told otherwise)")
    v.add_argument("--key", type=Path, default=None, metavar="FILE",
                   help="the key and anchor file (default: the audit file's name + .key)")
    s.add_argument("--kind", default=None, metavar="KIND",
                   help="only entries of this kind (enrollment, operation_created, "
                   "statement, statement_refused, kp_claim, kp_claim_refused, "
                   "auth_failure, auth_failure_suppressed, ...)")
    s.add_argument("--last", type=int, default=None, metavar="N",
                   help="only the last N entries (of --kind)")


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from opshub.cluster_up import cmd_cluster_up as up

    return up(args)


def _cluster(sub: Any) -> None:
    c = _command(sub, "cluster", "a local NATS JetStream cluster and hub nodes",
                 "Tools for a local cluster: NATS servers with JetStream and hub nodes over "
                 "them (see\ndocs/scale.md).")
    csub = c.add_subparsers(dest="cluster", required=True, metavar="<tool>")
    u = _command(
        csub, "cluster up", "start NATS servers and hub nodes on 127.0.0.1 until Ctrl-C",
        "Start NATS servers with JetStream, routed into one cluster (streams replicated "
        "on three\nservers, each write on disk before it is acknowledged), and hub nodes "
        "over them\n(opshub serve --store), all on 127.0.0.1. Prints the NATS URLs, each "
        "node's WebSocket,\nHTTP and metrics URLs (/healthz, /metrics: a free port each) "
        "and the commands that replay\nan operation over them and load-test them; Ctrl-C "
        "or SIGTERM stops everything it started\n(exit 0). Creates the key folder if it "
        "does not exist.",
        "", "--keys keys --ready-file cluster.json",
        "--servers 5 --hubs 3 --data cluster-data    (data kept there)",
        "--hubs 0    (NATS servers only)",
        func=cmd_cluster_up)
    u.add_argument("--servers", type=int, default=3, help="NATS servers")
    u.add_argument("--hubs", type=int, default=2, help="hub nodes")
    u.add_argument("--keys", type=Path, default=Path("keys"), metavar="DIR",
                   help="key folder the hub nodes trust (created with the demo roster, as "
                   "`opshub keys` does, if missing)")
    u.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="folder of the servers' configuration, logs and JetStream data, "
                   "kept (default: a temporary folder, removed at exit unless --keep)")
    u.add_argument("--keep", action="store_true",
                   help="keep the temporary data folder at exit (its path is printed)")
    u.add_argument("--ready-file", type=Path, default=None, metavar="FILE",
                   help="once everything is up, write the URLs and pids here as JSON "
                   "(atomically; removed when it stops)")


def _replay(sub: Any) -> None:
    r = _command(
        sub, "replay", "replay a documented operation as encrypted traffic",
        "Replay a documented operation: every participant becomes an agent over a real "
        "WebSocket,\nthe documented cases and the background traffic become end-to-end "
        "encrypted messages on\na virtual clock, and the OCU's after-action report "
        "(report.json, report.md, report.html)\nchecks its tally against the published "
        "figures. Exits 1 if a figure is not reproduced.\n\n"
        "The replay starts a hub of its own unless --hub names a running one; then the "
        "participants\nthat --keys holds act with their own identity, the others get new "
        "credentials, and the run\nis an operation of its own on that hub: the scenario's "
        "code the first time, then CODE-2,\nCODE-3 ... (or --operation-id). Ctrl-C stops "
        "the replay and writes a partial report.\n\n"
        "At a speed factor at which the operation averages at most 10 messages per real "
        "second\n(cocair-v: up to about --speed 900), each message is printed as it "
        "is sent: virtual day\nand time, sender, type and summary (the agents send a "
        "virtual hour's messages together,\nat its end). Faster, and at max, one "
        "summary per virtual day with the day's documented\ncases. A progress line "
        "(percent of the planned messages, virtual clock, time left) is\nrewritten in "
        "place on a terminal, printed every 5 s otherwise.",
        "cocair-v",
        "trigger-vii --seed 7 --out out/trigger",
        "calypso-2 --speed 86400     (one virtual day per real second)",
        "cocair-v --speed 600        (ten virtual minutes per second, each message shown)",
        "trigger-vii --hub ws://127.0.0.1:8765/v1/ws --keys keys",
        func=cmd_replay)
    r.add_argument("operation", help="a scenario in seeds/ (cocair-v, trigger-vii, "
                   "calypso-2, liberterra-2, 30-days-at-sea-3) or the path to a scenario "
                   "file")
    r.add_argument("--speed", default="max",
                   help="max (as fast as the agents go) or a factor of real time, e.g. 3600 "
                   "for one virtual hour per second; each message is printed at factors "
                   "averaging at most 10 messages per second, else one summary per day")
    r.add_argument("--seed", type=int, default=1,
                   help="seed of the background traffic (the same seed gives the same traffic)")
    r.add_argument("--out", type=Path, default=Path("replay-out"), metavar="DIR",
                   help="folder for report.json, report.md and report.html")
    r.add_argument("--db", type=Path, default=None, metavar="FILE",
                   help="keep the database of the replay's own hub here (default: a temporary "
                   "file)")
    r.add_argument("--hub", action="append", default=None, metavar="URL[,URL...]",
                   help="replay over this running hub (ws://HOST:PORT/v1/ws) instead of "
                   "starting one; needs --keys. Several hub nodes of one cluster: a "
                   "comma-separated list, or --hub repeated; the agents are spread over "
                   "them round robin, each falling back on the others")
    r.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="with --hub: the key folder of that hub's authority (authority.key "
                   "signs the participants it has no units/<UNIT>.json for)")
    _tls_arguments(r, "replay", own=True)
    r.add_argument("--operation-id", type=_operation_id, default=None, metavar="ID",
                   help="the operation's id on the hub, e.g. DRILL-3 (default: the "
                   "scenario's code, numbered -2, -3 ... when the hub already has it)")


def _tls_arguments(parser: argparse.ArgumentParser, verb: str, *, own: bool) -> None:
    """--tls-ca (a running wss:// hub) and, for a tool that can start its own hub, --tls."""
    parser.add_argument("--tls-ca", type=Path, default=None, metavar="FILE",
                        help="with --hub wss://...: the CA certificate (PEM) that signed the "
                        "hub's certificate, e.g. the ca.pem of `opshub keys tls` (default: "
                        "the system's CAs)")
    if own:
        parser.add_argument("--tls", action="store_true",
                            help=f"{verb} over TLS: the tool's own hub serves wss:// with "
                            "a certificate of a fresh local CA")


def _exercise(sub: Any) -> None:
    x = _command(
        sub, "exercise", "run a tabletop exercise: people take seats, a director runs it",
        "Run a tabletop exercise over a documented operation: agents play every unit no "
        "person holds,\nas in a replay; each seat is a browser page for a person; the "
        "director's console paces\nthe clock, fires the injects and marks what the players "
        "did. The exercise process holds\nthe seats' keys: the hub sees ciphertext only. "
        "Prints the director's link and each seat's.\nCtrl-C ends it.",
        "cocair-v-tabletop",
        "cocair-v-tabletop --seat TG-JAITF-LFW --speed 3600 --port 8800",
        "my-drill.yaml --hub ws://127.0.0.1:8765/v1/ws --keys keys",
        func=cmd_exercise)
    x.add_argument("exercise", help="an exercise in seeds/exercises/ (cocair-v-tabletop) or "
                   "the path to an exercise file")
    x.add_argument("--seat", action="append", default=None, metavar="UNIT",
                   help="a unit a person holds (repeat; default: the exercise file's seats)")
    x.add_argument("--speed", type=float, default=60.0,
                   help="virtual seconds per real second when the clock runs (the director "
                   "can change it)")
    x.add_argument("--seed", type=int, default=1, help="seed of the background traffic")
    x.add_argument("--host", default="127.0.0.1", help="address the web app listens on")
    x.add_argument("--port", type=int, default=8800, help="port of the web app (0: any)")
    x.add_argument("--hub", action="append", default=None, metavar="URL[,URL...]",
                   help="run over this running hub (ws://HOST:PORT/v1/ws) instead of "
                   "starting one; needs --keys. Several hub nodes of one cluster: a "
                   "comma-separated list, or --hub repeated; the agents are spread over "
                   "them round robin, each falling back on the others")
    x.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="with --hub: the key folder of that hub's authority")
    _tls_arguments(x, "run", own=False)
    x.add_argument("--out", type=Path, default=Path("exercise-out"), metavar="DIR",
                   help="folder of the after-action reviews (run-N/review.html, .json, .md, "
                   ".csv), written when the exercise ends or the director asks")
    x.add_argument("--ready-file", type=Path, default=None, metavar="FILE",
                   help="write the links as JSON here once the web app listens")


def _teach(sub: Any) -> None:
    t = _command(
        sub, "teach", "teach an operation: step through its messages in a browser",
        "Open a lesson on an operation: a browser page that steps through its storylines "
        "one message\nat a time (forward, back, play at a pace, jump to a storyline or a "
        "day), each sent for\nreal over a hub of the lesson's own, and shows it three "
        "ways: as written, as the hub\nstores it (read from the hub's database) and as "
        "each member reads it. The instructor\ncan remove and add members and watch who "
        "can still read. Prints the lesson's link.\nCtrl-C ends it. Guide: "
        "docs/teaching.md.",
        "cocair-v",
        "trigger-vii --port 8900 --late BS-RBPF",
        "my-operation.yaml --explanations my-texts.fr.yaml",
        func=cmd_teach)
    t.add_argument("scenario", help="a scenario in seeds/ (cocair-v, trigger-vii, "
                   "calypso-2, liberterra-2, 30-days-at-sea-3) or the path to a scenario "
                   "file")
    t.add_argument("--late", action="append", default=None, metavar="UNIT",
                   help="a unit left out when the channel opens, to add during the lesson "
                   "(repeat)")
    t.add_argument("--explanations", type=Path, default=None, metavar="FILE",
                   help="the texts shown beside each message (default: the project's "
                   "client/teach/explanations.yaml; copy it to edit or translate)")
    t.add_argument("--host", default="127.0.0.1", help="address the lesson page listens on")
    t.add_argument("--port", type=int, default=8900, help="port of the lesson page (0: any)")
    t.add_argument("--ready-file", type=Path, default=None, metavar="FILE",
                   help="write the link as JSON here once the page listens")


def _scenario(sub: Any) -> None:
    sn = _command(sub, "scenario", "scenario tools",
                  "Tools for scenario files (format: schemas/scenario.schema.json, guide: "
                  "docs/scenarios.md).")
    snsub = sn.add_subparsers(dest="scenario", required=True, metavar="<tool>")
    sck = _command(snsub, "scenario check", "check scenario files without running them",
                   "Check scenario files as a replay would before anything runs: the "
                   "schema, participants,\nevery storyline message, the published figures, "
                   "and that the traffic can be generated.\nEach problem is printed with "
                   "file, line and JSON path; exits 1 if any file has one.",
                   "seeds/*.yaml", "my-operation.yaml --seed 7", func=cmd_scenario_check)
    sck.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                     help="scenario files, or names in seeds/")
    sck.add_argument("--seed", type=int, default=1, help="seed of the traffic to generate")


def _validate(sub: Any) -> None:
    v = _command(sub, "validate", "check message files against the schemas",
                 "Check message files (JSON or YAML) against schemas/, printing each "
                 "problem as\nFILE: /json/path: reason. Exits 0 only when every file is "
                 "valid.",
                 "schemas/examples/valid/*.json", "report.yaml --references",
                 "messages/ --json", func=cmd_validate)
    v.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="message files, or folders of .json/.yaml files")
    v.add_argument("--references", action="store_true",
                   help="take the files as one operation's traffic: ids unique, every "
                   "refers_to names one of them")
    v.add_argument("--json", action="store_true", help="print the results as JSON")
    v.add_argument("-q", "--quiet", action="store_true", help="print problems only")


def _schemas(sub: Any) -> None:
    sc = _command(sub, "schemas", "schema tools",
                  "Tools for the message schemas in schemas/.")
    scsub = sc.add_subparsers(dest="schemas", required=True, metavar="<tool>")
    sd = _command(scsub, "schemas docs", "generate docs/schemas.md from schemas/",
                  "Generate the schema reference (docs/schemas.md) from schemas/, or check "
                  "that it is current.", "", "--check", func=cmd_schemas_docs)
    sd.add_argument("--out", type=Path, default=Path("docs/schemas.md"), metavar="FILE",
                    help="file to write")
    sd.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if the file is stale")


def _bench(sub: Any) -> None:
    b = _command(sub, "bench", "benchmarks of the hub, the encryption and the schema checks",
                 "Benchmarks. Each prints its result as JSON (and writes it with --json). "
                 "See\ndocs/performance.md for the method; scripts/bench runs the "
                 "comparison.")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="<benchmark>")
    bh = _command(
        bsub, "bench hub", "durable publish and fan-out throughput and latency of a hub",
        "One publisher keeps a window of unacknowledged publishes to an operation; "
        "subscribed agents\nin separate processes measure publish-to-delivery latency. The "
        "hub runs as its own process\n(its CPU time and peak memory are reported) unless "
        "--hub names a running one; there each\nrun publishes to operations of its own, "
        "BENCH-<run>-<i>, which stay on that hub.\nExits 1 if a message was lost or "
        "delivered out of order.",
        "--subscribers 30 --size 1024 --duration 10 --json bench.json",
        "--hub ws://127.0.0.1:8765/v1/ws --keys keys --duration 5",
        func=cmd_bench_hub)
    bh.add_argument("--subscribers", type=int, default=30, help="subscribed agents")
    bh.add_argument("--size", type=int, default=1024, help="payload bytes per message")
    bh.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    bh.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of publishing before the measurement")
    bh.add_argument("--window", type=int, default=4096,
                    help="unacknowledged publishes the publisher keeps in flight")
    bh.add_argument("--batch", type=int, default=256, help="publishes per frame")
    bh.add_argument("--sub-procs", type=int, default=2,
                    help="processes the subscribers are spread over")
    bh.add_argument("--operations", type=int, default=1,
                    help="operations the publisher spreads its messages over")
    bh.add_argument("--hub", default=None, metavar="URL",
                    help="benchmark this running hub (ws://HOST:PORT/v1/ws) instead of "
                    "starting one; needs --keys")
    bh.add_argument("--keys", type=Path, default=None, metavar="DIR",
                    help="with --hub: the key folder of that hub's authority (it signs the "
                    "bench's units)")
    _tls_arguments(bh, "benchmark", own=True)
    bh.add_argument("--db", type=Path, default=None, metavar="FILE",
                    help="database of the started hub (default: a temporary file)")
    bh.add_argument("--fanout", choices=["coalesced", "per-delivery"], default="coalesced",
                    help="fan-out design of the started hub (per-delivery: the naive "
                    "reference, one awaited send per delivery)")
    bh.add_argument("--hub-loop", choices=["asyncio", "uvloop"], default="asyncio",
                    help="event loop of the started hub")
    bh.add_argument("--runs", type=int, default=1,
                    help="repeat and report the median of each figure (and every run)")
    bh.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="write the result here too")
    bc = _command(bsub, "bench crypto", "end-to-end encryption cost on one core",
                  "The end-to-end encryption's cost on one core: encrypt+sign and "
                  "verify+decrypt rates\nagainst bare Ed25519 verification, and a rekey "
                  "of --members members.",
                  "", "--kem x25519 --members 100 --json crypto.json",
                  func=cmd_bench_crypto)
    bc.add_argument("--messages", type=int, default=2000, help="messages per round")
    bc.add_argument("--size", type=int, default=1024, help="content bytes per message")
    bc.add_argument("--members", type=int, default=41, help="operation size for the rekey")
    bc.add_argument("--kem", choices=["hybrid", "x25519"], default="hybrid",
                    help="key encapsulation of the rekey: hybrid (ML-KEM-768 + X25519) or "
                    "classical X25519")
    bc.add_argument("--runs", type=int, default=5, help="rounds; medians are reported")
    bc.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="write the result here too")
    bx = _command(bsub, "bench exercise", "how late the director's console shows the traffic",
                  "Start `opshub exercise` (its own hub), run its clock and follow the "
                  "console as a browser\ndoes (server-sent events, then a fetch): for each "
                  "message, the time from the OCU's agent\nreading it to the console's "
                  "fetch answering with it; and the exercise process's CPU.\nExits 1 "
                  "unless p99 <= 250 ms and the process uses under one core.",
                  "", "--duration 30 --speed 3600 --json exercise.json",
                  func=cmd_bench_exercise)
    bx.add_argument("--exercise", default="cocair-v-tabletop",
                    help="exercise file or seeds/exercises name")
    bx.add_argument("--duration", type=float, default=30.0, help="seconds of clock followed")
    bx.add_argument("--speed", type=float, default=3600.0,
                    help="virtual seconds per real second")
    bx.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="write the result here too")
    bm = _command(bsub, "bench messages", "schema check cost per message",
                  "What checking a message costs, in microseconds per message, for every "
                  "example in\nschemas/examples/valid.",
                  "", "--number 100 --runs 3 --json messages.json",
                  func=cmd_bench_messages)
    bm.add_argument("--number", type=int, default=500, help="calls per example per round")
    bm.add_argument("--runs", type=int, default=5, help="rounds; medians are reported")
    bm.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="write the result here too")


def _load(sub: Any) -> None:
    from opshub.load import command

    lp = _command(sub, "load", command.SUMMARY, command.DESCRIPTION, *command.EXAMPLES,
                  func=cmd_load)
    command.add_arguments(lp)
    tools = lp.add_subparsers(dest="load_tool", metavar="<tool>")
    mp = _command(tools, "load merge", command.MERGE_SUMMARY, command.MERGE_DESCRIPTION,
                  *command.MERGE_EXAMPLES, func=cmd_load_merge)
    command.add_merge_arguments(mp)
    rp = _command(tools, "load report", command.REPORT_SUMMARY, command.REPORT_DESCRIPTION,
                  *command.REPORT_EXAMPLES, func=cmd_load_report)
    command.add_report_arguments(rp)


def _demo(sub: Any) -> None:
    d = _command(sub, "demo", "a short tour: one encrypted operation over an embedded hub",
                 "A short tour of the hub and the encryption: an embedded hub on 127.0.0.1, "
                 "six agents,\none operation; a unit joins late, one drops and resumes, one "
                 "is removed, and the hub's\ndatabase is scanned for plaintext.",
                 "", "--workdir demo --messages 6", func=cmd_demo)
    d.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                   help="keep keys and database here (default: a temporary folder)")
    d.add_argument("--messages", type=int, default=12,
                   help="messages of the storyline to send (2 to 12)")


# --- running a command -------------------------------------------------------------------


def _opshub_error(error: BaseException) -> OpshubError | None:
    """The error to show for an exception group whose every leaf is an OpshubError (the
    tasks of a replay fail together), else None."""
    if isinstance(error, OpshubError):
        return error
    if isinstance(error, BaseExceptionGroup):
        leaves = [_opshub_error(e) for e in error.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"opshub {args.name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # e.g. `opshub keys | head`: the reader has gone, nothing to say
        sys.stderr.close()
        return 0
    except (OpshubError, BaseExceptionGroup) as exc:
        shown = _opshub_error(exc)
        if shown is None:
            raise
        print(f"opshub {args.name}: {shown.message}", file=sys.stderr)
        return FAILED_TO_RUN


if __name__ == "__main__":
    sys.exit(main())
