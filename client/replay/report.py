"""The OCU's after-action report of a replayed operation: report.json, report.md and a
self-contained report.html (inline style and SVG charts, no scripts, nothing fetched).

Renders the dict the replay engine builds and nothing else: no clock, no randomness, so one
dict always gives the same bytes. Only ``operation``, ``messages``, ``checks`` and
``totals`` are required; any other section whose data is absent or empty is left out.
Both renderings walk the same list of sections; only ``write_reports`` does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from functools import partial
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

from client.messages.values import utc_minute
from client.replay.names import (
    TOTAL_GROUPS,
    commodity_name,
    metric_label,
    metric_rank,
    type_name,
    words,
)
from client.replay.report_svg import (
    CHART_CSS,
    column_chart,
    grouped_hbar_chart,
    hbar_chart,
    heatmap,
)

TOP_COUNTRIES = 20  # countries in the seizures chart
TOP_PAIRS = 20  # sender -> recipient pairs listed
TOP_TALKERS = 15  # senders and recipients in the heatmap


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    """Write report.json, report.md and report.html into ``out`` (created if missing) and
    return their paths. Raises OSError if a file cannot be written, TypeError if the dict
    holds a value JSON cannot encode, KeyError without ``operation`` or ``messages``."""
    texts = {
        "report.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# -- numbers ------------------------------------------------------------------------------


def fmt_count(value: Any) -> str:
    """A number with thousands separators and at most two decimals; "—" for None."""
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


def _listed(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) and value else "—"


# -- names --------------------------------------------------------------------------------

#: Message types in words, in the order an operation's workflows use them.
def _quantities(row: Mapping[str, Any]) -> str:
    """ "411 kg, 54 l", "USD 125,000": a commodity's quantities in their units."""
    amounts = row.get("quantities")
    if not isinstance(amounts, dict):
        amounts = {"kg": row["kg"]} if _num(row.get("kg")) > 0 else {}
    return ", ".join(f"USD {fmt_count(v)}" if unit == "usd" else f"{fmt_measure(v)} "
                     f"{words(unit)}" for unit, v in sorted(amounts.items())) or "—"


# -- sections -----------------------------------------------------------------------------


class Column(NamedTuple):
    key: str
    header: str
    fmt: Callable[[Any], str] = fmt_count
    numeric: bool = True


DAY_COLUMNS = (Column("day", "Day"), Column("date", "Date", _text, False),
               Column("messages", "Messages"), Column("reports", "Seizure reports"),
               Column("items", "Items seized"))
COUNTRY_COLUMNS = (Column("country", "Country", _text, False),
                   Column("name", "Name", _text, False),
                   Column("units", "Units that wrote", _listed, False),
                   Column("messages", "Messages"), Column("reports", "Seizure reports"),
                   Column("items", "Items seized"), Column("arrests", "Arrests"))
COMMODITY_COLUMNS = (Column("name", "Commodity", _text, False),
                     Column("items", "Items seized"), Column("count", "Number"),
                     Column("quantity", "Quantity", _text, False))
DESK_COLUMNS = (Column("desk", "Desk", _text, False), Column("count", "Answered"),
                Column("p50_minutes", "p50 (min)", fmt_measure),
                Column("p90_minutes", "p90 (min)", fmt_measure),
                Column("max_minutes", "max (min)", fmt_measure))
TIME_KEYS = ("p50_minutes", "p90_minutes", "max_minutes")


class Table(NamedTuple):
    headers: Sequence[str]
    numeric: Sequence[bool]
    rows: Sequence[Sequence[str]]
    row_classes: Sequence[str] = ()  # HTML only: "ok" / "fail" / "generated" per row


class Chart(NamedTuple):
    """A captioned chart, drawn only by the HTML rendering."""

    caption: str
    draw: Callable[[], str]


class Section(NamedTuple):
    heading: str
    level: int = 2
    paragraphs: Sequence[str] = ()
    bullets: Sequence[str] = ()
    charts: Sequence[Chart] = ()
    tables: Sequence[Table] = ()
    events: Sequence[Mapping[str, Any]] = ()  # a storyline's timeline


def verdict(checks: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Whether every check passed, and the sentence saying so."""
    failed = sum(1 for c in checks if not c.get("ok"))
    if not checks:
        return True, "No published figures to check"
    if failed:
        return False, f"{failed} of {len(checks)} checks FAILED"
    return True, f"All {len(checks)} published figures reproduced"


def partial_notice(report: Mapping[str, Any]) -> str | None:
    """The warning a report of a replay stopped before its end opens with, else None."""
    if not report.get("partial"):
        return None
    after = _mapping(report, "stopped_after")
    how_far = (f" after {fmt_count(after.get('sent'))} of {fmt_count(after.get('planned'))} "
               f"planned messages" if after else "")
    return (f"Partial report: the replay was stopped{how_far}; the figures are what the "
            f"OCU had read by then")


def report_heading(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The title, then the operation line and (given any replay facts) the replay line."""
    op = [str(report["operation"])]
    if report.get("start") or report.get("end"):
        op.append(f"{_text(report.get('start'))} to {_text(report.get('end'))}")
    if report.get("ocu"):
        op.append(f"coordinated by {report['ocu']}")
    op.append(f"{fmt_count(report['messages'])} messages")
    run = [f"{key} {report[key]}" for key in ("scenario", "seed", "speed")
           if report.get(key) is not None]
    if report.get("wall_seconds") is not None:
        run.append(f"{fmt_measure(report['wall_seconds'])} s wall time")
    lines = [" · ".join(op)] + (["Replay: " + ", ".join(run)] if run else [])
    return f"{report.get('name') or report['operation']} — after-action report", lines


def report_sections(report: Mapping[str, Any]) -> Iterator[Section]:
    if highlights := [str(h) for h in report.get("highlights") or [] if h]:
        yield Section("Highlights", bullets=highlights)
    if checks := _rows(report, "checks"):
        yield Section("Published figures", tables=[_checks_table(checks)])
    if cases := _rows(report, "cases"):
        yield Section("Documented cases", paragraphs=[
            "Each seizure or arrest the sources describe, looked for in the seizure reports "
            "the OCU read: who reported it, what, how much, where."], tables=[_cases_table(cases)])
    if totals := _mapping(report, "totals"):
        sources = {str(k): str(v) for k, v in _mapping(report, "sources").items()}
        yield Section("Totals", paragraphs=["Every figure of the OCU's tally, from the "
                                            "messages it read.", *_sources_note(sources)])
        yield from _totals(totals, sources)
    if days := _rows(report, "by_day"):
        bars = [(_day_label(d), _num(d.get("reports"))) for d in days]
        yield Section("By day", charts=_chart(column_chart, "Seizure reports per day", bars,
                                              keep_zero=True),
                      tables=[_table(DAY_COLUMNS, days)])
    if countries := _rows(report, "by_country"):
        ranked = sorted(countries, key=lambda c: (
            -_num(c.get("reports")), -_num(c.get("messages")), _text(c.get("country"))))
        bars = [(_country(c), _num(c.get("reports"))) for c in ranked
                if _num(c.get("reports")) > 0][:TOP_COUNTRIES]
        yield Section("By country", charts=_chart(
            hbar_chart, f"Seizure reports by country (top {len(bars)})", bars),
            tables=[_table(COUNTRY_COLUMNS, countries)])
    if goods := _rows(report, "by_commodity"):
        yield _commodities(goods)
    by_type = _ranked((type_name(str(k)), _num(v))
                      for k, v in _mapping(report, "by_type").items())
    if by_type:
        total = sum(v for _, v in by_type) or 1.0
        rows = [[t, fmt_count(v), f"{100 * v / total:.1f} %"] for t, v in by_type]
        yield Section("Message volume by type",
                      charts=_chart(hbar_chart, "Messages by type", by_type),
                      tables=[Table(["Type", "Messages", "Share"], [False, True, True], rows)])
    if times := _mapping(report, "response_times"):
        yield _response_times(times)
    if talk := _rows(report, "talk"):
        yield _talk(talk)
    if storylines := _rows(report, "storylines"):
        yield Section("Storylines")
        for story in storylines:
            events = [e for e in story.get("timeline") or [] if isinstance(e, dict)]
            narrative = " ".join(str(story.get("summary") or "").split())
            yield Section(str(story.get("title") or story.get("id") or "Storyline"), level=3,
                          paragraphs=[narrative] if narrative else [], events=events)
    if rejected := _mapping(report, "rejected"):
        some = _ranked((str(k), _num(v)) for k, v in rejected.items() if _num(v) > 0)
        table = Table(["Unit", "Rejected"], [False, True], [[u, fmt_count(n)] for u, n in some])
        yield Section("Rejected messages", tables=[table] if some else [], paragraphs=[
            f"{len(rejected) - len(some)} of {len(rejected)} units rejected no message."])


def _checks_table(checks: Sequence[Mapping[str, Any]]) -> Table:
    with_text = any(c.get("text") for c in checks)
    rows, classes = [], []
    for c in checks:
        fmt = _fmt_metric(str(c.get("metric", "")))
        rule = _text(c.get("rule"))
        if c.get("tolerance") is not None:
            rule += f" ±{fmt_count(c['tolerance'])}"
        row = [_text(c.get("metric")), rule, fmt(c.get("published")), fmt(c.get("observed")),
               "✓" if c.get("ok") else "✗ FAILED"]
        rows.append(row + [str(c.get("text") or "")] * with_text)
        classes.append("ok" if c.get("ok") else "fail")
    headers = ["Metric", "Rule", "Published", "Observed", "OK"] + ["Published as"] * with_text
    numeric = [False, False, True, True, False] + [False] * with_text
    return Table(headers, numeric, rows, classes)


#: where a figure comes from (aar.figure_sources), in words
SOURCES = {"published": "published (checked above)", "storylines": "the documented cases",
           "generated": "generated, not published"}


def _sources_note(sources: Mapping[str, str]) -> list[str]:
    generated = sum(1 for v in sources.values() if v == "generated")
    if not generated:
        return []
    return [f"{generated} of {len(sources)} figures are generated, not published: the "
            f"replay made them up with the background traffic it needed to reach the "
            f"published figures, and no source gives them. Read them as the generator's, "
            f"not the operation's."]


def _cases_table(cases: Sequence[Mapping[str, Any]]) -> Table:
    rows = [[_text(c.get("published")), _text(c.get("reported_by")), _text(c.get("goods")),
             _text(c.get("found")), "✓" if c.get("ok") else "✗ NOT FOUND"] for c in cases]
    return Table(["Case", "Reported by", "Goods", "Found", "OK"],
                 [False] * 5, rows, ["ok" if c.get("ok") else "fail" for c in cases])


def _totals(totals: Mapping[str, Any], sources: Mapping[str, str]) -> Iterator[Section]:
    """The totals in groups, each figure labelled in words, as sections one level down;
    with where each comes from when the report says."""
    groups: dict[str, list[tuple[tuple[int, str, int, str], list[str], str]]] = {}
    for metric, value in totals.items():
        group, label = metric_label(str(metric))
        row = [label, _fmt_metric(str(metric))(value)]
        source = sources.get(str(metric))
        if sources:
            row.append(SOURCES.get(source or "", source or ""))
        groups.setdefault(group, []).append((metric_rank(str(metric)), row, source or ""))
    headers, numeric = ["Figure", "Value", "Source"], [False, True, False]
    width = 3 if sources else 2
    for group in TOTAL_GROUPS:
        if rows := sorted(groups.get(group, [])):
            yield Section(group, level=3, tables=[Table(
                headers[:width], numeric[:width], [r for _, r, _ in rows],
                [c if c == "generated" else "" for _, _, c in rows])])


def _commodities(goods: Sequence[Mapping[str, Any]]) -> Section:
    """Quantities by kind (kg), items by category, and a row per kind of goods."""
    keys = [_text(g.get("commodity")) for g in goods]
    with_kinds = {k.partition(".")[0] for k in keys if "." in k}
    # an item that does not say its kind, beside items of the same category that do
    rows = [{**g, "name": commodity_name(k) + ": kind not given" * (k in with_kinds),
             "quantity": _quantities(g)} for k, g in zip(keys, goods, strict=True)]
    rows.sort(key=lambda r: (metric_rank(f"{r['commodity']}.count")[0],
                             -_num(r.get("items")), r["name"]))
    by_mass = _ranked((r["name"], _num(r.get("kg"))) for r in rows)
    items: dict[str, float] = {}
    for r in rows:
        name = commodity_name(str(r["commodity"]).partition(".")[0])
        items[name] = items.get(name, 0.0) + _num(r.get("items"))
    by_items = _ranked(items.items())
    return Section("By commodity", charts=[
        *_chart(hbar_chart, "Quantity seized by kind (kg)", by_mass, fmt_measure),
        *_chart(hbar_chart, "Items seized by commodity", by_items)],
        tables=[_table(COMMODITY_COLUMNS, rows)])


def _response_times(times: Mapping[str, Any]) -> Section:
    parts = [f"{fmt_count(times['count'])} answered requests"] if "count" in times else []
    for key, label in zip(TIME_KEYS, ("median", "p90", "max"), strict=True):
        if times.get(key) is not None:
            parts.append(f"{label} {fmt_measure(times[key])} min")
    desks = [{"desk": name, **stats} for name, stats in _mapping(times, "by_desk").items()
             if isinstance(stats, dict)]
    groups = [(str(row.get("desk", "all desks")), [_opt(row.get(k)) for k in TIME_KEYS])
              for row in [dict(times), *desks]]
    # only the percentiles some desk has: a legend names no series without a bar
    shown = [k for k in range(len(TIME_KEYS)) if any(row[k] is not None for _, row in groups)]
    groups = [(label, [row[k] for k in shown]) for label, row in groups
              if any(row[k] is not None for k in shown)]
    caption = "Response time to requests for information (minutes)"
    series = [("p50", "p90", "max")[k] for k in shown]
    draw = partial(grouped_hbar_chart, caption, series, groups, fmt_measure)
    return Section("Response times", paragraphs=["; ".join(parts) + "."] if parts else [],
                   charts=[Chart(caption, draw)] if groups else [],
                   tables=[_table(DESK_COLUMNS, desks)] if desks else [])


def _talk(talk: Sequence[Mapping[str, Any]]) -> Section:
    pairs = sorted(((_text(t.get("from")), _text(t.get("to")), _num(t.get("messages")))
                    for t in talk), key=lambda p: (-p[2], p[0], p[1]))
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    for a, b, n in pairs:
        sent[a] = sent.get(a, 0.0) + n
        received[b] = received.get(b, 0.0) + n
    senders = sorted(sent, key=lambda u: (-sent[u], u))[:TOP_TALKERS]
    recipients = sorted(received, key=lambda u: (-received[u], u))[:TOP_TALKERS]
    caption = (f"Messages from sender (rows) to recipient (columns): top {len(senders)} "
               f"senders by top {len(recipients)} recipients")
    cells = {(a, b): n for a, b, n in pairs}
    top = pairs[:TOP_PAIRS]
    return Section(
        "Who talked to whom", paragraphs=[f"The {len(top)} busiest sender → recipient pairs."],
        charts=[Chart(caption, partial(heatmap, caption, senders, recipients, cells, fmt_count))],
        tables=[Table(["From", "To", "Messages"], [False, False, True],
                      [[a, b, fmt_count(n)] for a, b, n in top])])


def _chart(draw: Callable[[str, Sequence[tuple[str, float]], Callable[[float], str]], str],
           caption: str, bars: Sequence[tuple[str, float]],
           fmt: Callable[[float], str] = fmt_count, *, keep_zero: bool = False) -> list[Chart]:
    """The chart of the bars above zero (all bars with ``keep_zero``), or none if no bar is
    above zero."""
    shown = [(label, value) for label, value in bars if value > 0]
    drawn = bars if keep_zero else shown
    return [Chart(caption, partial(draw, caption, drawn, fmt))] if shown else []


def _ranked(bars: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Bars from the largest value down, ties by label."""
    return sorted(bars, key=lambda b: (-b[1], b[0]))


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


def _day_label(row: Mapping[str, Any]) -> str:
    """A day as "5 Dec", short enough for a column; "day N" without a date."""
    try:
        day = date.fromisoformat(str(row.get("date")))
    except ValueError:
        return f"day {_text(row.get('day'))}"
    return f"{day.day} {_MONTHS[day.month - 1]}"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _country(row: Mapping[str, Any]) -> str:
    code, name = _text(row.get("country")), row.get("name")
    return f"{name} ({code})" if name else code


def _opt(value: Any) -> float | None:
    return None if value is None else _num(value)


# -- markdown -----------------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    """The report as GitHub-flavoured markdown. Raises KeyError without ``operation`` or
    ``messages``."""
    title, lines = report_heading(report)
    return markdown_page(title, lines, _verdicts(report), report_sections(report))


def _verdicts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(class, sentence) of the lines under the heading: partial, then ok or fail for the
    figures, then for the documented cases if the scenario has any."""
    ok, sentence = verdict(_rows(report, "checks"))
    notice = partial_notice(report)
    out = [*([("partial", notice)] if notice else []), ("ok" if ok else "fail", sentence)]
    if cases := _rows(report, "cases"):
        failed = sum(1 for c in cases if not c.get("ok"))
        out.append(("fail", f"{failed} of {len(cases)} documented cases NOT FOUND") if failed
                   else ("ok", f"All {len(cases)} documented cases found in the reports"))
    return out


def markdown_page(title: str, lines: Sequence[str], verdicts: Sequence[tuple[str, str]],
                  sections: Iterable[Section]) -> str:
    """A page of sections as GitHub-flavoured markdown (the replay's report, the exercise's
    review): the title, its lines, each verdict (class ok, fail or partial, and its
    sentence) in bold, then every section."""
    out = [f"# {_md(title)}", ""]
    out += [text for line in lines for text in (_md(line), "")]
    out += [text for kind, sentence in verdicts
            for text in (f"**{'' if kind == 'ok' else '⚠ '}{_md(sentence)}.**", "")]
    for section in sections:
        out += [f"{'#' * section.level} {_md(section.heading)}", ""]
        out += [text for p in section.paragraphs for text in (_md(p), "")]
        if section.bullets:
            out += [*(f"- {_md(b)}" for b in section.bullets), ""]
        tables = list(section.tables)
        if section.events:
            tables.append(Table(["At", "From", "Type", "Summary", "Message"], [False] * 5, [
                [utc_minute(e.get("at")), _text(e.get("from")), words(_text(e.get("type"))),
                 _text(e.get("summary")), _text(e.get("id"))]
                for e in section.events]))
        for table in tables:
            out += [*_md_table(table), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _md(text: str) -> str:
    """Text safe in markdown and its table cells: one line, no pipe, no raw HTML."""
    return escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _md_table(table: Table) -> list[str]:
    align = ["---:" if n else "---" for n in table.numeric]
    return [f"| {' | '.join(table.headers)} |", f"| {' | '.join(align)} |",
            *(f"| {' | '.join(_md(cell) for cell in row)} |" for row in table.rows)]


# -- HTML ---------------------------------------------------------------------------------

_PAGE_CSS = """
:root { --ink: #1a202c; --muted: #5a6472; --line: #d5dbe3; --ok: #1f7a3d; --fail: #b42318; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: var(--ink); max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 0.3rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid var(--line); margin-top: 2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
.meta { color: var(--muted); margin: 0.1rem 0; }
.verdict { padding: 0.6rem 0.9rem; border-radius: 4px; font-weight: 600; margin: 1rem 0; }
.verdict.ok { background: #e6f4ea; color: var(--ok); }
.verdict.fail { background: #fdecea; color: var(--fail); }
.verdict.partial { background: #fff4e5; color: #8a4b00; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.2rem 0.6rem; text-align: left;
  vertical-align: top; }
th { background: #f4f6f8; }
.num { text-align: right; }
tr.ok td:nth-child(5) { color: var(--ok); }
tr.fail td { background: #fdecea; }
tr.generated td { color: #8a5a00; font-style: italic; }
tr.fail td:nth-child(5) { color: var(--fail); font-weight: 600; }
figure { margin: 1rem 0; break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: 0.3rem; }
ol.timeline { list-style: none; margin: 0 0 1rem 0.4rem; padding: 0;
  border-left: 2px solid var(--line); }
ol.timeline li { padding: 0.2rem 0 0.5rem 0.9rem; }
ol.timeline time, ol.timeline .id { color: var(--muted); font-variant-numeric: tabular-nums; }
ol.timeline .type { font-size: 0.85em; border: 1px solid var(--line); border-radius: 3px;
  padding: 0 0.3rem; }
@media print {
  body { max-width: none; margin: 0; font-size: 11px; }
  h2, h3 { break-after: avoid; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one HTML page that works offline. Raises KeyError without
    ``operation`` or ``messages``."""
    title, lines = report_heading(report)
    return html_page(title, lines, _verdicts(report), report_sections(report))


def html_page(title: str, lines: Sequence[str], verdicts: Sequence[tuple[str, str]],
              sections: Iterable[Section], *, css: str = "") -> str:
    """A page of sections as one HTML file that works offline (inline style and SVG, no
    scripts, nothing fetched): the title, its lines, each verdict (class ok, fail or
    partial, and its sentence), then every section. ``css`` is added to the style."""
    body = [f"<h1>{escape(title)}</h1>", *(f'<p class="meta">{escape(x)}</p>' for x in lines)]
    body += [f'<p class="verdict {kind}">{escape(sentence)}.</p>' for kind, sentence in verdicts]
    for s in sections:
        body.append(f"<h{s.level}>{escape(s.heading)}</h{s.level}>")
        body += [f"<p>{escape(p)}</p>" for p in s.paragraphs]
        if s.bullets:
            body.append(f"<ul>{''.join(f'<li>{escape(b)}</li>' for b in s.bullets)}</ul>")
        body += [f"<figure><figcaption>{escape(c.caption)}</figcaption>{c.draw()}</figure>"
                 for c in s.charts]
        body += [_html_table(t) for t in s.tables]
        if s.events:
            body.append(f'<ol class="timeline">{"".join(map(_html_event, s.events))}</ol>')
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_PAGE_CSS}{CHART_CSS}{css}</style></head>"
            f"<body>\n{chr(10).join(body)}\n</body></html>\n")


def _html_event(event: Mapping[str, Any]) -> str:
    at, sender, summary, ident = (
        escape(_text(event.get(k))) for k in ("at", "from", "summary", "id"))
    kind = escape(words(_text(event.get("type"))))
    return (f'<li><time datetime="{at}">{escape(utc_minute(event.get("at")))}</time> · '
            f'<strong>{sender}</strong> <span class="type">{kind}</span><br>{summary} '
            f'<span class="id">{ident}</span></li>')


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
