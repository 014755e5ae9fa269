"""aar: the after-action report's data, built from a documented operation's storyline
messages as the OCU reads them (no hub: the steps go straight into the tally and the log)."""

from __future__ import annotations

from client.messages import default_catalog
from client.messages.summary import summarise
from client.messages.values import enum_words
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
