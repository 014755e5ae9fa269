"""The file checkers: ``opshub validate`` (message files), ``opshub schemas docs`` (the
generated schema reference) and ``opshub scenario check`` (scenario files). Each prints
every problem it finds and returns 1 if there was one; nothing runs a hub.
"""

from __future__ import annotations

import argparse
import json
import sys

from protocol.errors import ScenarioError, UsageError


def cmd_validate(args: argparse.Namespace) -> int:
    from client.messages import default_catalog
    from client.messages.files import validate_files

    results = validate_files(default_catalog(), args.files, references=args.references)
    if not results:
        raise UsageError("no message files given")
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
    from client.messages.docgen import generate as generate_docs

    text = generate_docs(default_catalog())
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


def cmd_scenario_check(args: argparse.Namespace) -> int:
    from client.replay.plan import make_plan
    from client.replay.scenario import load, resolve

    status = 0
    for name in args.scenarios:
        try:
            scenario = load(resolve(name))
            plan = make_plan(scenario, args.seed)
        except ScenarioError as exc:
            print(exc.message, file=sys.stderr)
            status = 1
            continue
        print(f"{scenario.path}: ok ({len(scenario.participants)} participants, "
              f"{len(scenario.steps)} storyline messages, {len(plan.events)} planned "
              f"events, {plan.expected_messages} messages)")
    return status
