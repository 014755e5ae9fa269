"""The seat's message forms in a real Chromium: forms.js renders what client/exercise/forms.py
describes, builds and fills messages, and shows each problem next to its field; a seat of
the sample exercise writes a feedback through the generated controls.

Needs Debian's chromium (or OPSHUB_CHROMIUM=path); without one these tests skip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from client.exercise.forms import FILLED_IN, form
from client.exercise.runtime import WRITABLE
from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.content import load_file
from tests.client.browser import NEEDS_CHROMIUM, ROOT, WAIT, shot

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]

STATIC = ROOT / "client" / "exercise" / "static"
#: renders one description into the page and fills it: window.form is the MessageForm
SHOW = """([description, message]) => {
  document.body.replaceChildren();
  window.form = new MessageForm(description);
  document.body.append(form.element);
  form.fill(message);
}"""


def bodies(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The valid examples of a type without the envelope the runtime fills in."""
    for path in sorted((SCHEMA_DIR / "examples" / "valid").iterdir()):
        message = load_file(path)
        if isinstance(message, dict) and message.get("type") == kind:
            yield path.name, {k: v for k, v in message.items() if k not in FILLED_IN}


@pytest.fixture
def page(browser: Any) -> Any:
    """A blank page with common.js and forms.js, as the seat page loads them."""
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.set_content('<!doctype html><html lang="en"><body></body></html>')
    page.add_style_tag(path=str(STATIC / "style.css"))
    page.add_script_tag(path=str(STATIC / "common.js"))
    page.add_script_tag(path=str(STATIC / "forms.js"))
    return page


def seizure_report() -> dict[str, Any]:
    return dict(bodies("seizure_report"))["seizure-cocair-airport-cocaine.json"]


def test_forms_js_builds_back_every_valid_example(page: Any) -> None:
    """Filled from any valid example of a type a seat writes, the controls build the same
    message again, with nothing kept aside."""
    catalog = default_catalog()
    for kind in WRITABLE:
        description = form(catalog, kind)
        for name, body in bodies(kind):
            page.evaluate(SHOW, [description, body])
            assert page.evaluate("form.leftovers") == [], name
            assert page.evaluate("form.build()") == body, name


def test_forms_js_shows_each_problem_next_to_its_field(page: Any) -> None:
    """A problem shows under the deepest field its pointer is in, tied to the control for
    screen readers; a problem of the whole message is left for the top."""
    page.evaluate(SHOW, [form(default_catalog(), "seizure_report"), seizure_report()])
    placed = page.evaluate("""form.showProblems([
      {path: "/items/0/quantity/value", message: "-3 is less than the minimum of 0"},
      {path: "/items/0/bogus", message: "unknown field 'bogus'"},
      {path: "", message: "not sent"}]).map((p) => p.control && p.control.id)""")
    value = page.locator('[data-pointer="/items/0/quantity/value"]')
    note = value.locator(".field-problem")
    assert note.inner_text() == "-3 is less than the minimum of 0"
    control = value.locator("input")
    assert control.get_attribute("aria-invalid") == "true"
    assert note.get_attribute("id") in (control.get_attribute("aria-describedby") or "")
    assert placed[0] == control.get_attribute("id")
    item = page.locator('[data-pointer="/items/0"] > .field-problem')
    assert item.inner_text() == "bogus: unknown field 'bogus'"
    assert placed[2] is None
    page.evaluate("form.clearProblems()")
    assert not note.is_visible()
    assert control.get_attribute("aria-invalid") is None


def test_forms_js_shows_the_fields_of_the_chosen_item_category(page: Any) -> None:
    """Choosing another category for a seized item shows that category's own fields and
    drops those of the one before."""
    page.evaluate(SHOW, [form(default_catalog(), "seizure_report"), seizure_report()])
    assert page.locator('[data-pointer="/items/0/substance"]').count() == 1
    page.locator('[data-pointer="/items/0/category"] select').select_option(
        json.dumps("firearm"))
    page.locator('[data-pointer="/items/0/firearm_type"]').wait_for(timeout=WAIT)
    assert page.locator('[data-pointer="/items/0/substance"]').count() == 0
    item = page.evaluate("form.build().items[0]")
    assert item["category"] == "firearm"
    assert "substance" not in item


def test_forms_js_adds_and_removes_repeated_groups(page: Any) -> None:
    """"Add a seized item" adds an empty item and puts the focus in it; removing the first
    leaves the other, renumbered."""
    report = seizure_report()
    report["items"] = report["items"][:1]
    page.evaluate(SHOW, [form(default_catalog(), "seizure_report"), report])
    page.get_by_role("button", name="Add a seized item").click()
    focused = page.evaluate("document.activeElement.closest('[data-pointer]').dataset.pointer")
    assert focused == "/items/1/category"
    page.locator('[data-pointer="/items/1/category"] select').select_option(
        json.dumps("other"))
    page.get_by_role("button", name="Remove seized item 1").click()
    assert page.evaluate("form.build().items") == [{"category": "other"}]
    legends = page.locator('[data-pointer="/items"] fieldset.item > legend')
    assert legends.all_inner_texts() == ["Seized item 1"]


def test_web_forms_seat_writes_a_feedback_in_the_generated_form(
        exercise: dict[str, Any], browser: Any) -> None:
    """A seat answers a warning: the form opens with the reference filled in, the seat
    fills the fields, sees a problem next to the field it concerns (nothing is sent),
    fixes it and sends."""
    links = exercise["links"]
    console = browser.new_page()
    console.goto(links["director"])
    console.get_by_role("button", name="Start").click()
    console.get_by_role("button", name="Pause").click()
    row = console.locator('tr[data-inject="2"]')
    row.get_by_role("button", name="Deliver now").click()
    row.locator(".tag", has_text="delivered").wait_for(timeout=WAIT)

    lome = browser.new_page(viewport={"width": 1300, "height": 900})
    lome.goto(links["TG-JAITF-LFW"])
    warning = lome.locator('.msg[data-id="OCU-WCO.X2"]')
    warning.wait_for(timeout=WAIT)
    warning.get_by_role("button", name="Answer with a feedback").click()
    # the page fills the reference in once the form is rebuilt (a moment after the click):
    # expect() retries until then, where input_value() would read the form before it
    expect(lome.get_by_label("Warning", exact=True)).to_have_value("OCU-WCO.X2", timeout=WAIT)

    lome.get_by_label("Action taken").select_option(label="controlled no finding")
    lome.get_by_label("Controlled at").fill("2015-12-10T06:15:00Z")
    lome.get_by_label("Result").fill("Both passengers were searched; nothing was found.")
    lome.get_by_label("Persons arrested").fill("-1")
    lome.get_by_role("button", name="Check").click()
    arrested = lome.locator('[data-pointer="/persons_arrested"]')
    arrested.locator(".field-problem", has_text="minimum of 0").wait_for(timeout=WAIT)
    lome.get_by_role("button", name="Send").click()
    lome.locator("#notice", has_text="Not sent").wait_for(timeout=WAIT)
    arrested.locator(".field-problem", has_text="minimum of 0").wait_for(timeout=WAIT)
    shot(lome, "exercise-seat-form.png")

    # the problem's link in the list at the top takes the keyboard to the field
    lome.locator("#problems a", has_text="/persons_arrested").click()
    assert lome.evaluate("document.activeElement.closest('[data-pointer]').dataset.pointer"
                         ) == "/persons_arrested"
    lome.keyboard.press("Control+a")
    lome.keyboard.type("0")
    lome.get_by_role("button", name="Send").click()
    lome.locator("#notice", has_text="Sent as").wait_for(timeout=WAIT)
    assert lome.locator("#problems li").count() == 0
    console.locator("#traffic .meta", has_text="TG-JAITF-LFW").first.wait_for(timeout=WAIT)


def test_web_forms_json_view_holds_what_the_form_holds(
        exercise: dict[str, Any], browser: Any) -> None:
    """The JSON toggle shows the message the form holds, and an edit there shows in the
    form when it comes back."""
    lome = browser.new_page()
    lome.goto(exercise["links"]["TG-JAITF-LFW"])
    arrested = lome.get_by_label("Persons arrested")
    arrested.fill("4")
    lome.get_by_role("button", name="JSON").click()
    content = lome.get_by_label("Content")
    message = json.loads(content.input_value())
    assert (message["type"], message["persons_arrested"]) == ("feedback", 4)
    assert not arrested.is_visible()
    message["persons_arrested"] = 5
    content.fill(json.dumps(message))
    lome.get_by_role("button", name="JSON").click()
    assert arrested.input_value() == "5"
    assert lome.get_by_role("button", name="JSON").get_attribute("aria-pressed") == "false"
