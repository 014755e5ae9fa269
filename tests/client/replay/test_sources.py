"""Scenario sources: each cited as a reader can follow it (publisher, title, date, url),
never as a file on the machine the scenario was written on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from client.replay.scenario import load
from protocol.errors import ScenarioError

SEEDS = Path(__file__).resolve().parents[3] / "seeds"


@pytest.mark.parametrize("name", sorted(p.stem for p in SEEDS.glob("*.yaml")))
def test_sources_of_the_seeds_name_publisher_title_and_date(name: str) -> None:
    """Every seed cites its release by publisher, title and date; no text of the file
    names a path on a development machine."""
    scenario = load(SEEDS / f"{name}.yaml")
    sources = scenario.data["operation"]["sources"]
    assert sources
    assert all(s["publisher"] and s["title"] for s in sources)
    assert sources[0].get("date")
    assert all(s.get("url", "http").startswith("http") for s in sources)
    assert "/work/" not in (SEEDS / f"{name}.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("source", [
    "/work/shared/seeds/000_911ec14bfcd7cd0d.txt",
    {"publisher": "WCO", "title": "News", "note": "local copy: /home/me/release.txt"},
    {"publisher": "WCO", "title": "file:///C:/releases/cocair.html"},
])
def test_sources_that_name_a_local_file_are_refused(tmp_path: Path, source: object) -> None:
    data = yaml.safe_load((SEEDS / "cocair-v.yaml").read_text(encoding="utf-8"))
    data["operation"]["sources"] = [source]
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load(path)
    (problem,) = info.value.problems
    assert problem.path.startswith("/operation/sources/0")
