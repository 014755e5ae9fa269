"""The two worked examples outside customs (docs/scenarios.md, section 6): an invented
week of action against human trafficking and an invented month of inspections against
marine pollution. Each loads and plans, says it is invented, and replays over a hub of
its own with every published figure reproduced, every documented case found and no
contraband the scenario does not name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.replay.plan import make_plan
from client.replay.scenario import Scenario, load
from opshub.replay import run_replay

DATA = Path(__file__).parents[2] / "data"
EXAMPLES = {"thb": DATA / "thb-action-week.yaml",
            "marine": DATA / "marine-pollution-month.yaml"}
#: categories only a customs operation seizes; the fill must never invent them here
CUSTOMS_ONLY = ("tobacco", "alcohol", "counterfeit_goods")


def _scenario(name: str) -> Scenario:
    return load(EXAMPLES[name])


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each example replayed once (seed 1) over a hub of its own: name -> its report."""
    out = tmp_path_factory.mktemp("noncustoms")
    return {name: asyncio.run(run_replay(str(path), out=out / name,
                                         progress=lambda _line: None))
            for name, path in EXAMPLES.items()}


@pytest.mark.parametrize("name", EXAMPLES)
def test_noncustoms_example_checks_and_plans(name: str) -> None:
    """The file passes every check and its plan carries exactly its message budget."""
    scenario = _scenario(name)
    plan = make_plan(scenario, 1)
    assert plan.expected_messages == scenario.background["messages"]
    assert 300 <= plan.expected_messages <= 1500


@pytest.mark.parametrize("name", EXAMPLES)
def test_noncustoms_example_says_it_is_invented(name: str) -> None:
    """No source is cited, the summary says the operation is invented, and so does
    every published figure and case."""
    scenario = _scenario(name)
    operation = scenario.data["operation"]
    assert operation["sources"] == []
    assert "INVENTED" in operation["summary"]
    assert [r["metric"] for r in scenario.results if "(invented)" not in r["published"]] == []
    assert [c["id"] for c in scenario.cases if "(invented)" not in c["published"]] == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_noncustoms_example_replay_reproduces_every_figure(
        name: str, replayed: dict[str, dict[str, Any]]) -> None:
    """Over a hub, the OCU's tally gives every published figure."""
    report = replayed[name]
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert [c["metric"] for c in report["checks"]] == [
        r["metric"] for r in _scenario(name).results]


@pytest.mark.parametrize("name", EXAMPLES)
def test_noncustoms_example_replay_finds_every_case(
        name: str, replayed: dict[str, dict[str, Any]]) -> None:
    """Each documented case is found in one seizure report the OCU read."""
    cases = replayed[name]["cases"]
    assert len(cases) == len(_scenario(name).cases) >= 2
    assert [c["id"] for c in cases if not c["ok"]] == []


@pytest.mark.parametrize(("name", "seized"), [("thb", {"document"}), ("marine", {"waste"})])
def test_noncustoms_example_report_has_no_contraband(
        name: str, seized: set[str], replayed: dict[str, dict[str, Any]]) -> None:
    """The report's totals have no tobacco, alcohol or counterfeit goods: the only goods
    seized are the category the scenario publishes."""
    report = replayed[name]
    assert [m for m in report["totals"] if m.split(".")[0] in CUSTOMS_ONLY] == []
    assert {row["category"] for row in report["by_commodity"]} == seized


def test_marine_example_inspects_one_object_per_report(
        replayed: dict[str, dict[str, Any]]) -> None:
    """Counted one by one, the 336 objects inspected are 336 inspection reports."""
    totals = replayed["marine"]["totals"]
    assert totals["messages.inspection_report"] == totals["inspections"] == 336
