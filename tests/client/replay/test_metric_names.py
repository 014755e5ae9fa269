"""Metric names a scenario may publish: each part (message type, database, category,
kind, measure) comes from the schemas, so a misspelt one is refused when the scenario is
checked instead of reading 0 at the end of a replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from client.replay.scenario import load
from client.replay.tally import Tally, known_metric, metric_problem
from protocol.errors import ScenarioError

SEED = Path(__file__).resolve().parents[3] / "seeds" / "cocair-v.yaml"


@pytest.mark.parametrize("metric", [
    "messages", "messages.warning", "reports", "items", "arrests", "countries", "hits",
    "hits.interpol", "hits.interpol_notices", "hits.wco_cen", "drug.kg", "drug.cocaine.kg",
    "firearm.pistol.count", "person.count", "person.suspect.count",
    "person.notice.red.count", "currency.usd", "ammunition.rounds", "vehicle.car.count",
    "wildlife.bird.specimens", "wildlife.live.count", "wildlife.pangolin.kg",
    "wildlife.timber.m3"])
def test_metric_names_the_tally_counts_are_known(metric: str) -> None:
    assert known_metric(metric), metric_problem(metric)


@pytest.mark.parametrize(("metric", "says"), [
    ("reports.seized", "reports is counted as a whole"),
    ("arrests.minors", "arrests is counted as a whole"),
    ("items.kg", "items is counted as a whole"),
    ("countries.africa", "countries is counted as a whole"),
    ("messages.warnings", "no message type 'warnings'"),
    ("hits.interpol_notice", "no database 'interpol_notice'"),
    ("hits.bogus", "no database 'bogus'"),
    ("drug.cocain.kg", "no substance 'cocain'"),
    ("drug.cocaine.lb", "'lb' is not a measure"),
    ("person.victim.count", "no person role 'victim'"),
    ("vehicle.rocket.count", "no vehicle type 'rocket'"),
    ("wildlife.dragon.count", "no species group or specimen 'dragon'"),
    ("explosive.tnt.kg", "explosive items have no kind"),
    ("children", "no metric named 'children'"),
    ("seizures.count", "no category 'seizures'")])
def test_metric_names_with_a_part_the_schemas_lack_are_refused_naming_it(metric: str,
                                                                       says: str) -> None:
    """Every prefix is checked to its end: today's tally would read 0 for each."""
    assert not known_metric(metric)
    assert says in str(metric_problem(metric))


def test_metric_names_scenario_check_names_the_bad_part(tmp_path: Path) -> None:
    """A scenario publishing a figure under a misspelt database or a suffixed whole is
    refused when loaded, each problem at its result's path."""
    data = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    n = len(data["results"])
    said = {"published": "A figure as the release gives it."}
    data["results"] += [{"metric": "hits.interpol_notice", "rule": "exact", "value": 2, **said},
                        {"metric": "arrests.minors", "rule": "at_least", "value": 1, **said}]
    path = tmp_path / "misspelt.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load(path)
    found = {p.path: p.message for p in info.value.problems}
    assert "no database 'interpol_notice'" in found[f"/results/{n}/metric"]
    assert "arrests is counted as a whole" in found[f"/results/{n + 1}/metric"]


def test_metric_names_wildlife_counts_by_group_and_by_specimen() -> None:
    """A wildlife item counts under its species group and, apart, under live, dead, part
    or derivative: 12 live birds add to both wildlife.bird and wildlife.live."""
    tally = Tally({})
    tally.reports["x"] = {"items": [
        {"category": "wildlife", "species_group": "bird", "specimen": "live",
         "quantity": {"value": 12, "unit": "specimens"}},
        {"category": "wildlife", "species_group": "pangolin", "specimen": "part",
         "quantity": {"value": 3.5, "unit": "kg"}}]}
    totals = tally.totals()
    assert totals["wildlife.bird.specimens"] == 12
    assert totals["wildlife.live.specimens"] == 12
    assert totals["wildlife.pangolin.kg"] == 3.5
    assert totals["wildlife.part.kg"] == 3.5
    assert totals["wildlife.count"] == 2
