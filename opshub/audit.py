"""``opshub audit verify`` and ``opshub audit show``: check a hub node's audit trail
against its key and anchor, and print its entries for people (hub/audit.py, and
docs/operations.md, "Audit trail"). Read-only: neither command writes to the files, so
both may run beside a hub that is writing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from hub.audit import default_audit_path
from hub.audit_file import Entry, entries, key_path_for, open_readonly, verify

#: The audit file of a hub started with the default database (``opshub serve``).
DEFAULT_AUDIT = default_audit_path(Path("opshub.db"))


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 and one line when the chain is intact; 1 naming the first bad entry."""
    path: Path = args.db
    key: Path = args.key or key_path_for(path)
    verdict = verify(path, key)
    if verdict.problem is not None:
        print(f"{path}: {verdict.problem}")
        return 1
    after = (f"; the last {verdict.unanchored} after the anchor (the hub stopped before it "
             f"saved it)" if verdict.unanchored else "")
    print(f"{verdict.count} entries, chain intact, head {verdict.head}{after}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with contextlib.closing(open_readonly(args.db)) as conn:
        for entry in entries(conn, kind=args.kind, last=args.last):
            print(line(entry))
    return 0


def line(entry: Entry) -> str:
    """One entry for people: seq, UTC time, kind, unit, operation, source, details."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.at / 1000))
    who = " ".join(f"{name}={value}" for name, value in (
        ("unit", entry.unit), ("op", entry.op), ("from", entry.source)) if value)
    details = " ".join(f"{k}={_value(v)}" for k, v in json.loads(entry.detail).items())
    return (f"{entry.seq:>6} {when}.{entry.at % 1000:03d}Z {entry.kind:<23} "
            f"{who} {details}".rstrip())


def _value(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)
