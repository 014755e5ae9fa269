"""report: the after-action report's three files, its markdown and its offline HTML page."""

from __future__ import annotations

import copy
import itertools
import json
import re
import xml.etree.ElementTree as ET
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from client.messages import default_catalog
from client.messages.summary import summarise
from client.messages.values import enum_words
from client.replay.report import (
    fmt_count,
    fmt_measure,
    metric_label,
    render_html,
    render_markdown,
    write_reports,
)
from tests.client.replay.conftest import StorylineReport

COUNTRIES = [("SN", "Senegal"), ("CV", "Cabo Verde"), ("GH", "Ghana"), ("TG", "Togo"),
             ("BJ", "Benin"), ("NG", "Nigeria"), ("CM", "Cameroon"), ("GA", "Gabon"),
             ("ML", "Mali"), ("NE", "Niger"), ("BF", "Burkina Faso"), ("CI", "Côte d'Ivoire"),
             ("GN", "Guinea"), ("GW", "Guinea-Bissau"), ("MR", "Mauritania"), ("MA", "Morocco"),
             ("ES", "Spain"), ("PT", "Portugal"), ("FR", "France"), ("NL", "Netherlands"),
             ("BE", "Belgium"), ("BR", "Brazil"), ("CO", "Colombia"),
             ("TT", "Trinidad & Tobago")]
UNITS = [f"{code}-CUSTOMS" for code, _ in COUNTRIES] + ["INTERPOL-DESK", "OCU-WCO"]
EVIL = "Courier <b>bold</b> & co"

#: The charts a full report draws, by their aria-label.
CHARTS = {
    "Seizure reports per day",
    "Seizure reports by country (top 20)",
    "Quantity seized by kind (kg)",
    "Items seized by commodity",
    "Messages by type",
    "Response time to requests for information (minutes)",
    "Messages from sender (rows) to recipient (columns): top 15 senders by top 15 recipients",
}


def make_report() -> dict[str, Any]:
    """A COCAIR V style report, as the replay engine builds it."""
    return {
        "operation": "COCAIR-V", "name": "Operation COCAIR V",
        "start": "2015-12-05", "end": "2015-12-13", "ocu": "OCU-WCO",
        "scenario": "seeds/cocair-v.yaml", "seed": 1, "speed": "max", "wall_seconds": 14.2,
        "messages": 8000,
        "checks": [
            {"metric": "drug.cocaine.kg", "rule": "exact", "published": 411, "observed": 411.0,
             "ok": True, "tolerance": None, "text": "411 kg of cocaine"},
            {"metric": "reports", "rule": "exact", "published": 78, "observed": 78,
             "ok": True, "tolerance": None, "text": "78 seizures"},
            {"metric": "arrests", "rule": "at_least", "published": 70, "observed": 71,
             "ok": True, "tolerance": None, "text": "more than 70 arrests"},
        ],
        "totals": {"messages": 8000, "messages.warning": 1200, "reports": 78, "items": 80,
                   "drug.kg": 580.0, "drug.cocaine.kg": 411.0, "drug.cannabis_herb.kg": 12.34,
                   "firearm.pistol.count": 20, "currency.usd": 125000.0, "arrests": 71,
                   "hits": 12, "hits.interpol_sltd": 4, "countries": 24},
        "by_day": [{"day": d + 1, "date": f"2015-12-{5 + d:02d}", "messages": 800 + 10 * d,
                    "reports": 9 - d % 4, "items": 14 + d} for d in range(9)],
        "by_country": [{"country": code, "name": name, "units": [f"{code}-CUSTOMS"],
                        "messages": 420 - 10 * i, "reports": max(6 - i // 4, 0), "items": 9,
                        "arrests": 3}
                       for i, (code, name) in enumerate(COUNTRIES)],
        "by_commodity": [
            {"commodity": "drug.cocaine", "category": "drug", "kind": "cocaine", "items": 23,
             "count": 23, "kg": 411.0, "quantities": {"kg": 411.0}},
            {"commodity": "drug.cannabis_herb", "category": "drug", "kind": "cannabis_herb",
             "items": 4, "count": 4, "kg": 12.34, "quantities": {"kg": 12.34}},
            {"commodity": "drug.cocaine_base", "category": "drug", "kind": "cocaine_base",
             "items": 1, "count": 1, "kg": 0, "quantities": {"l": 54.0}},
            {"commodity": "firearm.pistol", "category": "firearm", "kind": "pistol",
             "items": 3, "count": 20, "kg": 0, "quantities": {}},
            {"commodity": "currency", "category": "currency", "kind": None, "items": 2,
             "count": 2, "kg": 0, "quantities": {"usd": 125000.0}},
        ],
        "by_type": {"seizure_report": 78, "warning": 1200, "feedback": 2400,
                    "request_for_information": 700, "rfi_response": 700, "alert": 40,
                    "situation_report": 9},
        "response_times": {
            "count": 700, "p50_minutes": 35.0, "p90_minutes": 80.0, "max_minutes": 118.0,
            "by_desk": {"INTERPOL-DESK": {"count": 300, "p50_minutes": 33.0},
                        "OCU-WCO": {"count": 400, "p50_minutes": 36.5, "p90_minutes": 82.0,
                                    "max_minutes": 118.0}},
        },
        "talk": [{"from": a, "to": b, "messages": (i * 7 + j * 3) % 40 + 1}
                 for i, a in enumerate(UNITS) for j, b in enumerate(UNITS) if a != b],
        "storylines": [{"id": "dakar-courier", "title": "The Dakar courier", "timeline": [
            {"at": "2015-12-06T08:40:00Z", "from": "OCU-WCO", "type": "warning",
             "id": "COCAIR-V-OCU-WCO-0007", "summary": "Courier profile circulated"},
            {"at": "2015-12-06T11:05:00Z", "from": "SN-CUSTOMS", "type": "seizure_report",
             "id": "COCAIR-V-SN-CUSTOMS-0042", "summary": EVIL},
        ]}],
        "rejected": {"SN-CUSTOMS": 0, "GH-CUSTOMS": 2, "INTERPOL-DESK": 0},
        "highlights": ["411 kg of cocaine seized, as published"],
    }


MINIMAL = {"operation": "COCAIR-V", "messages": 0, "checks": [], "totals": {}}


@pytest.fixture
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture
def failing(report: dict[str, Any]) -> dict[str, Any]:
    report["checks"][1].update(observed=77, ok=False)
    return report


class StrictParser(HTMLParser):
    """Records every end tag that does not close the innermost open element."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <rect .../> in SVG: opens and closes at once

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.errors.append(f"</{tag}> while {self.open[-3:]} open at {self.getpos()}")


def test_write_reports_writes_three_files(report: dict[str, Any], tmp_path: Path) -> None:
    """write_reports writes report.json, report.md and report.html and returns their paths."""
    paths = write_reports(report, tmp_path / "out")
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert all(p.parent == tmp_path / "out" and p.stat().st_size > 0 for p in paths)


def test_write_reports_json_round_trips(report: dict[str, Any], tmp_path: Path) -> None:
    """report.json loads back to the same dict, keys in the same order."""
    json_path = write_reports(report, tmp_path)[0]
    loaded = json.loads(json_path.read_text(encoding="utf-8"))
    assert loaded == report
    assert list(loaded) == list(report)
    assert "Côte d'Ivoire" in json_path.read_text(encoding="utf-8")


def test_render_markdown_says_all_reproduced(report: dict[str, Any]) -> None:
    """With every check passing, the verdict says all published figures were reproduced."""
    assert "**All 3 published figures reproduced.**" in render_markdown(report)


def md_section(text: str, heading: str) -> list[str]:
    """The lines of a markdown section, up to the next section."""
    return text.split(f"\n## {heading}\n")[1].split("\n## ")[0].splitlines()


def test_render_markdown_has_a_row_per_check(report: dict[str, Any]) -> None:
    """The checks table has one row per check, naming its metric."""
    lines = md_section(render_markdown(report), "Published figures")
    for check in report["checks"]:
        assert sum(line.startswith(f"| {check['metric']} |") for line in lines) == 1


def test_render_markdown_says_failed_when_a_check_fails(failing: dict[str, Any]) -> None:
    """A failing check turns the verdict into "K of N checks FAILED" and marks its row."""
    text = render_markdown(failing)
    assert "1 of 3 checks FAILED" in text
    assert "| reports | exact | 78 | 77 | ✗ FAILED |" in text


def test_render_markdown_formats_numbers(report: dict[str, Any]) -> None:
    """Counts get thousands separators and kilograms at most one decimal."""
    text = render_markdown(report)
    assert "| Messages, all types | 8,000 |" in text
    assert "| Cocaine (kg) | 411 |" in text
    assert "| Cannabis herb (kg) | 12.3 |" in text


def test_render_markdown_lists_the_top_pairs(report: dict[str, Any]) -> None:
    """Who talked to whom lists the 20 busiest pairs, busiest first."""
    rows = [line for line in md_section(render_markdown(report), "Who talked to whom")
            if line.startswith("| ")][2:]
    counts = [int(row.rsplit("|", 2)[1].replace(",", "")) for row in rows]
    assert len(counts) == 20
    assert counts == sorted(counts, reverse=True)


def test_render_markdown_escapes_raw_html(report: dict[str, Any]) -> None:
    """A storyline summary cannot smuggle HTML into the rendered markdown."""
    text = render_markdown(report)
    assert "<b>" not in text
    assert "Courier &lt;b&gt;bold&lt;/b&gt; &amp; co" in text


def test_render_html_is_well_formed(report: dict[str, Any]) -> None:
    """html.parser sees every element closed, in order."""
    parser = StrictParser()
    parser.feed(render_html(report))
    parser.close()
    assert parser.errors == []
    assert parser.open == []


def test_render_html_has_an_svg_per_chart(report: dict[str, Any]) -> None:
    """Each chart is one inline <svg>, labelled with its title."""
    page = render_html(report)
    assert page.count("<svg") == len(CHARTS)
    assert set(re.findall(r'<svg [^>]*aria-label="([^"]*)"', page)) == CHARTS


def test_render_html_loads_nothing_from_outside(report: dict[str, Any]) -> None:
    """The page has no script and no reference to another resource."""
    page = render_html(report).lower()
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "http://" not in page
    assert "https://" not in page
    assert "url(" not in page
    assert "@import" not in page


def test_render_html_escapes_storyline_summary(report: dict[str, Any]) -> None:
    """A summary holding "<b>&" appears as text, not markup."""
    page = render_html(report)
    assert "<b>" not in page
    assert "Courier &lt;b&gt;bold&lt;/b&gt; &amp; co" in page


def test_render_html_escapes_chart_labels(report: dict[str, Any]) -> None:
    """Labels inside charts are escaped too."""
    report["by_country"][0]["name"] = "Trinidad <&> Tobago"
    page = render_html(report)
    assert "Trinidad &lt;&amp;&gt; Tobago (SN)" in page
    assert "Trinidad <&>" not in page


def test_render_html_marks_failed_checks(failing: dict[str, Any]) -> None:
    """A failing check gets a "fail" row and a failing verdict."""
    page = render_html(failing)
    assert '<p class="verdict fail">1 of 3 checks FAILED.</p>' in page
    assert page.count('<tr class="fail">') == 1
    assert page.count('<tr class="ok">') == 2


def test_render_html_is_deterministic(report: dict[str, Any]) -> None:
    """The same dict renders to the same page."""
    assert render_html(report) == render_html(copy.deepcopy(report))


def test_render_markdown_without_optional_sections() -> None:
    """A report with only the required keys still renders, with no empty sections."""
    text = render_markdown(dict(MINIMAL))
    assert text.startswith("# COCAIR-V — after-action report\n")
    assert "No published figures to check" in text
    assert "## " not in text


def test_render_html_without_optional_sections() -> None:
    """A report with only the required keys still renders a well-formed page, no charts."""
    page = render_html(dict(MINIMAL))
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert (parser.errors, parser.open) == ([], [])
    assert "<svg" not in page


def test_fmt_count_separates_thousands() -> None:
    """Counts get comma separators and drop a zero fraction."""
    assert [fmt_count(v) for v in (125000, 8000.0, 0.25, None)] == ["125,000", "8,000",
                                                                    "0.25", "—"]


def test_fmt_measure_keeps_one_decimal() -> None:
    """Quantities keep at most one decimal."""
    assert [fmt_measure(v) for v in (411.0, 12.34, 1234.56)] == ["411", "12.3", "1,234.6"]


def test_render_markdown_marks_a_partial_report(report: dict[str, Any]) -> None:
    """A report of a replay stopped before its end says so at the top, with how far it
    went; a complete one says nothing of the kind."""
    assert "partial" not in render_markdown(report).lower()
    report.update(partial=True, stopped_after={"sent": 1234, "planned": 8000})
    head = render_markdown(report).split("## ")[0]
    assert "Partial report: the replay was stopped after 1,234 of 8,000 planned messages" \
        in head


def test_render_html_marks_a_partial_report(report: dict[str, Any]) -> None:
    """The HTML page of a stopped replay opens with the partial-report warning."""
    report.update(partial=True, stopped_after={"sent": 5, "planned": 120})
    page = render_html(report)
    assert '<p class="verdict partial">Partial report: the replay was stopped after 5 of ' \
        '120 planned messages' in page
    assert page.index("verdict partial") < page.index("<h2>")


# -- what the report shows of a documented operation ----------------------------------------


def charts(page: str) -> dict[str, ET.Element]:
    """Each inline chart of ``page``, parsed, by its label."""
    found = (ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", page, re.S))
    return {str(svg.get("aria-label")): svg for svg in found}


def chart(page: str, label_start: str) -> ET.Element:
    """The one chart whose label starts with ``label_start``."""
    [svg] = [svg for label, svg in charts(page).items() if label.startswith(label_start)]
    return svg


def bar_labels(svg: ET.Element) -> list[str]:
    """The full labels of a bar chart's bars (from their tooltips "label: value")."""
    return [str(rect.findtext("title")).rsplit(": ", 1)[0]
            for rect in svg.iter("rect") if rect.get("class") == "bar"]


def legend(svg: ET.Element) -> list[str]:
    """The series a grouped chart's legend names: a swatch without a tooltip, then a text."""
    items = list(svg)
    return [str(after.text) for item, after in itertools.pairwise(items)
            if item.tag == "rect" and item.find("title") is None and after.tag == "text"]


def series_bars(svg: ET.Element) -> dict[str, int]:
    """How many bars a grouped chart draws per series (tooltips "group, series: value")."""
    out: dict[str, int] = {}
    for rect in svg.iter("rect"):
        if (tip := rect.findtext("title")) is not None:
            series = tip.rsplit(": ", 1)[0].rsplit(", ", 1)[1]
            out[series] = out.get(series, 0) + 1
    return out


def md_part(text: str, heading: str) -> str:
    """A markdown section with its subsections, up to the next section of its level."""
    return text.split(f"\n## {heading}\n")[1].split("\n## ")[0]


def test_render_html_shows_each_storyline_step_summary(cocair: StorylineReport) -> None:
    """Every step of every storyline shows its message's one-line summary beside its id."""
    scenario, report = cocair
    words = enum_words(default_catalog())
    steps = re.findall(r"<li>(.*?)</li>", render_html(report).split("<h2>Storylines</h2>")[1])
    assert len(steps) == len(scenario.steps)
    for st in scenario.steps:
        [shown] = [s for s in steps if f'<span class="id">{st.message["id"]}</span>' in s]
        assert escape(summarise(st.message, words)) in shown


def test_render_html_shows_each_storyline_narrative(cocair: StorylineReport) -> None:
    """Each storyline's heading is followed by its narrative, before its timeline."""
    scenario, report = cocair
    page = render_html(report)
    for story in scenario.storylines:
        assert (f"<h3>{escape(story['title'])}</h3>\n<p>{escape(story['summary'])}</p>\n"
                f'<ol class="timeline">') in page


def test_render_markdown_shows_storyline_narratives_and_summaries(
        trigger: StorylineReport) -> None:
    """The markdown gives each storyline its narrative and each step its summary."""
    scenario, report = trigger
    words = enum_words(default_catalog())
    text = md_part(render_markdown(report), "Storylines")
    for story in scenario.storylines:
        assert f"### {escape(story['title'], quote=False)}\n\n" \
            f"{escape(' '.join(story['summary'].split()), quote=False)}\n" in text
    for st in scenario.steps:
        summary = escape(summarise(st.message, words), quote=False).replace("|", "\\|")
        assert f"| {summary} | {st.message['id']} |" in text


@pytest.mark.parametrize("name", ["cocair", "trigger", "calypso"])
def test_render_html_country_chart_shows_countries(name: str,
                                                   request: pytest.FixtureRequest) -> None:
    """The country chart's bars are labelled with the countries' codes, one bar per
    country that reported a seizure, not with an agency's name."""
    scenario, report = request.getfixturevalue(name)
    labels = bar_labels(chart(render_html(report), "Seizure reports by country"))
    reporting = {r["sender"]["country"] for r in (st.message for st in scenario.steps)
                 if r["type"] == "seizure_report"}
    assert sorted(labels) == sorted(reporting)


def test_render_html_drug_chart_has_a_bar_per_kind(trigger: StorylineReport) -> None:
    """The quantity chart has one bar per drug kind seized by mass, named in words."""
    _, report = trigger
    labels = bar_labels(chart(render_html(report), "Quantity seized by kind (kg)"))
    kinds = {k.split(".")[1] for k in report["totals"]
             if k.startswith("drug.") and k.endswith(".kg") and k.count(".") == 2}
    assert len(kinds) > 1
    assert sorted(labels) == sorted(k.replace("_", " ").capitalize() for k in kinds)


def test_render_html_response_chart_draws_each_series_of_its_legend(
        calypso: StorylineReport) -> None:
    """The response-time chart's legend names the median, p90 and max, and each of them
    has a bar for all desks and for each desk."""
    _, report = calypso
    svg = chart(render_html(report), "Response time to requests")
    groups = 1 + len(report["response_times"]["by_desk"])
    assert legend(svg) == ["p50", "p90", "max"]
    assert series_bars(svg) == {"p50": groups, "p90": groups, "max": groups}


def test_render_html_response_legend_names_only_drawn_series(report: dict[str, Any]) -> None:
    """A percentile no desk has a value for is left out of the legend."""
    times = report["response_times"]
    times["p90_minutes"] = times["max_minutes"] = None
    times["by_desk"] = {"INTERPOL-DESK": {"count": 300, "p50_minutes": 33.0}}
    svg = chart(render_html(report), "Response time to requests")
    assert legend(svg) == ["p50"]
    assert series_bars(svg) == {"p50": 2}


def test_render_markdown_groups_totals_with_labels_in_words(report: dict[str, Any]) -> None:
    """The totals come in groups (messages, seizures, seizures by commodity, arrests and
    hits), each figure labelled in words rather than by its metric key."""
    text = md_part(render_markdown(report), "Totals")
    assert re.findall(r"^### (.*)$", text, re.M) == [
        "Messages", "Seizures", "Seizures by commodity", "Arrests and hits"]
    rows = dict(re.findall(r"^\| ([^|-][^|]*?) \| ([^|]+?) \|$", text, re.M))
    assert rows == {
        "Figure": "Value",
        "Messages, all types": "8,000", "Warnings": "1,200",
        "Countries whose units sent messages": "24",
        "Seizures reported": "78", "Items seized": "80",
        "Drugs (kg)": "580", "Cocaine (kg)": "411", "Cannabis herb (kg)": "12.3",
        "Firearms: pistol (number)": "20", "Currency (USD)": "125,000",
        "Arrests": "71", "Database hits, all databases": "12",
        "INTERPOL SLTD (stolen and lost travel documents)": "4",
    }


def test_render_markdown_says_which_totals_are_generated(report: dict[str, Any]) -> None:
    """With the figures' sources, each total says where it comes from, and the section
    says how many the generator made up."""
    sources = {m: "generated" for m in report["totals"]}
    sources.update({"messages": "published", "reports": "storylines"})
    text = md_part(render_markdown({**report, "sources": sources}), "Totals")
    assert f"{len(sources) - 2} of {len(sources)} figures are generated, not published" in text
    rows = {r[0]: r[2] for r in re.findall(
        r"^\| ([^|-][^|]*?) \| ([^|]+?) \| ([^|]+?) \|$", text, re.M)}
    assert rows["Messages, all types"] == "published (checked above)"
    assert rows["Seizures reported"] == "the documented cases"
    assert rows["Warnings"] == "generated, not published"
    page = render_html({**report, "sources": sources})
    assert page.count('<tr class="generated">') == len(sources) - 2


def test_render_html_groups_totals(trigger: StorylineReport) -> None:
    """The HTML totals are tables under group headings, no raw metric key in them."""
    _, report = trigger
    part = render_html(report).split("<h2>Totals</h2>")[1].split("<h2>")[0]
    assert re.findall(r"<h3>(.*?)</h3>", part) == [
        "Messages", "Seizures", "Seizures by commodity", "Persons", "Arrests and hits"]
    assert "<td>Cocaine (kg)</td>" in part
    assert "<td>Firearms: pistol (number)</td>" in part
    assert not re.search(r"<td>[a-z_]+\.[a-z_.]+</td>", part)


def test_render_html_names_message_types_in_words(report: dict[str, Any]) -> None:
    """The messages-by-type chart and the storyline steps name message types in words."""
    page = render_html(report)
    labels = bar_labels(chart(page, "Messages by type"))
    assert "Requests for information" in labels
    assert "Answers to requests" in labels
    assert not [label for label in labels if "_" in label]
    assert '<span class="type">seizure report</span>' in page


def test_render_html_marks_items_of_no_stated_kind(trigger: StorylineReport) -> None:
    """An item that does not say its kind, beside items of its category that do, is
    listed as of a kind not given rather than as the whole category."""
    _, report = trigger
    assert {"document", "document.forged"} <= {g["commodity"] for g in report["by_commodity"]}
    part = render_html(report).split("<h2>By commodity</h2>")[1].split("<h2>")[0]
    assert "<td>Documents: kind not given</td>" in part
    assert "<td>Documents: forged</td>" in part
    assert "<td>Documents</td>" not in part


@pytest.mark.parametrize("metric", [
    "messages.rfi_response", "countries", "drug.psychotropic_other.kg", "drug.mdma.tablets",
    "drug.other.count", "firearm_part.auto_sear.count", "person.notice.red.count",
    "currency.counterfeit.usd", "hits.interpol", "hits.wco_cen", "vessel.go_fast.count"])
def test_metric_label_words_every_part_of_a_metric(metric: str) -> None:
    """A tally metric's label has no code left in it: no dot, no underscore."""
    group, label = metric_label(metric)
    assert group != "Other figures"
    assert "." not in label
    assert "_" not in label


def test_metric_label_names_a_red_notice() -> None:
    """A person with a red notice reads as such, the colour before the word notice."""
    assert metric_label("person.notice.red.count") == (
        "Persons", "Persons: red notice (number)")


@pytest.mark.parametrize(("metric", "label"), [
    ("person.victim_of_trafficking.count", "Persons: victim of trafficking (number)"),
    ("person.migrant.count", "Persons: migrant (number)"),
    ("person.minor.count", "Persons: minors (number)"),
    ("person.exploitation.labour.count", "Persons exploited: labour (number)")])
def test_metric_label_shows_persons_apart_from_seized_goods(metric: str, label: str) -> None:
    """Victims and migrants an inspection found are not seizures: persons have a group of
    their own in the totals."""
    assert metric_label(metric) == ("Persons", label)


def test_render_shows_documented_cases_and_their_verdict(trigger: StorylineReport) -> None:
    """The report lists each documented case with what was found, under a verdict line of
    its own; a case not found turns that line into a failure."""
    _, report = trigger
    text = render_markdown(report)
    assert f"All {len(report['cases'])} documented cases found in the reports" in text
    part = md_part(text, "Documented cases")
    assert "DM-POLICE reported Firearms: pistol, 20" in part
    missing = {**report, "cases": [{**report["cases"][0], "ok": False}, *report["cases"][1:]]}
    assert f"1 of {len(report['cases'])} documented cases NOT FOUND" in render_markdown(missing)
    assert '<tr class="fail">' in render_html(missing).split("Documented cases")[1]
