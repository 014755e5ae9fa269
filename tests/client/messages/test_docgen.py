"""docgen: docs/schemas.md is current, complete, and follows the schema files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from client.messages.catalog import SCHEMA_DIR, Catalog
from client.messages.docgen import DOC_PATH, check, generate, write


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture(scope="module")
def text(catalog: Catalog) -> str:
    return generate(catalog)


def copy_schemas(folder: Path) -> Path:
    for path in SCHEMA_DIR.glob("*.schema.json"):
        shutil.copy(path, folder / path.name)
    return folder


def test_docgen_file_is_current(text: str) -> None:
    """docs/schemas.md is exactly what the schema files generate."""
    current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    assert current == text, "docs/schemas.md is stale: run `opshub schemas docs` to regenerate"


def test_docgen_has_a_section_per_message_type(catalog: Catalog, text: str) -> None:
    """Every message type of the catalog has its own heading."""
    headings = set(re.findall(r"^### `([a-z_]+)`", text, re.MULTILINE))
    assert set(catalog.types) <= headings


def test_docgen_has_a_section_per_common_definition(catalog: Catalog, text: str) -> None:
    """Every definition of common.schema.json has its own heading."""
    for name in catalog.documents["common.schema.json"]["$defs"]:
        assert f"\n### `{name}`\n" in text


def test_docgen_has_a_table_per_item_category(text: str) -> None:
    """Seized items get a table for each category that adds fields."""
    for category in ("drug", "firearm", "ammunition", "currency", "person"):
        assert f"#### `items[]` when `category` is `{category}`\n" in text


def test_docgen_writes_paths_with_dots_and_brackets(text: str) -> None:
    """Nested fields read `event.where.country`, array elements `items[].quantity.value`."""
    assert "| `event.where.country` |" in text
    assert "| `items[].quantity.value` |" in text


def test_docgen_flags_nominal_fields(text: str) -> None:
    """Fields holding personal data are flagged, others are not."""
    assert "| `outcome.persons[].family_name` **nominal** |" in text
    assert "| `outcome.arrests` |" in text


def test_docgen_lists_fields_by_source(text: str) -> None:
    """Where the fields come from groups x-source annotations under each source."""
    sources = text.split("## Where the fields come from", 1)[1]
    unodc = sources.split("### UNODC individual drug seizures", 1)[1].split("\n### ", 1)[0]
    assert "| `seizure_report` | `items[].purity_percent` | UNODC IDS: purity |" in unodc


def test_docgen_shows_a_field_added_to_a_schema(tmp_path: Path) -> None:
    """A property added to a copy of a schema appears in the generated reference."""
    path = copy_schemas(tmp_path) / "alert.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["properties"]["zz_added"] = {"title": "added", "type": "string",
                                        "x-source": "NIEM nc:TestText"}
    path.write_text(json.dumps(schema), encoding="utf-8")
    text = generate(Catalog(tmp_path))
    assert "| `zz_added` | string |  | Added | NIEM nc:TestText |" in text
    assert "| `alert` | `zz_added` | NIEM nc:TestText |" in text


def test_docgen_is_deterministic(catalog: Catalog, text: str) -> None:
    """Generating twice gives the same text."""
    assert generate(catalog) == text


def test_check_is_false_for_a_stale_file(catalog: Catalog, tmp_path: Path) -> None:
    """check says False for a missing or outdated file and True once written."""
    path = tmp_path / "schemas.md"
    assert not check(path, catalog)
    path.write_text("old\n", encoding="utf-8")
    assert not check(path, catalog)
    write(path, catalog)
    assert check(path, catalog)
