"""Reports of the documented operations' storylines, built without a hub: each step's
message goes straight into the OCU's tally and log, as if the OCU had read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.replay import aar
from client.replay.scenario import Scenario, load
from client.replay.tally import Tally

SEEDS = Path(__file__).resolve().parents[3] / "seeds"

#: A storyline report: the scenario, and the dict aar.build made of its storyline messages.
StorylineReport = tuple[Scenario, dict[str, Any]]


def storyline_report(name: str) -> StorylineReport:
    """The scenario ``name`` (a seed) and the report of its storyline messages."""
    scenario = load(SEEDS / f"{name}.yaml")
    tally = Tally(scenario.participants)
    for step in scenario.steps:
        tally.add(step.message, at=step.at)
    log = [step.message for step in scenario.steps]
    return scenario, aar.build(scenario, tally, log, seed=1, speed="max")


@pytest.fixture(scope="session")
def cocair() -> StorylineReport:
    return storyline_report("cocair-v")


@pytest.fixture(scope="session")
def trigger() -> StorylineReport:
    return storyline_report("trigger-vii")


@pytest.fixture(scope="session")
def calypso() -> StorylineReport:
    return storyline_report("calypso-2")
