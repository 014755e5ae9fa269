"""aar: the after-action report's data, built from a documented operation's storyline
messages as the OCU reads them (no hub: the steps go straight into the tally and the log)."""

from __future__ import annotations

import copy

from client.messages import default_catalog
from client.messages.summary import summarise
from client.messages.values import enum_words
from client.replay import aar
from client.replay.tally import Tally
from tests.client.replay.conftest import StorylineReport


def test_build_summarises_every_storyline_step(cocair: StorylineReport) -> None:
    """Each step of a storyline's timeline carries its message's one-line summary."""
    scenario, report = cocair
    words = enum_words(default_catalog())
    expected = {st.message["id"]: summarise(st.message, words) for st in scenario.steps}
    events = [e for story in report["storylines"] for e in story["timeline"]]
    assert len(events) == len(scenario.steps)
    assert all(expected[e["id"]] for e in events)
    assert {e["id"]: e["summary"] for e in events} == expected


def test_build_keeps_each_storyline_narrative(cocair: StorylineReport) -> None:
    """Each storyline keeps the scenario's title and narrative."""
    scenario, report = cocair
    assert [(s["title"], s["summary"]) for s in report["storylines"]] == [
        (s["title"], s["summary"]) for s in scenario.storylines]


def test_build_counts_commodities_by_kind(trigger: StorylineReport) -> None:
    """Seized goods are counted per kind (drug.cocaine, firearm.pistol), each with its
    items, number and quantities in the tally's units."""
    _, report = trigger
    rows = {r["commodity"]: r for r in report["by_commodity"]}
    totals = report["totals"]
    drugs = {k for k in rows if k.startswith("drug.")}
    assert drugs == {"drug.cocaine", "drug.cannabis_herb", "drug.cannabis_plants"}
    for key in drugs:
        assert rows[key]["category"] == "drug"
        assert rows[key]["kind"] == key.split(".")[1]
    assert rows["drug.cocaine"]["kg"] == totals["drug.cocaine.kg"]
    assert rows["drug.cannabis_plants"]["quantities"] == {
        "plants": totals["drug.cannabis_plants.plants"]}
    assert rows["firearm.pistol"]["count"] == totals["firearm.pistol.count"]
    assert rows["ammunition"]["kind"] is None
    assert rows["ammunition"]["quantities"] == {"rounds": totals["ammunition.rounds"]}
    assert sum(r["items"] for r in rows.values()) == totals["items"]


def test_build_gives_each_desk_every_response_percentile(trigger: StorylineReport) -> None:
    """Each desk's response times have the median, p90 and max the overall figures have."""
    _, report = trigger
    desks = report["response_times"]["by_desk"]
    assert desks
    for stats in desks.values():
        assert set(stats) == {"count", "p50_minutes", "p90_minutes", "max_minutes"}
        assert stats["p50_minutes"] <= stats["p90_minutes"] <= stats["max_minutes"]


def test_build_names_countries_by_code_with_their_units(cocair: StorylineReport) -> None:
    """A country row names the country by its code and lists the units of it that wrote,
    rather than passing one agency's name off as the country's."""
    scenario, report = cocair
    senders = {st.sender for st in scenario.steps}
    for row in report["by_country"]:
        assert "name" not in row
        assert row["units"] == sorted(u for u in senders
                                      if scenario.participants[u].country == row["country"])


def test_build_marks_storyline_figures_and_published_ones(cocair: StorylineReport) -> None:
    """A report of the storylines alone has no generated figure: each is published (a
    result checks it) or given by the documented cases."""
    scenario, report = cocair
    published = {r["metric"] for r in scenario.results}
    assert set(report["sources"]) == set(report["totals"])
    for metric, source in report["sources"].items():
        assert source == ("published" if metric in published else "storylines"), metric


def test_build_marks_figures_moved_by_generated_traffic(cocair: StorylineReport) -> None:
    """A seizure no storyline has moves the figures it counts in: those no result checks
    are marked generated, so a reader sees what the generator made up."""
    scenario, _ = cocair
    tally = Tally(scenario.participants)
    for step in scenario.steps:
        tally.add(step.message, at=step.at)
    extra = copy.deepcopy(next(s.message for s in scenario.steps
                               if s.message["type"] == "seizure_report"))
    extra["id"] = "BR-PF-GRU-B9999"
    extra["items"] = [{**extra["items"][0], "category": "drug", "substance": "heroin",
                       "quantity": {"value": 2.0, "unit": "kg"}}]
    tally.add(extra)
    report = aar.build(scenario, tally, [s.message for s in scenario.steps] + [extra],
                       seed=1, speed="max")
    assert report["sources"]["drug.heroin.kg"] == "generated"
    assert report["sources"]["drug.heroin.count"] == "generated"
    published = {r["metric"] for r in scenario.results}
    assert all(report["sources"][m] == "published" for m in published if m in report["totals"])
