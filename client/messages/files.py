"""Validation of message files (what ``opshub validate`` runs): JSON or YAML, one
message per file, every problem of every file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.messages.catalog import Catalog, Problem
from client.messages.checks import Ledger, problems
from client.messages.content import load_file
from protocol.errors import SchemaError

SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class FileResult:
    path: Path
    problems: list[Problem]
    message: Any = None

    @property
    def ok(self) -> bool:
        return not self.problems


def expand(paths: list[Path]) -> list[Path]:
    """The files named, with each folder replaced by its message files (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES))
        else:
            out.append(p)
    return out


def validate_files(catalog: Catalog, paths: list[Path], *,
                   references: bool = False) -> list[FileResult]:
    """Every problem of every file. With ``references``, the files are taken as one
    operation's traffic: ids must be unique across them and every reference must name
    one of them (of the right type)."""
    results: list[FileResult] = []
    for path in expand(paths):
        try:
            message = load_file(path)
        except SchemaError as exc:
            results.append(FileResult(path, exc.problems))
            continue
        except OSError as exc:
            results.append(FileResult(path, [Problem("", "file", f"cannot read: "
                                                     f"{exc.strerror or exc}")]))
            continue
        results.append(FileResult(path, problems(catalog, message), message))
    if references:
        ledger = Ledger()
        valid = [r for r in results if r.ok]
        for r in valid:
            ledger.record(r.message)
        for i, r in enumerate(results):
            if r.ok:
                own = ledger.seen.pop(r.message["id"])  # a message may not refer to itself
                found = [p for p in ledger.problems(r.message) if p.keyword != "unique"]
                ledger.seen[r.message["id"]] = own
                if found:
                    results[i] = FileResult(r.path, found, r.message)
        ids: dict[str, Path] = {}
        for i, r in enumerate(results):
            if r.ok:
                first = ids.setdefault(r.message["id"], r.path)
                if first != r.path:
                    results[i] = FileResult(r.path, [Problem(
                        "/id", "unique", f"id {r.message['id']!r} is also used by "
                        f"{first}")], r.message)
    return results
