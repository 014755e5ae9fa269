"""Checks beyond the schema (rules, references), the nominal-data filter, the channel
encoding and file loading."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from client.messages import content, default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.checks import Ledger, check, problems
from client.messages.content import load_file
from client.messages.files import validate_files
from client.messages.nominal import nominal_paths, strip_nominal
from protocol.errors import SchemaError

VALID = sorted((SCHEMA_DIR / "examples" / "valid").glob("*.json"))


def example(kind: str, pred: Any = lambda m: True) -> dict[str, Any]:
    for p in VALID:
        m = load_file(p)
        if m["type"] == kind and pred(m):
            return copy.deepcopy(m)  # type: ignore[no-any-return]
    raise LookupError(f"no valid {kind} example")


def _has_person(m: dict[str, Any]) -> bool:
    return any(i["category"] == "person" for i in m["items"])


def test_rule_nominal_data_must_be_marked() -> None:
    """A message holding personal data but marked nominal: false is refused at
    /marking/nominal."""
    m = example("seizure_report", _has_person)
    m["marking"]["nominal"] = False
    found = problems(default_catalog(), m)
    assert [(p.path, p.keyword) for p in found] == [("/marking/nominal", "rule")]


def test_rule_hit_must_notify_the_recording_countrys_ncb() -> None:
    """A hit notification whose NCB recipient is not the recording country's is refused."""
    m = example("hit_notification")
    country = m["record"]["recording_country"]
    for r in m["recipients"]:
        if r["kind"] == "ncb":
            r["country"] = "FR" if country != "FR" else "BE"
    found = problems(default_catalog(), m)
    assert [(p.path, p.keyword) for p in found] == [("/recipients", "rule")]
    assert country in found[0].message


def test_ledger_feedback_must_refer_to_a_warning_carried() -> None:
    """A feedback naming a warning the operation never carried is refused at /refers_to;
    once the warning is recorded it passes."""
    warning, feedback = example("warning"), example("feedback")
    feedback["refers_to"] = warning["id"]
    feedback.pop("seizure_ref", None)
    ledger = Ledger()
    found = problems(default_catalog(), feedback, ledger)
    assert [(p.path, p.keyword) for p in found] == [("/refers_to", "reference")]
    ledger.record(warning, seq=1)
    assert problems(default_catalog(), feedback, ledger) == []


def test_ledger_reference_to_the_wrong_type_is_refused() -> None:
    """A feedback whose refers_to names an alert, not a warning, says what it found."""
    alert, feedback = example("alert"), example("feedback")
    feedback["refers_to"] = alert["id"]
    feedback.pop("seizure_ref", None)
    ledger = Ledger()
    ledger.record(alert, seq=4)
    (p,) = problems(default_catalog(), feedback, ledger)
    assert p.path == "/refers_to"
    assert "alert" in p.message


def test_ledger_late_joiner_accepts_unknown_references() -> None:
    """A member that joined late has not seen earlier messages: no reference error."""
    feedback = example("feedback")
    assert problems(default_catalog(), feedback, Ledger(complete=False)) == []


def test_ledger_reused_id_is_refused_but_a_revision_is_not() -> None:
    """An id cannot be reused, except by a later revision of the same seizure report."""
    report = example("seizure_report")
    report["event"].get("detection", {}).pop("warning_ref", None)
    ledger = Ledger()
    ledger.record(report, seq=1)
    assert [p.keyword for p in problems(default_catalog(), report, ledger)] == ["unique"]
    amended = {**report, "revision": report.get("revision", 1) + 1, "status": "amended"}
    assert problems(default_catalog(), amended, ledger) == []


def test_check_raises_schema_error_with_every_problem() -> None:
    """check() raises one SchemaError whose problems list all faults."""
    m = example("warning")
    m["sender"]["country"] = "ZZ"
    del m["id"]
    with pytest.raises(SchemaError) as info:
        check(default_catalog(), m)
    assert {p.path for p in info.value.problems} >= {"/sender/country", "/id"}
    assert info.value.code == "invalid_message"


def test_nominal_paths_come_from_the_schema_annotations() -> None:
    """The person items of a report are found as nominal, and nothing else of it."""
    m = example("seizure_report", _has_person)
    paths = nominal_paths(default_catalog(), m)
    people = [f"/items/{i}" for i, it in enumerate(m["items"]) if it["category"] == "person"]
    others = [f"/items/{i}" for i, it in enumerate(m["items"]) if it["category"] != "person"]
    assert people
    assert set(people) <= set(paths)
    assert not set(others) & set(paths)


def test_strip_nominal_removes_people_and_keeps_the_rest() -> None:
    """The stripped copy holds no person, no name of the original, and the non-nominal
    items unchanged; the original is untouched."""
    m = example("seizure_report", _has_person)
    before = json.dumps(m)
    names = [it[k] for it in m["items"] if it["category"] == "person"
             for k in ("family_name", "given_names") if k in it]
    names += [it["person"][k] for it in m["items"] if isinstance(it.get("person"), dict)
              for k in ("family_name", "given_names") if k in it["person"]]
    stripped, removed = strip_nominal(default_catalog(), m)
    assert removed
    assert names
    text = json.dumps(stripped)
    assert not any(n in text for n in names)
    assert stripped["marking"]["nominal"] is False
    assert [i for i in stripped["items"] if i["category"] == "person"] == []
    assert [i for i in m["items"] if i["category"] != "person"] == stripped["items"]
    assert json.dumps(m) == before


def test_strip_nominal_of_every_valid_example_leaves_no_nominal_part() -> None:
    """After stripping, no example has a nominal part left (checked by the schema's own
    annotations on the stripped copy where it is still valid)."""
    cat = default_catalog()
    for path in VALID:
        m = load_file(path)
        stripped, _ = strip_nominal(cat, m)
        if not cat.problems(stripped):
            assert nominal_paths(cat, stripped) == [], path.name


def test_content_round_trip_is_exact() -> None:
    """encode/decode gives back an equal message with its key order, for every example."""
    for path in VALID:
        m = load_file(path)
        back = content.decode(content.encode(m))
        assert back == m
        assert list(back) == list(m)


def test_content_decode_refuses_non_json() -> None:
    """Bytes that are not UTF-8 JSON give a SchemaError, not a crash."""
    for data in (b"\xff\xfe", b"{not json", b""):
        with pytest.raises(SchemaError):
            content.decode(data)


def test_load_file_yaml_keeps_times_as_strings(tmp_path: Path) -> None:
    """A YAML message validates like its JSON twin (timestamps stay RFC 3339 strings)."""
    import re

    import yaml

    m = example("alert")
    f = tmp_path / "alert.yaml"
    text = yaml.safe_dump(m, sort_keys=False, allow_unicode=True)
    unquoted = re.sub(r"'(\d{4}-\d\d-\d\dT[^']*)'", r"\1", text)
    assert unquoted != text  # the file really has bare timestamps
    f.write_text(unquoted)
    assert load_file(f) == m
    assert problems(default_catalog(), load_file(f)) == []


def test_validate_files_reports_unparseable_files(tmp_path: Path) -> None:
    """A file that does not parse is a problem of that file; the others still validate."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: [unclosed\n")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(example("alert")))
    results = {r.path.name: r for r in validate_files(default_catalog(), [tmp_path])}
    assert results["good.json"].ok
    assert not results["bad.yaml"].ok
    assert "line" in results["bad.yaml"].problems[0].message


def test_nominal_free_check_agrees_with_the_annotations() -> None:
    """The compiled no-nominal-data schema accepts a valid example exactly when the
    annotation walk finds no nominal part in it (fast path and slow path agree)."""
    cat = default_catalog()
    seen = set()
    for path in VALID:
        m = load_file(path)
        fast = cat.schemas[(m["type"], m["version"])].nominal_free.is_valid(m)
        assert fast == (nominal_paths(cat, m) == []), path.name
        seen.add(fast)
    assert seen == {True, False}
