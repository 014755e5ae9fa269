"""render: every example renders as text and as HTML; labels, values and escaping."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from client.messages.catalog import SCHEMA_DIR, Catalog
from client.messages.render import field_titles, headline, html_page, render_html, render_text

EXAMPLES = sorted((SCHEMA_DIR / "examples" / "valid").glob("*.json"))
INVALID = sorted((SCHEMA_DIR / "examples" / "invalid").glob("*.json"))
#: HTML elements that never have an end tag.
VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "base",
                  "source", "track", "embed", "param"})


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def load(path: Path) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return message


def example(prefix: str) -> dict[str, Any]:
    """The first valid example whose file name starts with ``prefix``."""
    for path in EXAMPLES:
        if path.name.startswith(prefix):
            return load(path)
    pytest.skip(f"no example {prefix}*.json yet")


class TagChecker(HTMLParser):
    """Records tags closed out of order, never closed, or closed without being opened."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
        else:
            self.open.pop()

    def check(self, text: str) -> list[str]:
        self.feed(text)
        self.close()
        return self.errors + [f"<{tag}> never closed" for tag in self.open]


def test_examples_exist() -> None:
    """There are valid examples to render."""
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_render_text_starts_with_type_and_id(catalog: Catalog, path: Path) -> None:
    """The text rendering of each example starts with its type headline and id."""
    message = load(path)
    text = render_text(catalog, message)
    kind = message["type"].replace("_", " ").upper()
    assert text.startswith(f"{kind} {message['id']} · ")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_render_html_is_well_formed(catalog: Catalog, path: Path) -> None:
    """The HTML fragment of each example parses with every tag closed in order."""
    html = render_html(catalog, load(path))
    assert TagChecker().check(html) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_render_html_names_type_and_id(catalog: Catalog, path: Path) -> None:
    """The HTML fragment of each example is a section of its type headed by its id."""
    message = load(path)
    html = render_html(catalog, message)
    assert html.startswith(f'<section class="opshub-message opshub-{message["type"]}">')
    assert message["id"] in html
    assert "<script" not in html.lower()


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_render_text_renders_invalid_messages(catalog: Catalog, path: Path) -> None:
    """A message that fails its schema still renders, as text and as HTML."""
    message = load(path)
    assert render_text(catalog, message).startswith(headline(message))
    assert TagChecker().check(render_html(catalog, message)) == []


def test_render_html_escapes_markup_in_values(catalog: Catalog) -> None:
    """A string value holding markup is shown as text, never as a tag."""
    message = copy.deepcopy(example("feedback"))
    message["result"] = "<script>alert('x')</script> & more"
    html = render_html(catalog, message)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html


def test_render_html_escapes_markup_in_headline(catalog: Catalog) -> None:
    """Markup in the sender's name is escaped in the headline too."""
    message = copy.deepcopy(example("feedback"))
    message["sender"]["name"] = "<b>Customs</b>"
    assert "<h3>FEEDBACK" in render_html(catalog, message)
    assert "&lt;b&gt;Customs&lt;/b&gt;" in render_html(catalog, message)


def test_render_text_labels_fields_with_schema_titles(catalog: Catalog) -> None:
    """A field is labelled by its schema title, capitalised."""
    text = render_text(catalog, example("seizure"))
    assert "\n    Place of seizure:\n" in text


def test_render_text_falls_back_to_field_names(catalog: Catalog) -> None:
    """A field the schema does not describe is labelled by its name, with spaces."""
    message = copy.deepcopy(example("feedback"))
    message["extra_field"] = "x"
    assert "  Extra field: x\n" in render_text(catalog, message)


def test_render_text_shows_quantities_and_money(catalog: Catalog) -> None:
    """A quantity reads "411 kg" and an amount "USD 1,631,000"."""
    message = copy.deepcopy(example("feedback"))
    message["weight"] = {"value": 411, "unit": "kg"}
    message["cash"] = {"amount": 1631000, "currency": "USD"}
    text = render_text(catalog, message)
    assert "Weight: 411 kg\n" in text
    assert "Cash: USD 1,631,000\n" in text


def test_render_text_shows_booleans_as_yes_no(catalog: Catalog) -> None:
    """True and false read yes and no."""
    message = copy.deepcopy(example("feedback"))
    message["checked"], message["found"] = True, False
    text = render_text(catalog, message)
    assert "Checked: yes\n" in text
    assert "Found: no\n" in text


def test_render_text_shows_codes_with_spaces(catalog: Catalog) -> None:
    """An enumerated value such as ``express_courier`` reads "express courier"."""
    message = copy.deepcopy(example("feedback"))
    message["location"] = {"country": "DM", "place_type": "express_courier"}
    assert "Place type: express courier\n" in render_text(catalog, message)


def test_render_text_numbers_list_elements(catalog: Catalog) -> None:
    """Each element of a list of objects is a numbered block."""
    text = render_text(catalog, example("seizure"))
    assert "\n    1. Category: " in text
    assert "\n    2. Category: " in text


def test_render_text_indents_every_line_of_multiline_text(catalog: Catalog) -> None:
    """A value spanning several lines stays inside its field's indentation."""
    message = copy.deepcopy(example("feedback"))
    message["result"] = "first line\nsecond line"
    assert "  Result: first line\n    second line\n" in render_text(catalog, message)


def test_render_text_renders_unknown_types(catalog: Catalog) -> None:
    """A message of a type the catalog does not know still renders, by field names."""
    message = {"type": "postcard", "id": "P-1", "greeting": "hello_world"}
    assert render_text(catalog, message) == "POSTCARD P-1\n  Greeting: hello_world\n"


def test_headline_shows_time_in_utc_and_marking() -> None:
    """The headline gives the sender, the time in UTC and the TLP, then "nominal"."""
    message = {"type": "seizure_report", "id": "SR-1", "sent_at": "2025-09-27T10:10:00-04:00",
               "sender": {"unit": "DM-CUSTOMS", "country": "DM", "name": "Dominica Customs"},
               "marking": {"tlp": "AMBER", "nominal": True}}
    assert headline(message) == ("SEIZURE REPORT SR-1 · Dominica Customs (DM) · "
                                 "2025-09-27 14:10 UTC · TLP:AMBER · nominal")


def test_field_titles_prefer_the_referring_property(catalog: Catalog) -> None:
    """A property's own title wins over the title of the definition it refers to."""
    titles = field_titles(catalog, example("seizure"))
    assert titles["/event/where"] == "place of seizure"


def test_field_titles_skip_definition_titles(catalog: Catalog) -> None:
    """A property titled only by the definition it refers to is left to its name."""
    message = copy.deepcopy(example("seizure"))
    message["event"]["route"] = {"origin": {"country": "BR", "place": "Santos"}}
    titles = field_titles(catalog, message)
    assert "/event/route/origin" not in titles  # its definition's "location" says nothing
    assert titles["/event/route/origin/place"] == "place"  # titled inside the definition


def test_html_page_is_self_contained(catalog: Catalog) -> None:
    """The page holds every message, its own style, and loads nothing from elsewhere."""
    messages = [load(p) for p in EXAMPLES[:3]]
    page = html_page(catalog, messages, "Day <1>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Day &lt;1&gt;</title>" in page
    assert page.count('<section class="opshub-message') == len(messages)
    assert "<style>" in page
    for needle in ("src=", "href=", "@import", "url(", "<script"):
        assert needle not in page
    assert TagChecker().check(page) == []
