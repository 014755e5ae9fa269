"""forms: a message type's schema described field by field for the seat page's forms."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from client.exercise.forms import EACH, FILLED_IN, form
from client.exercise.runtime import ENVELOPE, WRITABLE
from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR, Catalog
from client.messages.content import load_file
from client.messages.fields import SchemaWalker
from protocol.errors import UsageError

TYPES = list(WRITABLE)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


def walk(fields: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every field, with those of groups, lists and variant cases."""
    for f in fields:
        yield f
        yield from walk(f.get("fields", []))
        for variants in f.get("variants", []):
            for case in variants["cases"]:
                yield from walk(case["fields"])


def everything(description: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from walk(description["fields"])
    for variants in description["variants"]:
        for case in variants["cases"]:
            yield from walk(case["fields"])


def by_pointer(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["pointer"]: f for f in everything(description)}


def examples(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The valid examples of one message type, by file name."""
    for path in sorted((SCHEMA_DIR / "examples" / "valid").iterdir()):
        message = load_file(path)
        if isinstance(message, dict) and message.get("type") == kind:
            yield path.name, message


def leaves(value: Any, at: str = "") -> Iterator[tuple[str, Any]]:
    """(pointer, value) of every value a person types: array elements as EACH, an array
    of scalars as one value."""
    if isinstance(value, dict):
        for name, sub in value.items():
            yield from leaves(sub, f"{at}/{name}")
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for sub in value:
            yield from leaves(sub, f"{at}/{EACH}")
    else:
        yield at, value


def document_node(catalog: Catalog, file: str, where: str) -> Any:
    node: Any = catalog.documents[file]
    for part in where.split("/")[1:]:
        node = node[part]
    return node


@pytest.mark.parametrize("kind", TYPES)
def test_form_has_a_field_for_every_row_the_schema_walker_lists(catalog: Catalog,
                                                               kind: str) -> None:
    """Each field of the schema's reference table (and of its variants) has a form field at
    the same place, and the form adds only the marking the writer chooses."""
    schema = catalog.schemas[(kind, 1)]
    table = SchemaWalker(catalog.documents).table(schema.schema, schema.file.name,
                                                  own_only=True)
    description = form(catalog, kind)
    rows = [*table.fields, *(f for v in table.variants for f in v.fields)]
    expected = {"/" + r.path.replace("[]", "/" + EACH).replace(".", "/") for r in rows
                if r.path.split(".")[0].removesuffix("[]") not in
                {*FILLED_IN, *description["const"]}}
    assert set(by_pointer(description)) - expected == {"/marking", "/marking/tlp",
                                                       "/marking/nominal"}
    assert expected <= set(by_pointer(description))


@pytest.mark.parametrize("kind", TYPES)
def test_form_marks_required_what_the_walker_marks_required(catalog: Catalog,
                                                           kind: str) -> None:
    """A field is required in the form exactly where the schema requires it in its object."""
    schema = catalog.schemas[(kind, 1)]
    table = SchemaWalker(catalog.documents).table(schema.schema, schema.file.name,
                                                  own_only=True)
    fields = {f["pointer"]: f for f in walk(form(catalog, kind)["fields"])}
    for row in table.fields:
        where = "/" + row.path.replace("[]", "/" + EACH).replace(".", "/")
        if where in fields:
            assert fields[where]["required"] is row.required, where


@pytest.mark.parametrize("kind", TYPES)
def test_form_covers_every_required_field_of_the_message(catalog: Catalog, kind: str) -> None:
    """Every field the schema and its envelope require at the top is a required form field
    or a constant, except those the runtime fills in."""
    schema = catalog.schemas[(kind, 1)].schema
    envelope = catalog.documents["common.schema.json"]["$defs"]["envelope"]
    description = form(catalog, kind)
    top = {f["name"]: f for f in description["fields"]}
    for name in {*schema["required"], *envelope["required"]} - FILLED_IN:
        assert name in description["const"] or top[name]["required"], name


@pytest.mark.parametrize("kind", TYPES)
def test_form_has_a_field_for_every_value_of_the_valid_examples(catalog: Catalog,
                                                               kind: str) -> None:
    """Every value of every valid example of the type has a control at its pointer, and an
    example's code is one of that control's options."""
    description = form(catalog, kind)
    fields = by_pointer(description)
    seen = 0
    for name, message in examples(kind):
        for where, value in leaves(message):
            if where.split("/")[1] in FILLED_IN or where[1:] in description["const"]:
                continue
            seen += 1
            assert where in fields, f"{name}: no field for {where}"
            field = fields[where]
            assert field["kind"] != "group", f"{name}: {where}"
            assert field["kind"] != "list" or value == [], f"{name}: {where}"
            if field["kind"] == "enum":
                assert value in field["options"], f"{name}: {where}"
            if field["kind"] == "choices":
                assert set(value) <= set(field["options"]), f"{name}: {where}"
    assert seen


@pytest.mark.parametrize(("kind", "where", "file", "enum"), [
    ("feedback", "/action_taken", "feedback.schema.json", "/properties/action_taken/enum"),
    ("feedback", "/marking/tlp", "common.schema.json", "/$defs/marking/properties/tlp/enum"),
    ("feedback", "/location/country", "common.schema.json", "/$defs/country/enum"),
    ("seizure_report", "/items/-/category", "seizure-report.schema.json",
     "/$defs/item/properties/category/enum"),
    ("seizure_report", "/items/-/substance", "seizure-report.schema.json",
     "/$defs/drug_item/properties/substance/enum"),
    ("warning", "/subject/kind", "warning.schema.json",
     "/properties/subject/properties/kind/enum"),
    ("alert", "/commodities", "warning.schema.json", "/$defs/commodity/enum"),
    ("rfi_response", "/result", "rfi-response.schema.json", "/properties/result/enum"),
])
def test_form_offers_the_schemas_enum_as_options(catalog: Catalog, kind: str, where: str,
                                                 file: str, enum: str) -> None:
    """An enumerated field offers the schema's values, in the schema's order."""
    assert by_pointer(form(catalog, kind))[where]["options"] == document_node(catalog, file,
                                                                              enum)


@pytest.mark.parametrize("kind", TYPES)
def test_form_leaves_out_the_envelope_the_runtime_fills_in(catalog: Catalog,
                                                          kind: str) -> None:
    """No field for id, operation, sender, sent_at, version or language; the type is a
    constant; the marking is the writer's to choose."""
    description = form(catalog, kind)
    names = {f["pointer"].split("/")[1] for f in everything(description)}
    assert not names & FILLED_IN
    assert description["const"] == {"type": kind}
    assert "marking" in names


def test_form_fills_in_what_the_runtime_fills_in() -> None:
    """The envelope fields left out are the ones the exercise runtime fills in."""
    assert set(ENVELOPE) == FILLED_IN


def test_form_gives_each_seizure_item_category_its_fields(catalog: Catalog) -> None:
    """Seized items are a repeatable group whose category selects its fields: a drug has
    its substance and must have a quantity; other must have a description."""
    items = by_pointer(form(catalog, "seizure_report"))["/items"]
    assert (items["kind"], items["item_label"], items["required"]) == ("list", "Seized item",
                                                                       True)
    [variants] = items["variants"]
    assert variants["key"] == "category"
    cases = {case["values"][0]: case for case in variants["cases"]}
    categories = document_node(catalog, "seizure-report.schema.json",
                               "/$defs/item/properties/category/enum")
    assert list(cases) == categories
    drug = {f["name"]: f for f in cases["drug"]["fields"]}
    assert drug["substance"]["required"]
    assert drug["substance"]["pointer"] == "/items/-/substance"
    assert cases["drug"]["requires"] == ["quantity"]
    assert (cases["other"]["fields"], cases["other"]["requires"]) == ([], ["description"])
    assert all(f["nominal"] for f in walk(cases["person"]["fields"]))


@pytest.mark.parametrize(("kind", "where", "control"), [
    ("feedback", "/refers_to", "text"),
    ("feedback", "/result", "long_text"),
    ("feedback", "/controlled_at", "date_time"),
    ("feedback", "/persons_arrested", "integer"),
    ("feedback", "/location", "group"),
    ("feedback", "/location/coordinates/lat", "number"),
    ("feedback", "/marking/nominal", "boolean"),
    ("seizure_report", "/items", "list"),
    ("seizure_report", "/outcome/persons/-/date_of_birth", "date"),
    ("alert", "/indicators", "strings"),
    ("alert", "/commodities", "choices"),
    ("alert", "/area", "strings"),
    ("warning", "/addressees", "strings"),
    ("request_for_information", "/to", "list"),
])
def test_form_picks_a_control_for_each_kind_of_value(catalog: Catalog, kind: str,
                                                     where: str, control: str) -> None:
    """Strings, long texts, times, numbers, codes, yes/no, lists of strings, groups and
    repeatable groups each get their kind of control."""
    assert by_pointer(form(catalog, kind))[where]["kind"] == control


def test_form_labels_fields_with_their_titles_and_helps_with_descriptions(
        catalog: Catalog) -> None:
    """The label is the property's title as a person reads it (its name when it has none),
    the help its description."""
    fields = by_pointer(form(catalog, "feedback"))
    schema = catalog.documents["feedback.schema.json"]["properties"]["action_taken"]
    assert fields["/action_taken"]["label"] == "Action taken"
    assert fields["/action_taken"]["help"] == schema["description"]
    assert fields["/refers_to"]["label"] == "Warning"
    report = by_pointer(form(catalog, "seizure_report"))
    assert report["/outcome/persons/-/date_of_birth"]["label"] == "Date of birth"
    assert report["/items/-/iarms"]["label"] == "iARMS check"


def test_form_keeps_other_conditions_as_rules(catalog: Catalog) -> None:
    """A condition on a nested field stays a rule in words; one on a field of the message
    becomes a case (an amended report requires its revision)."""
    rfi = form(catalog, "request_for_information")
    assert "when `subject.kind` is `person`: `query.persons` is required" in rfi["rules"]
    [status] = form(catalog, "seizure_report")["variants"]
    assert status["key"] == "status"
    assert status["cases"][0]["values"] == ["amended", "withdrawn"]
    assert status["cases"][0]["requires"] == ["revision"]


def test_form_describes_every_type_of_the_catalog(catalog: Catalog) -> None:
    """Every message type, writable by a seat or not, has a description that is JSON."""
    for kind in catalog.types:
        description = json.loads(json.dumps(form(catalog, kind)))
        assert description["type"] == kind
        assert description["fields"]


def test_form_refuses_an_unknown_type(catalog: Catalog) -> None:
    """A type the catalog does not know is the caller's mistake, named in the error."""
    with pytest.raises(UsageError, match="'gossip'"):
        form(catalog, "gossip")

