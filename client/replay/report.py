"""The OCU's after-action report of a replayed operation: report.json, report.md and a
self-contained report.html (inline style and SVG charts, no scripts, nothing fetched).

Renders the dict the replay engine builds and nothing else: no clock, no randomness, so one
dict always gives the same bytes. Only ``operation``, ``messages``, ``checks`` and
``totals`` are required; any other section whose data is absent or empty is left out.
The only I/O is ``write_reports`` writing the three files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

from client.messages.values import utc_minute
from client.replay.report_svg import (
    CHART_CSS,
    column_chart,
    grouped_hbar_chart,
    hbar_chart,
    heatmap,
)

TOP_COUNTRIES = 20
TOP_PAIRS = 20  # pairs listed in the markdown
TOP_TALKERS = 15  # senders and recipients in the HTML heatmap


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    """Write ``out``/report.json, report.md and report.html (creating ``out``) and return
    their paths. Raises OSError if a file cannot be written, TypeError if the dict holds a
    value JSON cannot encode."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "report.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
    }
    paths = []
    for name, text in texts.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# -- numbers ------------------------------------------------------------------------------


def fmt_count(value: Any) -> str:
    """A number with thousands separators and at most two decimals; "—" for none."""
    return _fmt(value, 2)


def fmt_measure(value: Any) -> str:
    """A quantity (kg, litres, minutes) with thousands separators and at most one decimal."""
    return _fmt(value, 1)


def _fmt(value: Any, decimals: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt_metric(metric: str) -> Callable[[Any], str]:
    return fmt_measure if metric.endswith((".kg", ".l", "_kg")) else fmt_count


def _num(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else 0.0


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


# -- shared shape -------------------------------------------------------------------------


class Column(NamedTuple):
    key: str
    header: str
    fmt: Callable[[Any], str] = fmt_count
    numeric: bool = True


DAY_COLUMNS = (Column("day", "Day"), Column("date", "Date", _text, False),
               Column("messages", "Messages"), Column("reports", "Seizure reports"),
               Column("items", "Items seized"))
COUNTRY_COLUMNS = (Column("country", "Country", _text, False),
                   Column("name", "Name", _text, False), Column("messages", "Messages"),
                   Column("reports", "Seizure reports"), Column("items", "Items seized"),
                   Column("arrests", "Arrests"))
COMMODITY_COLUMNS = (Column("commodity", "Commodity", _text, False),
                     Column("label", "Label", _text, False), Column("kg", "kg", fmt_measure),
                     Column("count", "Count"), Column("items", "Items seized"))
DESK_COLUMNS = (Column("desk", "Desk", _text, False), Column("count", "Answered"),
                Column("p50_minutes", "p50 (min)", fmt_measure),
                Column("p90_minutes", "p90 (min)", fmt_measure),
                Column("max_minutes", "max (min)", fmt_measure))


class Table(NamedTuple):
    headers: list[str]
    numeric: list[bool]
    rows: list[list[str]]
    row_classes: Sequence[str] = ()


def _table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> Table:
    """A table of the columns that some row has a value for."""
    used = [c for c in columns if any(r.get(c.key) is not None for r in rows)]
    return Table([c.header for c in used], [c.numeric for c in used],
                 [[c.fmt(r.get(c.key)) for c in used] for r in rows])


def _rows(report: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = report.get(key)
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _mapping(report: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = report.get(key)
    return value if isinstance(value, dict) else {}


def verdict(checks: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Whether every check passed, and the sentence saying so."""
    failed = sum(1 for c in checks if not c.get("ok"))
    if not checks:
        return True, "No published figures to check"
    if failed:
        return False, f"{failed} of {len(checks)} checks FAILED"
    return True, f"All {len(checks)} published figures reproduced"


def _checks_table(checks: Sequence[Mapping[str, Any]]) -> Table:
    with_text = any(c.get("text") for c in checks)
    headers = ["Metric", "Rule", "Published", "Observed", "OK"] + (["Published as"] * with_text)
    rows, classes = [], []
    for c in checks:
        fmt = _fmt_metric(str(c.get("metric", "")))
        rule = _text(c.get("rule"))
        if c.get("tolerance") is not None:
            rule += f" ±{fmt_count(c['tolerance'])}"
        row = [_text(c.get("metric")), rule, fmt(c.get("published")), fmt(c.get("observed")),
               "✓" if c.get("ok") else "✗ FAILED"]
        rows.append(row + ([_text(c.get("text") or "")] * with_text))
        classes.append("ok" if c.get("ok") else "fail")
    numeric = [False, False, True, True, False] + [False] * with_text
    return Table(headers, numeric, rows, classes)


def _totals_table(totals: Mapping[str, Any]) -> Table:
    rows = [[key, _fmt_metric(key)(value)] for key, value in totals.items()]
    return Table(["Metric", "Value"], [False, True], rows)


def _by_type(report: Mapping[str, Any]) -> list[tuple[str, float]]:
    counts = [(str(k), _num(v)) for k, v in _mapping(report, "by_type").items()]
    return sorted(counts, key=lambda kv: (-kv[1], kv[0]))


def _desks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    desks = _mapping(_mapping(report, "response_times"), "by_desk")
    return [{"desk": name, **stats} for name, stats in desks.items() if isinstance(stats, dict)]


def _pairs(report: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    pairs = [(str(t.get("from")), str(t.get("to")), _num(t.get("messages")))
             for t in _rows(report, "talk")]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def _rejected(report: Mapping[str, Any]) -> tuple[list[tuple[str, float]], int]:
    """Units that rejected messages, most first, and how many units rejected none."""
    counts = [(str(k), _num(v)) for k, v in _mapping(report, "rejected").items()]
    some = sorted(((k, v) for k, v in counts if v > 0), key=lambda kv: (-kv[1], kv[0]))
    return some, len(counts) - len(some)


def _heading(report: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """The title, the operation line, and the replay line (None without replay facts)."""
    name = str(report.get("name") or report["operation"])
    op = [str(report["operation"])]
    if report.get("start") or report.get("end"):
        op.append(f"{_text(report.get('start'))} to {_text(report.get('end'))}")
    if report.get("ocu"):
        op.append(f"coordinated by {report['ocu']}")
    op.append(f"{fmt_count(report['messages'])} messages")
    run = []
    for key, label in (("scenario", "scenario"), ("seed", "seed"), ("speed", "speed")):
        if report.get(key) is not None:
            run.append(f"{label} {report[key]}")
    if report.get("wall_seconds") is not None:
        run.append(f"{fmt_measure(report['wall_seconds'])} s wall time")
    return f"{name} — after-action report", " · ".join(op), ("Replay: " + ", ".join(run)
                                                              if run else None)


# -- markdown -----------------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    """The report as GitHub-flavoured markdown. Raises KeyError without ``operation`` or
    ``messages``."""
    title, op_line, run_line = _heading(report)
    checks = _rows(report, "checks")
    ok, sentence = verdict(checks)
    out = [f"# {_md(title)}", "", _md(op_line), ""]
    if run_line:
        out += [_md(run_line), ""]
    out += [f"**{sentence}.**" if ok else f"**⚠ {sentence}.**", ""]
    if highlights := [h for h in report.get("highlights") or [] if h]:
        out += ["## Highlights", "", *(f"- {_md(str(h))}" for h in highlights), ""]
    if checks:
        out += _md_section("Published figures", _checks_table(checks))
    if totals := _mapping(report, "totals"):
        out += _md_section("Totals", _totals_table(totals))
    for key, heading, columns in (("by_day", "By day", DAY_COLUMNS),
                                  ("by_country", "By country", COUNTRY_COLUMNS),
                                  ("by_commodity", "By commodity", COMMODITY_COLUMNS)):
        if rows := _rows(report, key):
            out += _md_section(heading, _table(columns, rows))
    if by_type := _by_type(report):
        total = sum(v for _, v in by_type) or 1.0
        rows = [[t, fmt_count(v), f"{100 * v / total:.1f} %"] for t, v in by_type]
        out += _md_section("Message volume by type",
                           Table(["Type", "Messages", "Share"], [False, True, True], rows))
    if times := _mapping(report, "response_times"):
        out += ["## Response times", "", _md(_times_sentence(times)), ""]
        if desks := _desks(report):
            out += [*_md_table(_table(DESK_COLUMNS, desks)), ""]
    if pairs := _pairs(report)[:TOP_PAIRS]:
        rows = [[a, b, fmt_count(n)] for a, b, n in pairs]
        out += _md_section(f"Who talked to whom (top {len(pairs)} pairs)",
                           Table(["From", "To", "Messages"], [False, False, True], rows))
    if storylines := _rows(report, "storylines"):
        out += ["## Storylines", ""]
        for story in storylines:
            out += [f"### {_md(str(story.get('title') or story.get('id') or 'Storyline'))}", ""]
            events = [e for e in story.get("timeline") or [] if isinstance(e, dict)]
            rows = [[utc_minute(e.get("at")), _text(e.get("from")), _text(e.get("type")),
                     _text(e.get("summary")), _text(e.get("id"))] for e in events]
            if rows:
                out += [*_md_table(Table(["At", "From", "Type", "Summary", "Message"],
                                         [False] * 5, rows)), ""]
    if _mapping(report, "rejected"):
        some, none = _rejected(report)
        out += ["## Rejected messages", ""]
        if some:
            rows = [[unit, fmt_count(n)] for unit, n in some]
            out += [*_md_table(Table(["Unit", "Rejected"], [False, True], rows)), ""]
        out += [f"{none} of {none + len(some)} units rejected no message.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _times_sentence(times: Mapping[str, Any]) -> str:
    parts = [f"{fmt_count(times['count'])} answered requests"] if "count" in times else []
    for key, label in (("p50_minutes", "median"), ("p90_minutes", "p90"),
                       ("max_minutes", "max")):
        if times.get(key) is not None:
            parts.append(f"{label} {fmt_measure(times[key])} min")
    return "; ".join(parts) + "." if parts else "No response times recorded."


def _md(text: str) -> str:
    """Text safe in a markdown table cell: one line, no pipe, no raw HTML."""
    return escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _md_table(table: Table) -> list[str]:
    align = ["---:" if n else "---" for n in table.numeric]
    return [f"| {' | '.join(table.headers)} |", f"| {' | '.join(align)} |",
            *(f"| {' | '.join(_md(cell) for cell in row)} |" for row in table.rows)]


def _md_section(heading: str, table: Table) -> list[str]:
    return [f"## {heading}", "", *_md_table(table), ""]


# -- HTML ---------------------------------------------------------------------------------

_PAGE_CSS = """
:root { --ink: #1a202c; --muted: #5a6472; --line: #d5dbe3; --ok: #1f7a3d; --fail: #b42318; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: var(--ink); max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 0.3rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem;
  margin-top: 2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
.meta { color: var(--muted); margin: 0.1rem 0; }
.verdict { padding: 0.6rem 0.9rem; border-radius: 4px; font-weight: 600; margin: 1rem 0; }
.verdict.ok { background: #e6f4ea; color: var(--ok); }
.verdict.fail { background: #fdecea; color: var(--fail); }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.2rem 0.6rem; text-align: left;
  vertical-align: top; }
th { background: #f4f6f8; }
.num { text-align: right; }
tr.ok td:nth-child(5) { color: var(--ok); }
tr.fail td { background: #fdecea; }
tr.fail td:nth-child(5) { color: var(--fail); font-weight: 600; }
figure { margin: 1rem 0; break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: 0.3rem; }
ol.timeline { list-style: none; margin: 0 0 1rem 0.4rem; padding: 0;
  border-left: 2px solid var(--line); }
ol.timeline li { padding: 0.2rem 0 0.5rem 0.9rem; }
ol.timeline time { font-variant-numeric: tabular-nums; color: var(--muted); }
ol.timeline .type { font-size: 0.85em; border: 1px solid var(--line); border-radius: 3px;
  padding: 0 0.3rem; }
ol.timeline .id { color: var(--muted); font-size: 0.85em; }
@media print {
  body { max-width: none; margin: 0; font-size: 11px; }
  h2, h3 { break-after: avoid; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one HTML page that works offline. Raises KeyError without
    ``operation`` or ``messages``."""
    title, op_line, run_line = _heading(report)
    checks = _rows(report, "checks")
    ok, sentence = verdict(checks)
    body = [f"<h1>{escape(title)}</h1>", f'<p class="meta">{escape(op_line)}</p>']
    if run_line:
        body.append(f'<p class="meta">{escape(run_line)}</p>')
    body.append(f'<p class="verdict {"ok" if ok else "fail"}">{escape(sentence)}.</p>')
    if highlights := [h for h in report.get("highlights") or [] if h]:
        items = "".join(f"<li>{escape(str(h))}</li>" for h in highlights)
        body.append(f"<h2>Highlights</h2><ul>{items}</ul>")
    if checks:
        body.append("<h2>Published figures</h2>" + _html_table(_checks_table(checks)))
    if totals := _mapping(report, "totals"):
        body.append("<h2>Totals</h2>" + _html_table(_totals_table(totals)))
    body += _html_sections(report)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_PAGE_CSS}{CHART_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def _html_sections(report: Mapping[str, Any]) -> list[str]:
    out = []
    if days := _rows(report, "by_day"):
        bars = [(str(d.get("date") or f"day {_text(d.get('day'))}"), _num(d.get("reports")))
                for d in days]
        out.append("<h2>By day</h2>" + _figure(column_chart, "Seizure reports per day", bars,
                                               fmt_count) + _html_table(_table(DAY_COLUMNS, days)))
    if countries := _rows(report, "by_country"):
        ranked = sorted(countries, key=lambda c: (-_num(c.get("reports")),
                                                  -_num(c.get("messages")), str(c.get("country"))))
        bars = [(_country(c), _num(c.get("reports"))) for c in ranked[:TOP_COUNTRIES]
                if _num(c.get("reports")) > 0]
        out.append("<h2>By country</h2>"
                   + _figure(hbar_chart, f"Seizure reports by country (top {len(bars)})", bars,
                             fmt_count)
                   + _html_table(_table(COUNTRY_COLUMNS, countries)))
    if goods := _rows(report, "by_commodity"):
        charts = ""
        for key, caption, fmt in (("kg", "Quantity seized by commodity (kg)", fmt_measure),
                                  ("count", "Items seized by commodity (count)", fmt_count)):
            bars = sorted(((str(g.get("label") or g.get("commodity")), _num(g.get(key)))
                           for g in goods), key=lambda b: (-b[1], b[0]))
            charts += _figure(hbar_chart, caption, [b for b in bars if b[1] > 0], fmt)
        out.append("<h2>By commodity</h2>" + charts
                   + _html_table(_table(COMMODITY_COLUMNS, goods)))
    if by_type := _by_type(report):
        out.append("<h2>Message volume by type</h2>"
                   + _figure(hbar_chart, "Messages by type", by_type, fmt_count))
    if times := _mapping(report, "response_times"):
        desks = _desks(report)
        keys = ("p50_minutes", "p90_minutes", "max_minutes")
        groups = [("all desks", [_opt(times.get(k)) for k in keys])]
        groups += [(str(d["desk"]), [_opt(d.get(k)) for k in keys]) for d in desks]
        groups = [g for g in groups if any(v is not None for v in g[1])]
        chart = (_figure_html("Response time to requests for information (minutes)",
                              grouped_hbar_chart("Response time (minutes)",
                                                 ["p50", "p90", "max"], groups, fmt_measure))
                 if groups else "")
        out.append(f"<h2>Response times</h2><p>{escape(_times_sentence(times))}</p>" + chart
                   + (_html_table(_table(DESK_COLUMNS, desks)) if desks else ""))
    if pairs := _pairs(report):
        out.append("<h2>Who talked to whom</h2>" + _talk_heatmap(pairs))
    if storylines := _rows(report, "storylines"):
        out.append("<h2>Storylines</h2>" + "".join(_storyline(s) for s in storylines))
    if _mapping(report, "rejected"):
        some, none = _rejected(report)
        table = _html_table(Table(["Unit", "Rejected"], [False, True],
                                  [[u, fmt_count(n)] for u, n in some])) if some else ""
        out.append(f"<h2>Rejected messages</h2>{table}"
                   f"<p>{none} of {none + len(some)} units rejected no message.</p>")
    return out


def _talk_heatmap(pairs: Sequence[tuple[str, str, float]]) -> str:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    for a, b, n in pairs:
        sent[a] = sent.get(a, 0.0) + n
        received[b] = received.get(b, 0.0) + n
    rows = sorted(sent, key=lambda u: (-sent[u], u))[:TOP_TALKERS]
    cols = sorted(received, key=lambda u: (-received[u], u))[:TOP_TALKERS]
    cells = {(a, b): n for a, b, n in pairs}
    caption = (f"Messages from sender (rows) to recipient (columns), top {len(rows)} senders "
               f"× top {len(cols)} recipients")
    return _figure_html(caption, heatmap(caption, rows, cols, cells, fmt_count))


def _storyline(story: Mapping[str, Any]) -> str:
    title = str(story.get("title") or story.get("id") or "Storyline")
    items = []
    for e in story.get("timeline") or []:
        if not isinstance(e, dict):
            continue
        items.append(
            f'<li><time datetime="{escape(_text(e.get("at")))}">'
            f"{escape(utc_minute(e.get('at')))}</time> · <strong>{escape(_text(e.get('from')))}"
            f'</strong> <span class="type">{escape(_text(e.get("type")))}</span><br>'
            f"{escape(_text(e.get('summary')))} "
            f'<span class="id">{escape(_text(e.get("id")))}</span></li>')
    timeline = f'<ol class="timeline">{"".join(items)}</ol>' if items else ""
    return f"<h3>{escape(title)}</h3>{timeline}"


def _country(row: Mapping[str, Any]) -> str:
    code, name = _text(row.get("country")), row.get("name")
    return f"{name} ({code})" if name else code


def _opt(value: Any) -> float | None:
    return None if value is None else _num(value)


def _figure(chart: Callable[[str, Sequence[tuple[str, float]], Callable[[float], str]], str],
            caption: str, bars: Sequence[tuple[str, float]],
            fmt: Callable[[float], str]) -> str:
    """A captioned chart, or nothing when there is nothing to draw."""
    return _figure_html(caption, chart(caption, bars, fmt)) if bars else ""


def _figure_html(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _html_table(table: Table) -> str:
    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(f"<{tag}{_class('num' if n else '')}>{escape(v)}</{tag}>"
                       for v, n in zip(row, table.numeric, strict=True))

    classes = table.row_classes or [""] * len(table.rows)
    body = "".join(f"<tr{_class(c)}>{cells('td', row)}</tr>"
                   for row, c in zip(table.rows, classes, strict=True))
    return (f"<table><thead><tr>{cells('th', table.headers)}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _class(name: str) -> str:
    return f' class="{name}"' if name else ""
