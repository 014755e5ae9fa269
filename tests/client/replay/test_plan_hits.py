"""Hit planting: every hits figure is met at its own level (one database, all INTERPOL
databases, all databases) without pushing a fixed figure at another level over, and a
figure the storylines already reach plants nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.replay.plan import Planner, make_plan
from client.replay.scenario import Scenario, load
from client.replay.tally import Tally
from opshub.replay import run_replay
from protocol.errors import ScenarioError

MINI = Path(__file__).parents[2] / "data" / "mini-scenario.yaml"
SEEDS = range(1, 9)
#: the small scenario's only hits figure (hits.interpol exact 3) is results[5]
HITS_FIGURE = 5


def _scenario(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Scenario:
    data = yaml.safe_load(MINI.read_text())
    change(data)
    path = tmp_path / "hits.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(path)


def _figure(metric: str, rule: str, value: int) -> dict[str, Any]:
    return {"metric": metric, "rule": rule, "value": value, "published": f"{value} hits"}


def _planted(scenario: Scenario, seed: int) -> Counter[str]:
    """The hits the planner plants for ``seed``, per database."""
    story = Tally(scenario.participants)
    for step in scenario.steps:
        story.add(step.message, at=step.at)
    return Counter(Planner(scenario, seed).hits_needed(story))


def _desk_hits(scenario: Scenario, seed: int) -> dict[str, float]:
    """The hit figures of the whole plan: its messages and every answer the desks will
    give from their planted records."""
    plan = make_plan(scenario, seed)
    tally = Tally(scenario.participants)
    for e in plan.events:
        if e.message is not None:
            tally.add(e.message, at=e.at)
    for desk, records in plan.databases.items():
        for key, record in records.items():
            tally.answer_hits.append((f"{desk}:{key}", record["database"]))
    return {k: v for k, v in tally.totals().items() if k.split(".")[0] == "hits"}


def _notices_within_interpol(d: dict[str, Any]) -> None:
    d["participants"][1]["databases"] = ["interpol_sltd", "interpol_smv", "interpol_notices"]
    d["results"][HITS_FIGURE] = _figure("hits.interpol", "exact", 7)
    d["results"].append(_figure("hits.interpol_notices", "exact", 2))


def _wco_cen_within_total(d: dict[str, Any]) -> None:
    d["participants"].insert(2, {
        "unit": "WCO-DESK", "name": "WCO RILO desk", "country": "BE",
        "agency": "international_organisation", "role": "liaison", "databases": ["wco_cen"]})
    d["results"][HITS_FIGURE] = _figure("hits.interpol", "at_most", 10)
    d["results"] += [_figure("hits", "exact", 8), _figure("hits.wco_cen", "exact", 2)]


def _national_hit_in_storyline(d: dict[str, Any]) -> None:
    brazil = {"unit": "BR-POLICE", "country": "BR", "agency": "police",
              "name": "Brazil federal police"}
    d["storylines"][0]["steps"] += [
        {"id": "ask", "at": {"after": "seize", "minutes": 60}, "from": "TG-CUSTOMS",
         "message": {"type": "request_for_information", "to": [brazil],
                     "subject": {"kind": "person", "description": "The arrested courier."},
                     "query": {"persons": [{"role": "suspect", "family_name": "Fictional",
                                            "given_names": "Courier"}]},
                     "databases": ["national"], "reason": "Who booked his ticket.",
                     "marking": {"tlp": "AMBER", "nominal": True}}},
        {"at": {"after": "ask", "minutes": 120}, "from": "BR-POLICE",
         "message": {"type": "rfi_response", "refers_to": "@ask", "result": "hit",
                     "hits": [{"database": "national", "reference": "BR-0001",
                               "summary": "Known to the federal police."}]}}]
    d["results"].append(_figure("hits.national", "exact", 1))


def test_hits_needed_database_figure_within_a_fixed_interpol_total(tmp_path: Path) -> None:
    """hits.interpol exact 7 with hits.interpol_notices exact 2 plants exactly 2 notices
    hits and 5 in the other INTERPOL databases, for every seed."""
    scenario = _scenario(tmp_path, _notices_within_interpol)
    for seed in SEEDS:
        planted = _planted(scenario, seed)
        assert planted["interpol_notices"] == 2, seed
        assert planted.total() == 7, seed


def test_make_plan_database_figure_within_a_fixed_interpol_total(tmp_path: Path) -> None:
    """The whole plan (its messages and the desks' planted answers) gives hits.interpol 7
    and hits.interpol_notices 2, for every seed."""
    scenario = _scenario(tmp_path, _notices_within_interpol)
    for seed in SEEDS:
        hits = _desk_hits(scenario, seed)
        assert (hits["hits.interpol"], hits["hits.interpol_notices"]) == (7, 2), seed


async def test_replay_database_figure_within_a_fixed_interpol_total(tmp_path: Path) -> None:
    """Replayed over a hub, the OCU's tally reproduces hits.interpol exact 7 and
    hits.interpol_notices exact 2."""
    scenario = _scenario(tmp_path, _notices_within_interpol)
    report = await run_replay(str(scenario.path), out=tmp_path / "out",
                              progress=lambda _line: None)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert report["totals"]["hits.interpol_notices"] == 2


def test_hits_needed_fixed_total_leaves_the_rest_to_other_databases(tmp_path: Path) -> None:
    """hits exact 8 with hits.wco_cen exact 2 (and hits.interpol at most 10) plants 2
    WCO CEN hits and the other 6 in INTERPOL databases, for every seed."""
    scenario = _scenario(tmp_path, _wco_cen_within_total)
    for seed in SEEDS:
        planted = _planted(scenario, seed)
        assert planted["wco_cen"] == 2, seed
        assert planted.total() == 8, seed
        assert _desk_hits(scenario, seed)["hits.wco_cen"] == 2, seed


def test_hits_needed_figure_reached_by_storylines_needs_no_desk(tmp_path: Path) -> None:
    """hits.national exact 1, already given by a storyline answer from a unit's national
    database, plants nothing there and needs no liaison desk holding it."""
    scenario = _scenario(tmp_path, _national_hit_in_storyline)
    planted = _planted(scenario, 1)
    assert planted["national"] == 0
    assert planted.total() == 3  # hits.interpol exact 3, from the INTERPOL desk
    assert _desk_hits(scenario, 1)["hits.national"] == 1


def test_hits_needed_database_figure_above_its_fixed_total_raises(tmp_path: Path) -> None:
    """hits.interpol_notices exact 5 under hits.interpol exact 3 cannot be planted: a
    ScenarioError names both figures."""
    def impossible(d: dict[str, Any]) -> None:
        d["participants"][1]["databases"] = ["interpol_sltd", "interpol_notices"]
        d["results"].append(_figure("hits.interpol_notices", "exact", 5))

    scenario = _scenario(tmp_path, impossible)
    with pytest.raises(ScenarioError) as info:
        make_plan(scenario, 1)
    assert "hits.interpol_notices exact 5" in info.value.message
    assert "hits.interpol exact 3" in info.value.message
    assert info.value.message.startswith(f"{scenario.path}: cannot generate the traffic: ")
