"""fields: schemas flattened into rows, rules and variants."""

from __future__ import annotations

import pytest

from client.messages.catalog import Catalog
from client.messages.fields import SchemaWalker, Table


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def table(catalog: Catalog, kind: str) -> Table:
    schema = catalog.schemas[(kind, catalog.versions[kind][-1])]
    return SchemaWalker(catalog.documents).table(schema.schema, schema.file.name,
                                                 own_only=True)


def test_schema_walker_follows_refs_across_files(catalog: Catalog) -> None:
    """A $ref into common.schema.json is expanded under the referring field's path."""
    rows = {f.path: f for f in table(catalog, "seizure_report").fields}
    assert rows["event.where.country"].required
    assert "[country](#country)" in rows["event.where.country"].type


def test_schema_walker_leaves_out_the_envelope(catalog: Catalog) -> None:
    """With own_only, envelope fields are named as inherited instead of listed."""
    result = table(catalog, "feedback")
    assert "sender" in result.inherited
    assert all(not f.path.startswith("sender") for f in result.fields)


def test_schema_walker_turns_categories_into_variants(catalog: Catalog) -> None:
    """An if/then that adds fields is a variant named by its condition."""
    variants = {v.condition: v for v in table(catalog, "seizure_report").variants}
    drug = variants["`category` is `drug`"]
    assert drug.path == "items[]"
    assert "items[].substance" in {f.path for f in drug.fields}


def test_schema_walker_turns_tightening_conditions_into_rules(catalog: Catalog) -> None:
    """An if/then that only makes a field required is a rule."""
    rules = table(catalog, "trace_request").rules
    assert ("when `requested_of` is `national_authority`: `requested_of_country` is required"
            in rules)


def test_schema_walker_marks_nominal_definitions(catalog: Catalog) -> None:
    """Fields inside a definition marked x-nominal are nominal; x-nominal false wins."""
    rows = {f.path: f for f in table(catalog, "seizure_report").fields}
    assert rows["outcome.persons[].role"].nominal
    assert not rows["outcome.arrests"].nominal


def test_schema_walker_resolves_json_pointers(catalog: Catalog) -> None:
    """resolve finds a definition in another file and names it."""
    node, file, name = SchemaWalker(catalog.documents).resolve(
        "common.schema.json#/$defs/quantity", "seizure-report.schema.json")
    assert (file, name) == ("common.schema.json", "quantity")
    assert "value" in node["properties"]
