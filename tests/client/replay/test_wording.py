"""Filler traffic worded for the kind of operation (customs, police, border,
environmental), and suspecting only what the scenario names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from client.replay.plan import BACKGROUND, make_plan
from client.replay.scenario import Scenario, load
from client.replay.wording import KINDS, WORDING

SWEEP = Path(__file__).parents[2] / "data" / "vehicle-sweep.yaml"
SAID = {"published": "An invented figure for the test."}


def _sweep(tmp_path: Path, kind: str | None) -> Scenario:
    data = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))
    if kind is not None:
        data["operation"]["kind"] = kind
    data["results"].append({"metric": "reports", "rule": "exact", "value": 12, **SAID})
    path = tmp_path / f"sweep-{kind}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load(path)


def _filler(scenario: Scenario, kind: str) -> list[dict[str, Any]]:
    return [e.message for e in make_plan(scenario, 1).events
            if e.message is not None and e.message["type"] == kind
            and BACKGROUND in e.message["id"]]


@pytest.mark.parametrize("kind", KINDS)
def test_wording_of_each_kind_makes_valid_filler(tmp_path: Path, kind: str) -> None:
    """Every kind's warnings, alerts and seizure reports pass the message schemas (the
    generator checks each message it makes), in that kind's own words."""
    scenario = _sweep(tmp_path, kind)
    words = WORDING[kind]
    warnings = _filler(scenario, "warning")
    assert warnings
    assert {w["reason"] for w in warnings} <= {r for _, _, r in words.warnings}
    methods = {r["event"]["detection"]["method"] for r in _filler(scenario, "seizure_report")}
    assert methods <= set(words.detection)


def test_wording_environmental_filler_has_no_customs_targeting(tmp_path: Path) -> None:
    """An environmental operation's filler speaks of vessels and waste shipments, not of
    passengers selected for control at arrival, nor found by a detector dog."""
    scenario = _sweep(tmp_path, "environmental")
    texts = " ".join(str(m) for k in ("warning", "alert", "seizure_report")
                     for m in _filler(scenario, k))
    assert "passenger" not in texts
    assert "detector_dog" not in texts
    assert "x_ray" not in texts


def test_wording_warnings_suspect_only_what_the_scenario_names(tmp_path: Path) -> None:
    """A vehicle sweep's filler warnings suspect vehicles, not drugs or firearms."""
    suspected = {c for w in _filler(_sweep(tmp_path, None), "warning")
                 for c in w["suspected_commodities"]}
    assert suspected == {"vehicle"}
