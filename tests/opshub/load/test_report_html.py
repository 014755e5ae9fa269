"""report_html: the offline HTML report of a load run, written at the end of a real run
(`opshub load --html`) and again from its JSON (`opshub load report`): well-formed,
self-contained, every section, the JSON's figures, a chart point per second.

One small stepped run against the module's hub feeds most tests; the rest start from its
result dict, changed."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from client.connection import TIMEOUT
from client.replay.report_svg import line_chart
from opshub.load import histograms
from opshub.load.report_html import read_result, render_html, spectrum
from protocol.errors import UsageError
from tests.opshub.load.conftest import ServedHub

EVIL = "<b>bold</b> & co"
SECTIONS = ["Summary", "Throughput over time", "Latency over time", "Latency distribution",
            "Steps", "Delivery, errors, closes and resumes", "Thresholds", "Hub", "CPU cost",
            "Options"]
THROUGHPUT = "Messages per second: sent by the publishers, acked by the hub (one line over " \
             "the other while the hub keeps up)"


def opshub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tmp = cwd / "tmp"
    tmp.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "opshub", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT * 12,
                          env={**os.environ, "TMPDIR": str(tmp)}, check=False)


@dataclass
class Run:
    folder: Path
    result: dict[str, Any]
    page: str
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, served_hub: ServedHub) -> Run:
    """Two 1-second steps (100/s, then 200/s) to 2 subscribers, a threshold that passes
    and one that fails, the JSON and the HTML written at the end."""
    folder = tmp_path_factory.mktemp("report")
    done = opshub("load", "--hub", served_hub.url, "--metrics", served_hub.metrics,
                  "--keys", str(served_hub.keys),
                  "--subscribers", "2", "--sub-procs", "1", "--rate", "100:200:100",
                  "--step-seconds", "1", "--warmup", "0.5", "--quiet",
                  "--threshold", "errors==0", "--threshold", "p99<1us",
                  "--json", "out.json", "--html", "run.html", cwd=folder)
    assert done.returncode == 1, done.stdout + done.stderr  # p99<1us fails, as meant
    return Run(folder, json.loads((folder / "out.json").read_text()),
               (folder / "run.html").read_text(encoding="utf-8"), done)


@pytest.fixture
def result(run: Run) -> dict[str, Any]:
    """The run's result, for a test to change."""
    return copy.deepcopy(run.result)


class Page(HTMLParser):
    """The page parsed: end tags that close nothing open, the h2 headings, and the tables
    (rows of cell texts, with each row's class)."""

    VOID = frozenset({"br", "meta", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.headings: list[str] = []
        self.tables: list[list[tuple[str, list[str]]]] = []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._row_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self.open.append(tag)
        self.text = []
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row, self._row_class = [], dict(attrs).get("class") or ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <line .../> in SVG: opens and closes at once

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> while {self.open[-3:]} open at {self.getpos()}")
            return
        self.open.pop()
        if tag == "h2":
            self.headings.append("".join(self.text))
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self.text))
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append((self._row_class, self._row))
            self._row = None

    def table(self, header: str) -> dict[str, tuple[str, list[str]]]:
        """The table whose first header cell is ``header``: first cell -> (class, cells)."""
        found = [t for t in self.tables if t and t[0][1][0] == header]
        assert len(found) == 1, (header, [t[0][1][0] for t in self.tables if t])
        return {cells[0]: (cls, cells[1:]) for cls, cells in found[0][1:]}


def parse(page: str) -> Page:
    parsed = Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def svgs(page: str) -> dict[str, ET.Element]:
    """Every chart parsed as XML, by its aria-label."""
    out = {}
    for text in re.findall(r"<svg .*?</svg>", page, flags=re.S):
        svg = ET.fromstring(text)
        out[svg.attrib["aria-label"]] = svg
    return out


def points(svg: ET.Element, line: str) -> list[tuple[float, float]]:
    """The points of the polylines of the line named ``line``, in order."""
    out = []
    for poly in svg.iter("polyline"):
        title = poly.find("title")
        if title is not None and title.text == line:
            out += [(float(x), float(y)) for x, y in
                    (p.split(",") for p in poly.attrib["points"].split())]
    return out


def test_report_html_from_the_json_equals_the_one_written_by_the_run(run: Run) -> None:
    """`opshub load report RESULT.json --html` writes the very page `opshub load --html`
    wrote at the end of the run, prints the run's summary and exits 0."""
    done = opshub("load", "report", "out.json", "--html", "later.html", cwd=run.folder)
    assert done.returncode == 0, done.stderr
    assert (run.folder / "later.html").read_text(encoding="utf-8") == run.page
    assert done.stdout.splitlines()[0] == run.done.stdout.splitlines()[0]
    assert "threshold FAILED  p99<1us" in done.stdout


def test_report_html_is_well_formed(run: Run) -> None:
    """html.parser sees every element closed in order, and every chart is well-formed
    XML (SVG)."""
    parsed = parse(run.page)
    assert parsed.errors == []
    assert parsed.open == []
    assert len(svgs(run.page)) == 7


def test_report_html_loads_nothing_from_outside(run: Run) -> None:
    """The page has no script and no reference to another resource."""
    page = run.page.lower()
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=""", page)
    for outside in ("http://", "https://", "url(", "@import"):
        assert outside not in page


def test_report_html_has_every_section(run: Run) -> None:
    """A stepped run's report has each section, in order."""
    assert parse(run.page).headings == SECTIONS


def test_report_html_shows_the_json_figures(run: Run) -> None:
    """The latency table shows the JSON's percentiles to the microsecond, the throughput
    and delivery tables its counts, and the summary line its p99."""
    r, parsed = run.result, parse(run.page)
    latency = parsed.table("Latency (ms)")
    for key, name in (("latency_ms", "delivery (intended)"),
                      ("latency_uncorrected_ms", "delivery (uncorrected)"),
                      ("ack_latency_ms", "publish to ack")):
        shown = latency[name][1]
        assert shown[:7] == [f"{r[key][k]:,.3f}" for k in
                             ("p50", "p90", "p99", "p99.9", "p99.99", "max", "mean")]
        assert shown[7] == f"{r[key]['count']:,.0f}"
    assert f"p99 {r['latency_ms']['p99']:,.3f} ms" in run.page
    throughput = parsed.table("Throughput")
    assert throughput["Messages in (acked by the hub)"][1] == [
        f"{r['messages']['msgs_in_per_s']:,.1f} /s"]
    delivery = parsed.table("Delivery")
    assert delivery["Expected"][1] == [f"{r['delivery']['expected']:,}"]
    assert delivery["Lost"][1] == ["0"]
    steps = parsed.table("Step")
    assert [cells[0] for _, cells in steps.values()] == ["100/s", "200/s"]


def test_report_html_judges_each_threshold(run: Run) -> None:
    """Each threshold shows its actual figure and verdict; the failed one's row is marked
    and the heading says so."""
    rows = parse(run.page).table("Threshold")
    assert rows["errors==0"] == ("", ["0", "passed"])
    cls, (actual, verdict) = rows["p99<1us"]
    assert (cls, verdict) == ("fail", "FAILED")
    assert float(actual) == run.result["thresholds"][1]["actual"]
    assert "1 of 2 thresholds FAILED." in run.page


def test_report_html_charts_have_a_point_per_second(run: Run) -> None:
    """The throughput, latency and hub charts have one point for each second of the
    series (p99: each second that had deliveries; CPU: each but the first)."""
    rows = run.result["series"]
    charts = svgs(run.page)
    sampled = sum(1 for row in rows if "hub_cpu_s" in row)
    assert len(rows) >= 3
    assert sampled >= len(rows) - 1  # the hub's last sample may come before the last tick
    for caption, line, expected in (
            (THROUGHPUT, "sent", len(rows)), (THROUGHPUT, "acked", len(rows)),
            ("Deliveries per second", "delivered", len(rows)),
            ("Delivery latency p99 per second (ms)", "p99",
             sum(1 for row in rows if row["p99_ms"] is not None)),
            ("Hub memory (RSS, MB)", "RSS", sampled),
            ("Hub CPU (cores: CPU seconds per second)", "CPU", sampled - 1)):
        drawn = points(charts[caption], line)
        assert len(drawn) == expected, (caption, line)
        assert [x for x, _ in drawn] == sorted(x for x, _ in drawn), (caption, line)


def test_report_html_spectrum_agrees_with_the_json(run: Run) -> None:
    """The latency spectrum has a line per latency; the intended line is the merged
    histogram's, whose point at 99 % is the JSON's p99 and which ends at its max."""
    r = run.result
    chart = svgs(run.page)["Latency by percentile (ms)"]
    hist = histograms.decode(r["histogram"])
    line = spectrum(hist)
    assert len(points(chart, "delivery (intended)")) == len(line)
    assert dict(line)[2.0] == r["latency_ms"]["p99"]
    assert line[-1] == (pytest.approx(math.log10(hist.get_total_count())),
                        r["latency_ms"]["max"])
    for name in ("delivery (uncorrected)", "publish to ack"):
        assert points(chart, name)
    ticks = [t.text for t in chart.iter("text") if t.attrib.get("class") == "tick"]
    assert {"0%", "90%", "99%", "99.9%"} <= set(ticks)


def test_spectrum_of_known_samples() -> None:
    """The spectrum of 1..10,000 us: 20 points a decade up to log10(10,000) = 4, each the
    histogram's value at that percentile, the last one the max."""
    hist = histograms.new()
    for micros in range(1, 10_001):
        histograms.record(hist, micros)
    line = spectrum(hist)
    assert len(line) == 4 * 20 + 1
    assert dict(line)[1.0] == histograms.percentile_ms(hist, 90)
    assert dict(line)[3.0] == histograms.percentile_ms(hist, 99.9)
    assert line[-1] == (4.0, histograms.summary_ms(hist)["max"])  # 10 ms, to 3 digits
    assert spectrum(histograms.new()) == []


def test_report_html_from_an_older_result(result: dict[str, Any]) -> None:
    """A result written before the report existed (no options, start time or other two
    histograms) still renders: the spectrum has the delivery line only."""
    for key in ("options", "started_at", "histogram_uncorrected", "histogram_ack"):
        del result[key]
    page = render_html(result)
    chart = svgs(page)["Latency by percentile (ms)"]
    assert points(chart, "delivery (intended)")
    assert not points(chart, "publish to ack")
    assert "Options" not in parse(page).headings


def test_report_html_marks_an_incomplete_run(result: dict[str, Any]) -> None:
    """Lost deliveries and errors turn the verdicts to failures."""
    result["delivery"].update(complete=False, lost=3, gaps=1)
    result["errors"] = {"total": 2, "by_kind": {"timeout": 2}}
    page = render_html(result)
    assert '<p class="verdict fail">Delivery INCOMPLETE:' in page
    assert '<p class="verdict fail">2 errors.</p>' in page
    assert parse(page).table("Event")["error: timeout"][1] == ["2"]


def test_report_html_escapes_every_string(result: dict[str, Any]) -> None:
    """Strings from the result (shapes, operations, error kinds, thresholds, short
    subscribers) appear as text, never as markup."""
    result["shapes"] = [EVIL]
    result["operations"] = [EVIL]
    result["errors"]["by_kind"] = {EVIL: 1}
    result["thresholds"][0]["threshold"] = EVIL
    result["delivery"]["short_subscribers"] = [EVIL]
    page = render_html(result)
    assert "<b>" not in page
    assert page.count("&lt;b&gt;bold&lt;/b&gt; &amp; co") == 5
    assert parse(page).errors == []


def test_line_chart_breaks_a_line_where_a_value_is_missing() -> None:
    """A None value splits the line in two; a point alone between two gaps is a dot."""
    values = [1.0, 2.0, None, 1.0, None, 3.0, 2.0]
    svg = ET.fromstring(line_chart("t", [("a", [(float(x), y) for x, y in enumerate(values)])],
                                   str, x_fmt=str))
    polylines = [p.attrib["points"].split() for p in svg.iter("polyline")]
    assert [len(p) for p in polylines] == [2, 1, 2]
    assert len([c for c in svg.iter("circle") if c.attrib["class"] != "tip"]) == 1


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not an opshub load result (a JSON list, not an object)"),
    ('{"operation": "COCAIR-V", "messages": 8000}', "not an opshub load result (no mode, "
                                                    "shapes, measured_s, warmup_s ...)"),
])
def test_read_result_refuses_what_is_not_a_load_result(tmp_path: Path, content: str | None,
                                                        says: str) -> None:
    """A missing file, a file that is not JSON, or JSON that is not a load result is
    refused with a UsageError saying which."""
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=re.escape(says)):
        read_result(path)


def test_cli_load_report_refuses_a_replay_report(tmp_path: Path) -> None:
    """`opshub load report` given another JSON file says in one line that it is not a
    load result, writes nothing and exits 2."""
    (tmp_path / "report.json").write_text('{"operation": "COCAIR-V", "messages": 8000}')
    done = opshub("load", "report", "report.json", "--html", "x.html", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("opshub load report: report.json: not an opshub load "
                                  "result"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()
