"""How the generator fills: never with goods of a category the scenario does not name
(a vehicle sweep gets no cigarettes), and one item per unit where the operation counts
one by one (490 vessels are 490 items, not a few items of many)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from client.replay.plan import BACKGROUND, make_plan
from client.replay.scenario import Scenario, load
from client.replay.tally import Tally

SWEEP = Path(__file__).parents[2] / "data" / "vehicle-sweep.yaml"
SAID = {"published": "An invented figure for the test."}


def _sweep(tmp_path: Path, **background: Any) -> Scenario:
    """The vehicle sweep, publishing 30 seizure reports (more than its vehicles fill)."""
    data = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))
    data["results"].append({"metric": "reports", "rule": "exact", "value": 30, **SAID})
    data["background"]["messages"] = 400
    data["results"] = [r for r in data["results"] if r["metric"] != "messages"]
    data["background"].update(background)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load(path)


def _items(scenario: Scenario, seed: int = 1) -> list[dict[str, Any]]:
    """The items of the filler seizure reports (not the storylines')."""
    plan = make_plan(scenario, seed)
    return [i for e in plan.events if e.message and e.message["type"] == "seizure_report"
            and BACKGROUND in e.message["id"] for i in e.message["items"]]


def test_plan_fill_never_invents_a_category_the_scenario_does_not_name(tmp_path: Path
                                                                       ) -> None:
    """The reports a figure needs beyond the vehicles carry only vehicles' fixed count or
    goods held for examination, for any seed: no tobacco, alcohol or counterfeit goods."""
    scenario = _sweep(tmp_path)
    for seed in range(1, 6):
        categories = Counter(i["category"] for i in _items(scenario, seed))
        assert set(categories) <= {"vehicle", "other"}, categories
        assert categories["other"] > 0


def test_plan_fill_uses_the_free_categories_the_scenario_chooses(tmp_path: Path) -> None:
    scenario = _sweep(tmp_path, fill={"free": ["vessel"]})
    categories = Counter(i["category"] for i in _items(scenario))
    assert set(categories) == {"vessel"}  # the storylines carry every vehicle


def test_plan_fill_one_by_one_makes_one_item_per_unit(tmp_path: Path) -> None:
    """With vessels counted one by one, a vessel figure of 490 is 490 items of one
    vessel each; without, it is packed into fewer items."""
    def scenario(**background: Any) -> Scenario:
        data = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))
        data["results"].append({"metric": "vessel.count", "rule": "exact", "value": 490,
                                **SAID})
        data["results"] = [r for r in data["results"] if r["metric"] != "messages"]
        data["background"]["messages"] = 2000
        data["background"].update(background)
        path = tmp_path / f"vessels-{len(background)}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return load(path)

    packed = [i for i in _items(scenario()) if i["category"] == "vessel"]
    single = [i for i in _items(scenario(fill={"one_by_one": ["vessel"]}))
              if i["category"] == "vessel"]
    assert len(packed) < 490
    assert len(single) == 490
    assert {i["count"] for i in single} == {1}
    tally = Tally({})
    tally.reports["x"] = {"items": single}
    assert tally.totals()["vessel.count"] == 490
