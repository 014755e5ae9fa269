"""Documented cases checked as cases: each seizure a source describes must be carried by
one seizure report the OCU read, not only by an operation-wide total."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.replay.cases import check_cases
from client.replay.scenario import load
from client.replay.tally import Tally
from protocol.errors import ScenarioError

SEEDS = Path(__file__).resolve().parents[3] / "seeds"
TRIGGER = load(SEEDS / "trigger-vii.yaml")


def _reports(scenario: Any) -> list[dict[str, Any]]:
    tally = Tally(scenario.participants)
    for step in scenario.steps:
        tally.add(step.message, at=step.at)
    return tally.live_reports()


def _case(case_id: str) -> dict[str, Any]:
    return next(c for c in TRIGGER.cases if c["id"] == case_id)


@pytest.mark.parametrize("name", ["trigger-vii", "calypso-2", "liberterra-2", "30-days-at-sea-3"])
def test_cases_of_the_seeds_are_found_in_their_storylines(name: str) -> None:
    """Trigger VII's 20 pistols and 500.2 kg of cocaine (and the other cases its release
    gives), CALYPSO 2's 772 kg, Liberterra II's 94 smugglers arrested in Türkiye and 30
    Days at Sea 3.0's 11,000 t of metal waste at Augusta are each found in one report,
    named with who sent it."""
    scenario = load(SEEDS / f"{name}.yaml")
    found = check_cases(scenario.cases, _reports(scenario))
    assert found
    assert [f["id"] for f in found if not f["ok"]] == []
    if name == "trigger-vii":
        pistols = next(f for f in found if f["id"] == "dominica-cereal-pistols")
        assert pistols["found"].startswith("DM-POLICE reported Firearms: pistol, 20")
        cocaine = next(f for f in found if f["id"] == "jamaica-private-jet-cocaine")
        assert "Cocaine, 500.2 kg" in cocaine["found"]
    if name == "liberterra-2":
        assert any("Persons: suspect, 94" in f["found"] for f in found)
    if name == "30-days-at-sea-3":
        assert any("Waste, 11000 t at Port of Augusta" in f["found"] for f in found)


def test_cases_a_report_with_another_amount_is_not_the_case() -> None:
    """18 pistols are not the published 20: the miss names the report and what it has."""
    reports = copy.deepcopy(_reports(TRIGGER))
    mine = next(r for r in reports if r["id"] == "DM-POLICE-S001")
    next(i for i in mine["items"] if i["category"] == "firearm")["count"] = 18
    (found,) = check_cases([_case("dominica-cereal-pistols")], reports)
    assert not found["ok"]
    assert "DM-POLICE-S001 has Firearms: pistol, 18" in found["found"]


def test_cases_masses_compare_across_units() -> None:
    """A case in tonnes is met by items in kilograms adding up to it."""
    reports = copy.deepcopy(_reports(TRIGGER))
    mine = next(r for r in reports if r["id"] == "CW-DCCG-S001")
    cocaine = next(i for i in mine["items"] if i.get("substance") == "cocaine")
    cocaine["quantity"] = {"value": 1000, "unit": "kg"}
    mine["items"] += [{**cocaine, "quantity": {"value": 2000000, "unit": "g"}}]
    (found,) = check_cases([_case("curacao-cocaine")], reports)
    assert found["ok"], found


def test_cases_from_another_sender_or_place_do_not_count() -> None:
    case = {**_case("dominica-cereal-pistols"), "reported_by": "JM"}
    assert not check_cases([case], _reports(TRIGGER))[0]["ok"]
    case = {**_case("dominica-cereal-pistols"), "place": "Portsmouth"}
    assert not check_cases([case], _reports(TRIGGER))[0]["ok"]
    case = {**_case("dominica-cereal-pistols"), "place": "roseau"}
    assert check_cases([case], _reports(TRIGGER))[0]["ok"]


def _without_storyline(tmp_path: Path, storyline: str) -> Path:
    data = yaml.safe_load((SEEDS / "trigger-vii.yaml").read_text(encoding="utf-8"))
    data["storylines"] = [s for s in data["storylines"] if s["id"] != storyline]
    path = tmp_path / "trigger-without.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_cases_whose_storyline_is_removed_fail_the_scenario_check(tmp_path: Path) -> None:
    """Without the storyline that plays it, a case cannot be found, whatever the totals:
    the scenario is refused at the case, naming what is missing."""
    with pytest.raises(ScenarioError) as info:
        load(_without_storyline(tmp_path, "jamaica-private-jet"))
    problems = {p.path: p.message for p in info.value.problems}
    index = [c["id"] for c in TRIGGER.cases].index("jamaica-private-jet-cocaine")
    assert "no storyline carries this case" in problems[f"/cases/{index}"]
    assert "Cocaine, 500.2 kg" in problems[f"/cases/{index}"]


def _report(unit: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": f"{unit}-S001", "sender": {"unit": unit, "country": unit[:2]},
            "items": items}


def _person(role: str, count: int = 1) -> dict[str, Any]:
    return {"category": "person", "count": count, "person": {"role": role}}


def test_cases_count_persons_by_their_role() -> None:
    """A case of 94 suspects is met by the report's suspects, not by its victims too
    (Liberterra II's Türkiye case)."""
    report = _report("TR-TNP", [_person("suspect", 94), _person("victim_of_trafficking", 6)])
    case = {"id": "smugglers", "published": "94 smugglers", "reported_by": "TR",
            "goods": {"category": "person", "kind": "suspect", "count": 94}}
    (found,) = check_cases([case], [report])
    assert found["ok"], found
    (found,) = check_cases([{**case, "goods": {**case["goods"], "kind": "victim_of_trafficking"}}],
                           [report])
    assert not found["ok"]


def test_cases_count_wildlife_by_specimen_as_well_as_species_group() -> None:
    """Wildlife is counted two ways (tally.SECOND_KIND_FIELDS): a case of 3 live animals
    is met by live birds and live reptiles together."""
    items = [{"category": "wildlife", "count": 2, "species_group": "bird", "specimen": "live"},
             {"category": "wildlife", "count": 1, "species_group": "reptile",
              "specimen": "live"},
             {"category": "wildlife", "count": 5, "species_group": "bird", "specimen": "dead"}]
    case = {"id": "live", "published": "3 live animals", "reported_by": "KE",
            "goods": {"category": "wildlife", "kind": "live", "count": 3}}
    assert check_cases([case], [_report("KE-KWS", items)])[0]["ok"]
    case["goods"] = {"category": "wildlife", "kind": "bird", "count": 7}
    assert check_cases([case], [_report("KE-KWS", items)])[0]["ok"]
