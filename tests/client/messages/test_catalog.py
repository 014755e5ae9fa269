"""The schema files and the catalog: meta-schema validity, every example behaving as
labelled (under two independent validators), and problems reported with their paths."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR, Catalog
from client.messages.checks import problems
from client.messages.content import load_file

EXAMPLES = SCHEMA_DIR / "examples"
VALID = sorted(p for p in (EXAMPLES / "valid").iterdir() if p.suffix in (".json", ".yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.json"))
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.schema.json"))
MESSAGE_TYPES = ["seizure_report", "warning", "feedback", "alert", "request_for_information",
                 "rfi_response", "trace_request", "trace_response", "hit_notification",
                 "controlled_delivery", "situation_report", "inspection_report"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _reference_validator(message: dict[str, Any]) -> jsonschema.protocols.Validator:
    """python-jsonschema, an implementation independent of the catalog's jsonschema-rs."""
    docs = [json.loads(p.read_text()) for p in SCHEMA_FILES]
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (d["$id"], referencing.Resource.from_contents(d)) for d in docs)
    schema = next(d for d in docs if d.get("x-message-type") == message["type"])
    return jsonschema.Draft202012Validator(
        schema, registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _message() -> dict[str, Any]:
    seizure = next(p for p in VALID if p.name.startswith("seizure-"))
    return copy.deepcopy(load_file(seizure))


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=_ids(SCHEMA_FILES))
def test_schema_file_is_valid_2020_12(path: Path) -> None:
    """Every schema file is itself valid against the JSON Schema 2020-12 meta-schema."""
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_catalog_knows_every_message_type() -> None:
    """The catalog holds version 1 of each message type the issue lists."""
    assert sorted(default_catalog().types) == sorted(MESSAGE_TYPES)
    assert all(default_catalog().versions[t] == [1] for t in MESSAGE_TYPES)


def test_examples_exist_for_every_type() -> None:
    """Each message type has at least one valid example and the invalid set is not empty."""
    kinds = {load_file(p)["type"] for p in VALID}
    assert kinds == set(MESSAGE_TYPES)
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_example_is_valid(path: Path) -> None:
    """A valid example passes the catalog (schema and rules) and python-jsonschema."""
    message = load_file(path)
    assert problems(default_catalog(), message) == []
    assert list(_reference_validator(message).iter_errors(message)) == []


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_example_gives_its_expected_problems(path: Path) -> None:
    """An invalid example produces at least the (path, keyword) problems it is labelled
    with; where its type is known, python-jsonschema rejects it too."""
    expected = json.loads((EXAMPLES / "expected" / path.name).read_text())
    assert expected, f"expected/{path.name} lists no problem"
    message = load_file(path)
    found = problems(default_catalog(), message)
    got = {(p.path, p.keyword) for p in found}
    for e in expected:
        assert (e["path"], e["keyword"]) in got, (e, [str(p) for p in found])
    schema_found = default_catalog().problems(message)
    if schema_found and message.get("type") in MESSAGE_TYPES and message.get("version") == 1:
        assert not _reference_validator(message).is_valid(message)


def test_every_invalid_example_has_expectations_and_vice_versa() -> None:
    """expected/ and invalid/ hold the same names: no unlabelled example, no stale label."""
    assert sorted(p.name for p in (EXAMPLES / "expected").glob("*.json")) == _ids(INVALID)


def test_every_seizure_category_is_expressed_by_an_example() -> None:
    """Each category of the seizure report's discriminator appears in a valid example."""
    schema = default_catalog().schemas[("seizure_report", 1)].schema
    categories = set(_find_category_enum(schema))
    assert len(categories) >= 17
    used = {item["category"] for p in VALID if (m := load_file(p))["type"] == "seizure_report"
            for item in m["items"]}
    assert categories - used == set()


def _find_category_enum(node: Any) -> list[str]:
    if isinstance(node, dict):
        cat = node.get("properties", {}).get("category") if isinstance(
            node.get("properties"), dict) else None
        if isinstance(cat, dict) and "enum" in cat:
            return list(cat["enum"])
        for v in node.values():
            if found := _find_category_enum(v):
                return found
    elif isinstance(node, list):
        for v in node:
            if found := _find_category_enum(v):
                return found
    return []


def test_catalog_reports_every_problem_at_once_with_paths() -> None:
    """Several faults in one message come back together, each with its JSON pointer."""
    m = _message()
    m["sender"]["country"] = "XX"
    m["items"][0]["quantity"] = {"value": -3, "unit": "kg"}
    del m["event"]["when"]
    m["sent_at"] = 20151207
    found = {(p.path, p.keyword) for p in default_catalog().problems(m)}
    assert {("/sender/country", "enum"), ("/items/0/quantity/value", "minimum"),
            ("/event/when", "required"), ("/sent_at", "type")} <= found


def test_catalog_names_long_code_lists_by_what_they_are() -> None:
    """An unknown country or currency is reported as such, not as a 249-value list."""
    m = _message()
    m["sender"]["country"] = "UK"
    (p,) = default_catalog().problems(m)
    assert p.message == '"UK" is not an ISO 3166-1 alpha-2 country code'


def test_catalog_unknown_category_is_one_clear_problem() -> None:
    """An item of an unknown category gives the enum problem on its category, not a
    cascade of unknown-field problems for the fields it carries."""
    m = _message()
    m["items"][0]["category"] = "weapon"
    found = default_catalog().problems(m)
    assert [(p.path, p.keyword) for p in found] == [("/items/0/category", "enum")]


def test_catalog_misspelt_field_is_named() -> None:
    """A field no schema defines is reported at its own path."""
    m = _message()
    m["event"]["whenn"] = m["event"]["when"]
    (p,) = default_catalog().problems(m)
    assert p.path == "/event/whenn"
    assert "'whenn'" in p.message
    assert p.keyword in ("additionalProperties", "unevaluatedProperties")


@pytest.mark.parametrize(("message", "path"), [
    ([], ""), ({"version": 1}, "/type"), ({"type": "parcel", "version": 1}, "/type"),
    ({"type": "warning", "version": 7}, "/version"),
    ({"type": "warning", "version": "1"}, "/version")])
def test_catalog_unknown_type_or_version(message: Any, path: str) -> None:
    """A message whose type or version the catalog does not know says which is wrong."""
    found = default_catalog().problems(message)
    assert [p.path for p in found] == [path]


def test_catalog_loads_a_folder_and_refuses_an_empty_one(tmp_path: Path) -> None:
    """A Catalog can be built from any folder of schema files; none at all is an error."""
    with pytest.raises(FileNotFoundError):
        Catalog(tmp_path)
