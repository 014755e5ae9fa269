"""The inspection report: its examples, the rules its schema holds (offences by kind and
locus, counts, the result's consequences), its summary line, the references the ledger
checks, and which of its fields are nominal; and the minor and exploitation fields the
seizure report's person item gained with it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.checks import Ledger, problems
from client.messages.content import load_file
from client.messages.nominal import nominal_paths, strip_nominal
from client.messages.render import render_html, render_text
from client.messages.summary import summarise
from client.messages.values import enum_words
from client.replay.names import MESSAGE_TYPES

EXAMPLES = SCHEMA_DIR / "examples"
OIL = EXAMPLES / "valid" / "inspection-vessel-oil-at-sea.json"
LABOUR = EXAMPLES / "valid" / "inspection-labour-victims.json"
INVALID = {
    "inspection-offence-found-without-offences.json": ("/offences", "required"),
    "inspection-kind-as-locus.json": ("/offences/0/locus", "enum"),
    "inspection-zero-persons.json": ("/persons/1/count", "minimum"),
}
TIMES = "\N{MULTIPLICATION SIGN}"


def _load(path: Any) -> dict[str, Any]:
    return copy.deepcopy(load_file(path))  # type: ignore[no-any-return]


def _schema() -> dict[str, Any]:
    return default_catalog().schemas[("inspection_report", 1)].schema


def _common() -> dict[str, Any]:
    return default_catalog().documents["common.schema.json"]["$defs"]  # type: ignore[no-any-return]


def _found(message: dict[str, Any], ledger: Ledger | None = None) -> set[tuple[str, str]]:
    return {(p.path, p.keyword) for p in problems(default_catalog(), message, ledger)}


def _words() -> frozenset[str]:
    return enum_words(default_catalog())


# -- the examples


@pytest.mark.parametrize("path", [OIL, LABOUR], ids=lambda p: p.name)
def test_inspection_report_valid_example_passes(path: Any) -> None:
    """Each valid inspection example passes its schema and every rule."""
    message = _load(path)
    assert message["type"] == "inspection_report"
    assert problems(default_catalog(), message) == []


@pytest.mark.parametrize(("name", "expected"), list(INVALID.items()))
def test_inspection_report_invalid_example_fails_at_its_path(name: str,
                                                             expected: tuple[str, str]) -> None:
    """Each invalid inspection example is refused at the path its expectations name, and
    only there."""
    message = _load(EXAMPLES / "invalid" / name)
    labelled = json.loads((EXAMPLES / "expected" / name).read_text())
    assert [(e["path"], e["keyword"]) for e in labelled] == [expected]
    assert _found(message) == {expected}


# -- the schema's rules


def test_inspection_report_offence_kinds_and_loci_share_no_value() -> None:
    """No word is both a kind of offence and a locus, so ``offence.<word>.count`` names
    one figure."""
    offence = _schema()["$defs"]["offence"]["properties"]
    kinds, loci = set(offence["kind"]["enum"]), set(offence["locus"]["enum"])
    assert {"oil_pollution", "human_trafficking", "forced_labour"} <= kinds
    assert {"at_sea", "coast", "inland_waters", "port"} <= loci
    assert kinds & loci == set()


def test_inspection_report_seizure_result_needs_an_offence() -> None:
    """A result of seizure with an empty offence list is refused at /offences."""
    message = _load(OIL)
    message["result"] = "seizure"
    message["offences"] = []
    assert _found(message) == {("/offences", "minItems")}


def test_inspection_report_compliant_result_lists_no_offence() -> None:
    """A compliant inspection that lists an offence contradicts itself and is refused;
    without the offence (and with nothing else changed) it passes."""
    message = _load(OIL)
    message["result"] = "compliant"
    assert _found(message) == {("/offences", "maxItems")}
    del message["offences"]
    assert _found(message) == set()


@pytest.mark.parametrize(("where", "value", "keyword"), [
    (("inspected", "count"), 0, "minimum"),
    (("offences", 0, "count"), 0, "minimum"),
    (("investigations_opened",), -1, "minimum"),
    (("assets", 0, "count"), 0, "minimum"),
    (("persons", 0, "minor"), "yes", "type"),
    (("persons", 0, "exploitation"), "slavery", "enum"),
])
def test_inspection_report_counts_and_codes_are_checked(where: tuple[Any, ...], value: Any,
                                                        keyword: str) -> None:
    """A zero count, a negative number of investigations or an unknown code is refused
    at its own path."""
    message = _load(LABOUR)
    node: Any = message
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = "".join(f"/{k}" for k in where)
    assert _found(message) == {(path, keyword)}


def test_inspection_report_shares_roles_and_exploitation_with_the_person() -> None:
    """Counted persons take their role and exploitation from the same definitions as a
    named person, so the two can be added up."""
    persons = _schema()["$defs"]["persons_counted"]["properties"]
    person = _common()["person"]["properties"]
    assert persons["role"]["$ref"] == "common.schema.json#/$defs/role"
    assert person["role"]["$ref"] == "#/$defs/role"
    assert persons["exploitation"]["$ref"] == "common.schema.json#/$defs/exploitation"
    assert person["exploitation"]["$ref"] == "#/$defs/exploitation"
    assert "victim_of_trafficking" in _common()["role"]["enum"]


def test_inspection_report_where_takes_water_place_types() -> None:
    """The location's place types include at sea, coast and inland waters beside the
    seaport, and an unknown one is named as a place type."""
    assert {"at_sea", "coast", "inland_waters", "seaport"} <= set(
        _common()["place_type"]["enum"])
    message = _load(OIL)
    message["where"]["place_type"] = "ocean"
    (p,) = problems(default_catalog(), message)
    assert (p.path, p.keyword) == ("/where/place_type", "enum")
    assert "a place type: " in p.message


# -- summary and rendering


def test_summarise_inspection_report_vessel() -> None:
    """The oil example's line says what was inspected where, the result with its
    offences, the investigation, the company and the fine."""
    assert summarise(_load(OIL), _words()) == (
        "inspected 1 vessel at Strait of Sicily, 28 nautical miles south of Capo Passero "
        f"(IT, at sea): offence found (1 {TIMES} oil pollution at sea); 1 investigation "
        f"opened; entities: 1 {TIMES} company; 1 fine: EUR 150,000 (USD 162,000)")


def test_summarise_inspection_report_counts_people_by_role_with_minors() -> None:
    """Counted persons are added up by role with the minors among them; assets are
    listed by kind with their total value where some are valued."""
    line = summarise(_load(LABOUR), _words())
    assert line.startswith("inspected 2 premises at Odemira (PT, inland): seizure ("
                           f"1 {TIMES} forced labour inland, ")
    assert f"persons: 26 {TIMES} victim of trafficking (3 minors), 4 {TIMES} suspect" in line
    assert f"2 {TIMES} vehicle, worth EUR 301,200 (USD 325,600) where valued" in line


def test_summarise_inspection_report_adds_fines_in_usd_across_currencies() -> None:
    """Fines in two currencies are summed in US dollars; a batch is plural."""
    message = {"type": "inspection_report", "inspected": {"object": "vessel", "count": 3},
               "where": {"country": "GR", "place": "Piraeus", "place_type": "seaport"},
               "result": "offence_found",
               "offences": [{"kind": "garbage_dumping", "locus": "port", "count": 2}],
               "fines": [{"amount": {"amount": 5000, "currency": "USD"}},
                         {"amount": {"amount": 6000, "currency": "EUR",
                                     "usd_equivalent": 7000}}],
               "investigations_opened": 2, "seizure_ref": "GR-S-1"}
    assert summarise(message, _words()) == (
        f"inspected 3 vessels at Piraeus (GR, seaport): offence found (2 {TIMES} garbage "
        "dumping in port); 2 investigations opened; 2 fines: USD 12,000; seizure GR-S-1")


@pytest.mark.parametrize("body", [
    {}, {"inspected": "x", "offences": 3, "persons": [None, 1], "fines": [{"amount": 1}],
         "assets": [{"value": "x"}], "entities": "y", "investigations_opened": True},
    {"inspected": {"count": -2}, "offences": [{"count": "many"}], "where": []},
])
def test_summarise_inspection_report_never_raises_on_odd_shapes(body: dict[str, Any]) -> None:
    """A malformed inspection report still gets a line."""
    assert summarise({"type": "inspection_report", **body}, _words()).startswith("inspected")


def test_render_inspection_report_labels_fields_by_title() -> None:
    """The rendering labels an offence's kind and locus by their schema titles and
    carries the summary line; the HTML escapes the text."""
    message = _load(OIL)
    text = render_text(default_catalog(), message)
    assert text.startswith("INSPECTION REPORT IT-CG-AUGUSTA-I-0041 ")
    assert "Kind of offence: oil pollution" in text
    assert "Where committed: at sea" in text
    assert "Investigations opened: 1" in text
    message["narrative"] = "<b>slick</b>"
    assert "&lt;b&gt;slick&lt;/b&gt;" in render_html(default_catalog(), message)


def test_inspection_report_has_a_plural_label_for_the_replay() -> None:
    """The replay's report names the type's messages in words."""
    assert MESSAGE_TYPES["inspection_report"] == "Inspection reports"


# -- references


def _seizure_and_warning() -> tuple[dict[str, Any], dict[str, Any]]:
    valid = sorted((EXAMPLES / "valid").glob("*.json"))
    seizure = next(m for p in valid if (m := _load(p))["type"] == "seizure_report")
    warning = next(m for p in valid if (m := _load(p))["type"] == "warning")
    return seizure, warning


def test_ledger_inspection_report_references_must_have_been_carried() -> None:
    """seizure_ref and refers_to naming messages the operation never carried are refused
    at their paths; once both are recorded the report passes."""
    seizure, warning = _seizure_and_warning()
    message = _load(OIL)
    message["seizure_ref"], message["refers_to"] = seizure["id"], warning["id"]
    ledger = Ledger()
    assert _found(message, ledger) == {("/seizure_ref", "reference"),
                                       ("/refers_to", "reference")}
    ledger.record(seizure, seq=1)
    ledger.record(warning, seq=2)
    assert _found(message, ledger) == set()


def test_ledger_inspection_report_reference_to_the_wrong_type_is_refused() -> None:
    """A seizure_ref naming a warning, or a refers_to naming a seizure report, says what
    it found instead."""
    seizure, warning = _seizure_and_warning()
    message = _load(OIL)
    message["seizure_ref"], message["refers_to"] = warning["id"], seizure["id"]
    ledger = Ledger()
    ledger.record(seizure, seq=1)
    ledger.record(warning, seq=2)
    found = {p.path: p.message for p in problems(default_catalog(), message, ledger)}
    assert set(found) == {"/seizure_ref", "/refers_to"}
    assert "a warning; expected a seizure_report" in found["/seizure_ref"]
    assert "a seizure_report; expected a warning" in found["/refers_to"]


# -- nominal data


def test_nominal_counted_persons_are_not_personal_data() -> None:
    """Victims, minors and suspects counted by role hold no nominal part: the labour
    example is rightly marked nominal: false."""
    message = _load(LABOUR)
    assert message["persons"]
    assert message["marking"]["nominal"] is False
    assert nominal_paths(default_catalog(), message) == []


def test_nominal_entity_name_is_personal_data() -> None:
    """An entity's name is the one nominal field of an inspection report: a report
    giving it marked nominal: false is refused at /marking/nominal."""
    message = _load(OIL)
    assert nominal_paths(default_catalog(), message) == ["/entities/0/name"]
    message["marking"]["nominal"] = False
    assert _found(message) == {("/marking/nominal", "rule")}


def test_strip_nominal_inspection_report_keeps_entity_kind_and_country() -> None:
    """Stripping removes the entity's name only; what is counted (its kind, the persons,
    fines, offences) stays, and the copy is valid."""
    message = _load(OIL)
    stripped, removed = strip_nominal(default_catalog(), message)
    assert removed == ["/entities/0/name"]
    assert stripped["entities"] == [{"kind": "company", "country": "MT"}]
    assert stripped["fines"] == message["fines"]
    assert problems(default_catalog(), stripped) == []


# -- the seizure report's person item


def _with_minor_victim() -> dict[str, Any]:
    valid = sorted((EXAMPLES / "valid").glob("seizure-*.json"))
    report = next(m for p in valid if (m := _load(p))["marking"]["nominal"] is True
                  and any(i["category"] == "person" for i in m["items"]))
    report["event"].get("detection", {}).pop("warning_ref", None)
    report["items"].append({"category": "person", "person": {
        "role": "victim_of_trafficking", "minor": True, "exploitation": "sexual"}})
    return report


def test_seizure_person_item_takes_minor_and_exploitation() -> None:
    """A seizure report's person may be flagged a minor and given a type of
    exploitation; an unknown type is refused at its path."""
    report = _with_minor_victim()
    assert problems(default_catalog(), report) == []
    report["items"][-1]["person"]["exploitation"] = "slavery"
    last = len(report["items"]) - 1
    assert _found(report) == {(f"/items/{last}/person/exploitation", "enum")}


def test_nominal_seizure_person_item_with_minor_stays_nominal() -> None:
    """The person item, minor flag included, is nominal as a whole: it is stripped, and
    the report may not be marked nominal: false."""
    report = _with_minor_victim()
    last = len(report["items"]) - 1
    assert f"/items/{last}" in nominal_paths(default_catalog(), report)
    stripped, _ = strip_nominal(default_catalog(), report)
    assert [i for i in stripped["items"] if i["category"] == "person"] == []
    report["marking"]["nominal"] = False
    assert ("/marking/nominal", "rule") in _found(report)
