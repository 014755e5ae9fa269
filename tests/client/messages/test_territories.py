"""Territories with user-assigned codes (Kosovo, XK): accepted wherever the schemas take a
country, from a deliberate list in the country definition, not as any two letters."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.content import load_file
from client.replay.scenario import load

VALID = SCHEMA_DIR / "examples" / "valid"
MINI = Path(__file__).resolve().parents[2] / "data" / "mini-scenario.yaml"
#: ISO 3166-1 section 5.1 leaves these alpha-2 codes to users: AA, QM to QZ, XA to XZ, ZZ.
USER_ASSIGNED = re.compile(r"AA|Q[M-Z]|X[A-Z]|ZZ")


def _country() -> dict[str, Any]:
    common = json.loads((SCHEMA_DIR / "common.schema.json").read_text(encoding="utf-8"))
    definition: dict[str, Any] = common["$defs"]["country"]
    return definition


def _example(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_file(VALID / name))


def test_territories_kosovo_is_a_seizure_reports_sender_and_place() -> None:
    """A seizure report sent from Kosovo about a seizure in Kosovo, on a route through
    Kosovo, is valid."""
    m = _example("seizure-cocair-airport-cocaine.json")
    m["sender"]["country"] = "XK"
    m["event"]["where"]["country"] = "XK"
    m["event"]["route"]["transit"][0]["country"] = "XK"
    assert default_catalog().problems(m) == []


def test_territories_kosovo_is_a_warning_addressee() -> None:
    """A warning may be addressed to Kosovo by its code."""
    m = _example("warning-cocair-couriers.json")
    m["addressees"] = ["XK"]
    assert default_catalog().problems(m) == []


def test_territories_kosovo_is_a_scenario_participants_country(tmp_path: Path) -> None:
    """A scenario with a unit from Kosovo loads, Kosovo counting as one of its four
    published countries."""
    text = MINI.read_text(encoding="utf-8")
    text = text.replace("country: BE, agency: customs, role: unit",
                        "country: XK, agency: customs, role: unit")
    text = text.replace("- {unit: BE-CUSTOMS, name: Belgian customs, country: XK",
                        "- {unit: XK-CUSTOMS, name: Kosovo Customs, country: XK")
    path = tmp_path / "kosovo.yaml"
    path.write_text(text, encoding="utf-8")
    scenario = load(path)
    assert scenario.participants["XK-CUSTOMS"].country == "XK"


@pytest.mark.parametrize("code", ["XX", "AA", "QZ", "ZZ", "EU", "UK"])
def test_territories_other_codes_stay_refused(code: str) -> None:
    """User-assigned codes nobody listed, and reserved ones, are still not countries."""
    m = _example("warning-cocair-couriers.json")
    m["addressees"] = [code]
    assert [p.path for p in default_catalog().problems(m)] == ["/addressees/0"]


def test_territories_user_assigned_codes_are_listed_with_a_reason() -> None:
    """Every user-assigned code the country list accepts is named, with who uses it, in
    x-user-assigned; and every code named there is accepted."""
    country = _country()
    accepted = {c for c in country["enum"] if USER_ASSIGNED.fullmatch(c)}
    listed = country["x-user-assigned"]
    assert "XK" in listed
    assert accepted == set(listed)
    assert all(isinstance(why, str) and why for why in listed.values())
    assert "XK" in country["description"]
