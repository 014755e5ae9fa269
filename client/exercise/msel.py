"""Inject lists (MSEL): read the sheet an exercise director keeps (CSV, XLSX or JSON), check
every row against the scenario and the message schemas, and write it back as CSV.

Nothing is half-loaded: every problem of every row is collected, each with its row, column
and (inside a message) JSON path, and raised at once as one ScenarioError. The rows are
checked by client/exercise/injects.py, as the exercise file's inline injects are. Pure apart
from reading and writing the sheet files.

A sheet has one row per inject, with these columns (header names are matched without regard
to case, spaces or dashes)::

    number time sender to type content expected_action notes
    seat action within target score description            (one expectation)

A row whose number is empty adds one more expectation to the inject above it and fills only
the expectation columns. ``content`` is the message as JSON, without its envelope: the type
comes from ``type``; id, time, sender and operation are set when the inject is sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.exercise.injects import EXPECTATION_FIELDS, Setting, build
from client.exercise.model import Inject
from client.exercise.times import format_offset
from protocol.errors import ScenarioError

#: Columns of a sheet, in the order ``dump_csv`` writes them.
COLUMNS = ("number", "time", "sender", "to", "type", "content", "expected_action", "notes",
           *EXPECTATION_FIELDS)
REQUIRED_COLUMNS = ("number", "time", "sender", "type", "content")
#: Other names directors give the same columns.
ALIASES = {"no": "number", "inject": "number", "message_type": "type", "message": "content",
           "intended_seat": "to", "recipients": "to", "evaluator_notes": "notes"}


@dataclass(frozen=True, slots=True)
class MselProblem:
    """One thing wrong with a sheet: its row as a spreadsheet numbers it (the header is row
    1; in a JSON list, the inject's position from 1), the column (field), the JSON path
    inside the message when the problem is in ``content``, and what is wrong."""

    file: str
    row: int | None
    column: str
    path: str
    message: str
    cell: str = ""  # "F4" in a spreadsheet

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row else []
        if self.column:
            where.append(f"column {self.column}" + (f" ({self.cell})" if self.cell else ""))
        inside = f"{self.path}: " if self.path else ""
        return f"{self.file}: {', '.join(where) or 'sheet'}: {inside}{self.message}"



# --- sources ----------------------------------------------------------------------------


def read_msel(path: Path, setting: Setting) -> tuple[list[Inject], list[MselProblem]]:
    """The injects of a sheet (.csv, .xlsx or .json) and every problem found; no inject
    at all when there is any problem."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path, setting)
    if suffix not in (".csv", ".xlsx"):
        return [], [MselProblem(str(path), None, "", "", "an inject list is a .csv, .xlsx or "
                                ".json file")]
    try:
        rows = _csv_rows(path) if suffix == ".csv" else _xlsx_rows(path)
    except _Unreadable as exc:
        return [], [MselProblem(str(path), exc.row, "", "", exc.reason)]
    sheet = _Sheet.of(path, rows)
    injects = build(sheet.records, setting, sheet.report)
    return ([] if sheet.problems else injects), sheet.problems


def load_msel(path: Path, setting: Setting) -> list[Inject]:
    """Load and check a sheet. Raises ScenarioError listing every problem (MselProblem)."""
    injects, problems = read_msel(path, setting)
    if problems:
        raise ScenarioError(f"{path}: {len(problems)} problem(s):\n  "
                            + "\n  ".join(map(str, problems)), problems=problems)
    return injects


class _Unreadable(Exception):
    def __init__(self, reason: str, row: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.row = reason, row


def _csv_rows(path: Path) -> list[tuple[int, list[Any]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise _Unreadable(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    # a spreadsheet saved in a locale whose decimal mark is a comma separates by ';'
    header = text.partition("\n")[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return [(n, row) for n, row in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise _Unreadable(f"not valid CSV: {exc}", reader.line_num) from None


def _xlsx_rows(path: Path) -> list[tuple[int, list[Any]]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, data_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError) as exc:
        raise _Unreadable(f"cannot read as an XLSX workbook: {exc}") from None
    try:
        named = [ws for ws in book.worksheets if ws.title.strip().lower() == "msel"]
        sheet = named[0] if named else book.worksheets[0]
        return [(n, [_cell_text(v) for v in values])
                for n, values in enumerate(sheet.iter_rows(min_row=1, values_only=True),
                                           start=1)]
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV would hold: dates as ``YYYY-MM-DD HH:MM``
    (UTC, as the sheet shows them), whole numbers without a decimal point."""
    match value:
        case None:
            return ""
        case dt.datetime():
            return value.isoformat(sep=" ", timespec="seconds")
        case bool():
            return "true" if value else "false"
        case float() if value.is_integer():
            return str(int(value))
    return str(value)


@dataclass(slots=True)
class _Sheet:
    """Rows of a spreadsheet grouped into injects, with the cell of each field so that a
    problem can name its row and column."""

    file: str
    records: list[dict[str, Any]] = field(default_factory=list)
    cells: list[dict[str, tuple[int, int, str]]] = field(default_factory=list)
    problems: list[MselProblem] = field(default_factory=list)

    @classmethod
    def of(cls, path: Path, rows: Iterable[tuple[int, list[Any]]]) -> _Sheet:
        sheet = cls(str(path))
        rows = [(n, [str(c).strip() for c in cells]) for n, cells in rows if any(
            str(c).strip() for c in cells)]
        if not rows:
            sheet.problem(None, 0, "", "", "the sheet is empty: no header row")
            return sheet
        (head, header), *body = rows
        columns = sheet.header(head, header)
        if columns is not None:
            for n, cells in body:
                sheet.row(n, cells, columns)
        return sheet

    def problem(self, row: int | None, col: int, column: str, path: str, message: str) -> None:
        cell = f"{_letter(col)}{row}" if row and column else ""
        self.problems.append(MselProblem(self.file, row, column, path, message, cell))

    def header(self, n: int, header: list[str]) -> dict[str, int] | None:
        columns: dict[str, int] = {}
        for col, title in enumerate(header):
            if not title:
                continue
            name = re.sub(r"[\s-]+", "_", title.lower())
            name = ALIASES.get(name, name)
            if name not in COLUMNS:
                self.problem(n, col, title, "", f"unknown column {title!r}; the columns are "
                             f"{', '.join(COLUMNS)}")
            elif name in columns:
                self.problem(n, col, name, "", f"column {name!r} appears twice")
            else:
                columns[name] = col
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        for name in missing:
            self.problem(n, 0, "", "", f"missing column {name!r}")
        return None if self.problems else columns

    def row(self, n: int, cells: list[str], columns: dict[str, int]) -> None:
        named = set(columns.values())
        for col, value in enumerate(cells):
            if value and col not in named:
                self.problem(n, col, _letter(col), "", f"{value!r} is in a column without a "
                             "header")
        values = {name: cells[col] if col < len(cells) else "" for name, col in columns.items()}
        where = {name: (n, col, name) for name, col in columns.items()}
        expectation = {k: values[k] for k in EXPECTATION_FIELDS if values.get(k)}
        if values["number"]:
            self.records.append({**{c: values.get(c, "") for c in COLUMNS
                                    if c not in EXPECTATION_FIELDS}, "expectations": []})
            self.cells.append({f"/{name}": place for name, place in where.items()
                               if name not in EXPECTATION_FIELDS})
            self.cells[-1][""] = where["number"]
        elif not self.records:
            self.problem(n, columns["number"], "number", "", "missing: the first row of the "
                         "list must start an inject")
            return
        else:
            for name in (c for c in values if values[c] and c not in EXPECTATION_FIELDS):
                self.problem(n, columns[name], name, "", "a row without a number adds an "
                             "expectation to the inject above it: only "
                             f"{', '.join(EXPECTATION_FIELDS)} may be filled")
        if not expectation:
            return
        expectations, table = self.records[-1]["expectations"], self.cells[-1]
        base = f"/expectations/{len(expectations)}"
        expectations.append(expectation)
        table[base] = min((where[c] for c in EXPECTATION_FIELDS if c in where),
                          key=lambda place: place[1])
        table.setdefault("/expectations", table[base])
        for name in EXPECTATION_FIELDS:
            if name in where:
                table[f"{base}/{name}"] = where[name]

    def report(self, index: int, pointer: str, message: str) -> None:
        table, prefix = self.cells[index], pointer
        while prefix not in table:
            prefix = prefix.rsplit("/", 1)[0]
        n, col, name = table[prefix]
        inside = pointer[len(prefix):] if prefix == "/content" else ""
        self.problem(n, col, name, inside, message)


def _letter(col: int) -> str:
    """Spreadsheet letters of a 0-based column: 0 -> A, 26 -> AA."""
    out = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def _read_json(path: Path, setting: Setting) -> tuple[list[Inject], list[MselProblem]]:
    file = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [], [MselProblem(file, None, "", "", f"cannot read: {exc.strerror or exc}")]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [], [MselProblem(file, None, "", "", f"not valid JSON: {exc}")]
    if not isinstance(data, list):
        return [], [MselProblem(file, None, "", "", "a JSON inject list is an array of "
                                "injects, one object each")]
    problems: list[MselProblem] = []

    def report(index: int, pointer: str, message: str) -> None:
        column, inside = pointer.lstrip("/"), ""
        if pointer.startswith("/content"):
            column, inside = "content", pointer[len("/content"):]
        problems.append(MselProblem(file, index + 1, column, inside, message))

    injects = build(data, setting, report)
    return ([] if problems else injects), problems


# --- export -----------------------------------------------------------------------------


def table(injects: Iterable[Inject]) -> list[list[str]]:
    """The sheet of ``injects``: a header row, then one row per inject and one more for
    each of its expectations after the first."""
    rows = [list(COLUMNS)]
    for inject in injects:
        content = {k: v for k, v in inject.message.items() if k != "type"}
        head = [inject.number, format_offset(inject.at), inject.sender, "; ".join(inject.to),
                str(inject.message.get("type", "")),
                json.dumps(content, ensure_ascii=False), inject.expected_action, inject.notes]
        blank = [""] * len(head)
        for k, e in enumerate(inject.expectations or (None,)):
            tail = ["", "", "", "", "", ""] if e is None else [
                e.seat, e.action.value, format_offset(e.within), e.target or "", str(e.score),
                e.description]
            rows.append((head if k == 0 else blank) + tail)
    return rows


def dump_csv(injects: Iterable[Inject]) -> str:
    """``injects`` as CSV text (comma-separated, ``\\n`` line ends), read back by
    ``load_msel`` to the same injects."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table(injects))
    return out.getvalue()


def write_csv(injects: Iterable[Inject], path: Path) -> None:
    """Write ``injects`` to ``path`` as CSV. Raises OSError when it cannot be written."""
    path.write_text(dump_csv(injects), encoding="utf-8")
