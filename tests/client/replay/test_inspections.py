"""Figures of operations that count controls, not seizures: inspections, offences by kind
and by place, investigations, entities, fines, assets, persons who are minors; named,
tallied from inspection reports and filled by the generator like any other figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.messages.catalog import SCHEMA_DIR
from client.replay.plan import BACKGROUND, make_plan
from client.replay.scenario import Scenario, load
from client.replay.tally import Tally, known_metric, metric_problem
from opshub.replay import run_replay

SWEEP = Path(__file__).parents[2] / "data" / "vehicle-sweep.yaml"
VALID = SCHEMA_DIR / "examples" / "valid"
SAID = {"published": "An invented figure for the test."}
CONTROLS = {
    "inspections": 40, "inspections.vessel": 25, "offence.count": 12,
    "offence.oil_pollution.count": 5, "offence.at_sea.count": 7, "investigations": 3,
    "entity.company.count": 2, "fines.count": 4, "fines.usd": 50000, "assets.count": 3,
    "assets.cash.count": 1, "assets.value.usd": 20000}


@pytest.mark.parametrize("metric", [
    *CONTROLS, "agencies", "person.minor.count", "person.victim_of_trafficking.minor.count",
    "person.exploitation.labour.count", "entity.criminal_network.count",
    "offence.port.count", "inspections.premises"])
def test_inspection_metrics_are_known(metric: str) -> None:
    assert known_metric(metric), metric_problem(metric)


@pytest.mark.parametrize(("metric", "says"), [
    ("offence.oil_spill.count", "no offence kind or locus 'oil_spill'"),
    ("inspections.boat", "no inspected object 'boat'"),
    ("assets.gold.count", "no asset kind 'gold'"),
    ("entity.gang.count", "no entity kind 'gang'"),
    ("fines.eur", "a fines figure is fines.count or fines.usd"),
    ("person.exploitation.slavery.count", "no exploitation 'slavery'"),
    ("investigations.opened", "investigations is counted as a whole")])
def test_inspection_metrics_with_a_wrong_part_are_refused(metric: str, says: str) -> None:
    assert says in str(metric_problem(metric))


def _tally(*messages: dict[str, Any]) -> dict[str, float]:
    tally = Tally({})
    for m in messages:
        tally.add(m)
    return tally.totals()


def test_tally_counts_what_an_inspection_report_found() -> None:
    """The valid examples' inspections, offences (by kind and by place), persons (minors
    and exploitation), investigations, entities, fines and assets are each tallied."""
    examples = [json.loads(p.read_text(encoding="utf-8"))
                for p in sorted(VALID.glob("inspection-*.json"))]
    assert examples
    totals = _tally(*examples)
    assert totals["inspections"] == sum(e["inspected"].get("count", 1) for e in examples)
    offences = [o for e in examples for o in e.get("offences", [])]
    assert totals["offence.count"] == sum(o.get("count", 1) for o in offences)
    for o in offences:
        assert totals[f"offence.{o['kind']}.count"] >= o.get("count", 1)
        assert totals[f"offence.{o['locus']}.count"] >= o.get("count", 1)
    minors = sum(p["count"] for e in examples for p in e.get("persons", []) if p.get("minor"))
    assert totals.get("person.minor.count", 0) == minors
    assert totals.get("investigations", 0) == sum(e.get("investigations_opened", 0)
                                                  for e in examples)


def _controls(tmp_path: Path, results: dict[str, float], **background: Any) -> Scenario:
    data = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))
    data["results"] = [r for r in data["results"] if r["metric"] != "messages"]
    data["results"] += [{"metric": m, "rule": "exact", "value": v, **SAID}
                        for m, v in results.items()]
    data["background"]["messages"] = 600
    data["background"].update(background)
    path = tmp_path / "controls.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load(path)


def _planned(scenario: Scenario) -> tuple[dict[str, float], list[dict[str, Any]]]:
    plan = make_plan(scenario, 1)
    tally = Tally(scenario.participants)
    for e in plan.events:
        if e.message is not None:
            tally.add(e.message, at=e.at)
    filler = [e.message for e in plan.events if e.message is not None
              and e.message["type"] == "inspection_report" and BACKGROUND in e.message["id"]]
    return tally.totals(), filler


def test_plan_fills_control_figures_exactly(tmp_path: Path) -> None:
    """Every control figure, specific ones and totals, comes out of the planned
    inspection reports exactly; each offence is one kind at one place."""
    totals, filler = _planned(_controls(tmp_path, CONTROLS))
    for metric, value in CONTROLS.items():
        assert totals.get(metric, 0) == value, metric
    assert filler
    assert all(o["count"] == 1 for r in filler for o in r.get("offences", []))


def test_plan_fills_inspections_one_by_one(tmp_path: Path) -> None:
    """Counted one by one, 40 inspections are 40 reports of one object each."""
    _, filler = _planned(_controls(tmp_path, {"inspections": 40},
                                   fill={"one_by_one": ["inspections"]}))
    assert len(filler) == 40
    assert {r["inspected"]["count"] for r in filler} == {1}


def test_plan_puts_offences_no_figure_places_where_they_were_found(tmp_path: Path) -> None:
    """40 offences of which a figure places 7 at sea: the other 33 are committed where
    the inspection that found them was (a seaport's at port, a border crossing's at
    the border), never at a place a figure fixes, and never all at one fallback (they
    went to airports in 30 Days at Sea 3.0, where the release says coast and rivers)."""
    from client.replay.plan_inspections import LOCUS_OF_PLACE
    results = {"inspections": 60, "offence.count": 40, "offence.at_sea.count": 7}
    totals, filler = _planned(_controls(tmp_path, results))
    assert totals["offence.at_sea.count"] == 7
    unplaced = [(r["where"].get("place_type"), o["locus"]) for r in filler
                for o in r.get("offences", []) if o["locus"] != "at_sea"]
    assert len(unplaced) == 33
    for place_type, locus in unplaced:
        here = LOCUS_OF_PLACE.get(str(place_type), "inland")
        assert locus == here or here == "at_sea", (place_type, locus)
    assert len({locus for _, locus in unplaced}) > 1


async def test_replay_reproduces_control_figures(tmp_path: Path) -> None:
    """Over a hub, the OCU's tally of the decrypted inspection reports gives every
    published control figure."""
    scenario = _controls(tmp_path, CONTROLS)
    report = await run_replay(str(scenario.path), out=tmp_path / "out",
                              progress=lambda _line: None)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert {c["metric"] for c in report["checks"]} >= set(CONTROLS)
