"""``opshub bench messages``: what checking a message costs, per message, in microseconds.

For every valid example in schemas/examples/valid (all message types), on one core:

- ``schema_us``: the compiled schema check (jsonschema-rs ``is_valid``, the fast path of
  a valid message);
- ``check_us``: everything a sender runs before encrypting and a receiver after
  decrypting: schema, the rules beyond it (including the nominal-marking rule, which
  evaluates the schema's annotations) and the reference ledger;
- ``codec_us``: JSON encode + decode of the channel content;
- ``invalid_us``: collecting and phrasing every problem of an invalid example (the slow
  path, taken only by a message that fails).

Figures are medians over ``runs`` rounds; each round times ``number`` calls per example.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from client.messages import content, default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.checks import Ledger, problems
from client.messages.content import load_file


def _per_call_us(fn: Callable[[], Any], number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number * 1e6


def _round_trip(message: dict[str, Any]) -> Any:
    return content.decode(content.encode(message))


def run_messages_bench(*, number: int = 500, runs: int = 5) -> dict[str, Any]:
    cat = default_catalog()
    examples = SCHEMA_DIR / "examples"
    valid = [load_file(p) for p in sorted((examples / "valid").glob("*.json"))]
    invalid = [load_file(p) for p in sorted((examples / "invalid").glob("*.json"))]
    ledger = Ledger(complete=False)
    rounds: list[dict[str, float]] = []
    for _ in range(runs):
        schema = [_per_call_us(partial(cat.schemas[(m["type"], m["version"])]
                                       .validator.is_valid, m), number) for m in valid]
        check = [_per_call_us(partial(problems, cat, m, ledger), number) for m in valid]
        codec = [_per_call_us(partial(_round_trip, m), number) for m in valid]
        slow = [_per_call_us(partial(problems, cat, m), max(1, number // 10))
                for m in invalid]
        rounds.append({"schema_us": statistics.median(schema),
                       "check_us": statistics.median(check),
                       "check_max_us": max(check),
                       "codec_us": statistics.median(codec),
                       "invalid_us": statistics.median(slow) if slow else 0.0})
    med = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0]}
    sizes = [len(content.encode(m)) for m in valid]
    return {**med, "examples": len(valid), "invalid_examples": len(invalid),
            "median_message_bytes": statistics.median(sizes), "rounds": rounds,
            "options": {"number": number, "runs": runs},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()}}
