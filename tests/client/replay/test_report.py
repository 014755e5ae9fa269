"""report: the after-action report's three files, its markdown and its offline HTML page."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from client.replay.report import (
    fmt_count,
    fmt_measure,
    render_html,
    render_markdown,
    write_reports,
)

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
    "Quantity seized by commodity (kg)",
    "Items seized by commodity (count)",
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
        "totals": {"messages": 8000, "reports": 78, "drug.kg": 580.0,
                   "drug.cocaine.kg": 411.0, "drug.cannabis.kg": 12.34, "arrests": 71,
                   "hits": 12, "countries": 24},
        "by_day": [{"day": d + 1, "date": f"2015-12-{5 + d:02d}", "messages": 800 + 10 * d,
                    "reports": 9 - d % 4, "items": 14 + d} for d in range(9)],
        "by_country": [{"country": code, "name": name, "messages": 420 - 10 * i,
                        "reports": max(6 - i // 4, 0), "items": 9, "arrests": 3}
                       for i, (code, name) in enumerate(COUNTRIES)],
        "by_commodity": [
            {"commodity": "drug.cocaine", "label": "cocaine", "kg": 411.0, "count": 0,
             "items": 23},
            {"commodity": "drug.cannabis", "label": "cannabis", "kg": 12.34, "count": 0,
             "items": 4},
            {"commodity": "firearm.pistol", "label": "pistol", "kg": 0, "count": 20,
             "items": 3},
            {"commodity": "currency.usd", "label": "US dollars", "kg": 0, "count": 125000,
             "items": 2},
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
    assert "| messages | 8,000 |" in text
    assert "| drug.cocaine.kg | 411 |" in text
    assert "| drug.cannabis.kg | 12.3 |" in text


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
