"""The exercise as people use it: `opshub exercise` in its own process (its own hub), the
director's console and two seats as pages in a real Chromium driven by Playwright.

Needs Debian's chromium (or OPSHUB_CHROMIUM=path); without one these tests skip, and
scripts/test says so before it starts. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import pytest

from tests.client.browser import NEEDS_CHROMIUM, WAIT, shot

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]


def test_web_director_and_two_seats_play_an_exercise(exercise, browser) -> None:
    """A director starts the exercise with two seats held by two pages; a seat answers a
    warning with feedback, sees a seizure report refused by a check (nothing sent), fixes
    it and sends it; the console's tally and expectations board follow; pause and deliver
    now behave."""
    links = exercise["links"]
    console = browser.new_page(viewport={"width": 1400, "height": 1000})
    console.goto(links["director"])
    console.get_by_role("button", name="Start").click()
    console.get_by_role("button", name="Pause").click()
    console.locator("#state", has_text="paused").wait_for(timeout=WAIT)

    # deliver the warning to Lomé now, whatever the clock says
    row = console.locator('tr[data-inject="2"]')
    row.get_by_role("button", name="Deliver now").click()
    row.locator(".tag", has_text="delivered").wait_for(timeout=WAIT)

    lome = browser.new_page(viewport={"width": 1300, "height": 1000})
    lome.goto(links["TG-JAITF-LFW"])
    desk = browser.new_page()
    desk.goto(links["INTERPOL-DESK"])
    warning = lome.locator('.msg[data-id="OCU-WCO.X2"]')
    warning.wait_for(timeout=WAIT)
    warning.get_by_role("button", name="Answer with a feedback").click()
    lome.get_by_role("button", name="Send").click()
    lome.locator("#notice", has_text="Sent as").wait_for(timeout=WAIT)

    # a seizure report with a negative quantity: the check names the field, nothing goes
    lome.get_by_label("Message type").select_option("seizure_report")
    quantity = lome.locator('[data-pointer="/items/0/quantity/value"]')
    quantity.locator("input").fill("-3")
    lome.get_by_role("button", name="Send").click()
    problem = lome.locator("#problems li", has_text="/items/0/quantity/value")
    problem.wait_for(timeout=WAIT)
    quantity.locator(".field-problem").wait_for(timeout=WAIT)  # next to the field, too
    assert "Sent as" not in lome.locator("#notice").inner_text()
    shot(lome, "exercise-seat-refused.png", full_page=False)
    quantity.locator("input").fill("3.2")
    lome.get_by_role("button", name="Send").click()
    lome.locator("#notice", has_text="Sent as").wait_for(timeout=WAIT)
    assert lome.locator("#problems li").count() == 0

    # the OCU read both: the feedback expectation is met, the seat has sent two messages
    console.locator('tr[data-expectation="2.1"] .tag', has_text="met").wait_for(timeout=WAIT)
    seat_row = console.locator("#seats tr", has_text="TG-JAITF-LFW")
    seat_row.locator("td", has_text="2").first.wait_for(timeout=WAIT)
    console.locator("#traffic .meta", has_text="TG-JAITF-LFW").first.wait_for(timeout=WAIT)
    shot(console, "exercise-console.png")
    shot(lome, "exercise-seat.png", full_page=False)

    # both seats' pages are open; the review lists what the seat did
    assert seat_row.locator(".tag", has_text="open").count() == 1
    console.get_by_role("button", name="Write the review").click()
    link = console.get_by_role("link", name="After-action review")
    link.wait_for(timeout=WAIT)
    review = browser.new_page()
    review.goto(link.get_attribute("href") and console.url.split("/director/")[0]
                + link.get_attribute("href"))
    review.get_by_text("TG-JAITF-LFW").first.wait_for(timeout=WAIT)
    assert "feedback" in review.content()
    shot(review, "exercise-review.png", full_page=False)

    # reset: back to the start, every inject pending, the seat's inbox emptied
    console.once("dialog", lambda dialog: dialog.accept())
    console.get_by_role("button", name="Reset").click()
    console.locator('tr[data-inject="2"] .tag', has_text="pending").wait_for(timeout=WAIT)
    console.locator("#state", has_text="ready").wait_for(timeout=WAIT)
    # the new run's traffic fills the inbox again at once; the old run's warning is gone
    lome.locator('.msg[data-id="OCU-WCO.X2"]').wait_for(state="detached", timeout=WAIT)
