"""The lesson as an instructor uses it: `opshub teach cocair-v` in its own process (its own
hub and SQLite file), its page in a real Chromium driven by Playwright. What the page
shows of each message is checked against the hub's database, read here on its own.

Needs Debian's chromium (or OPSHUB_CHROMIUM=path); without one these tests skip, and
scripts/test says so before it starts. Screenshots go to test-artifacts/ (docs/teaching.md
shows them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from client.e2ee.message import Header
from client.replay.scenario import load, resolve
from tests.client.browser import NEEDS_CHROMIUM, WAIT, served, shot

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]

COCAIR = load(resolve("cocair-v"))
STORY = COCAIR.storylines[0]["id"]
#: the first storyline's messages in the order the lesson sends them
STORY_IDS = [s.message["id"] for s in sorted(
    (s for s in COCAIR.steps if s.storyline == STORY), key=lambda s: s.at)]


@pytest.fixture
def lesson(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with served(tmp_path, "teach", "cocair-v") as ready:
        yield ready


@pytest.fixture
def page(lesson: dict[str, Any], browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(lesson["link"])
    page.locator("#position", has_text="Item 1 of").wait_for(timeout=WAIT)
    _settled(page)
    return page


def _settled(page: Any) -> None:
    page.wait_for_function("document.getElementById('state').textContent !== 'working…'",
                           timeout=WAIT)


def _db_entry(lesson: dict[str, Any], seq: int) -> list[Any]:
    with sqlite3.connect(f"file:{lesson['db']}?mode=ro", uri=True) as conn:
        for (body,) in conn.execute("SELECT body FROM segments WHERE op = ?",
                                    (lesson["operation"],)):
            for entry in msgpack.unpackb(body):
                if entry[0] == seq:
                    return entry  # type: ignore[no-any-return]
    raise AssertionError(f"no entry {seq} in the hub's database")


def _field(page: Any, name: str) -> str:
    return str(page.locator(f'#stored [data-field="{name}"]').text_content()).strip()


def _show(page: Any, button: str, message_id: str) -> None:
    page.locator(f"#{button}").click()
    page.locator(f'#written[data-id="{message_id}"]').wait_for(timeout=WAIT)
    _settled(page)


def _stored_pane_matches_the_database(page: Any, lesson: dict[str, Any]) -> list[Any]:
    seq = int(_field(page, "seq"))
    _seq, sender, _kind, header, payload, _at = _db_entry(lesson, seq)
    assert _field(page, "sender") == sender
    assert int(_field(page, "payload_size")) == len(payload)
    assert _field(page, "header_hex") == header.hex(" ")
    assert _field(page, "excerpt_hex") == payload[:48].hex(" ")
    assert int(_field(page, "epoch")) == Header.from_bytes(header).epoch
    return [seq, sender]


def test_lesson_steps_forward_and_back_through_the_first_storyline(page, lesson) -> None:
    """Following the first storyline of COCAIR V, each step forward shows the next message
    as written, as the hub's database holds it (seq, sender, header bytes, size, the
    ciphertext's first bytes, epoch) and as every member decrypted it (identical to what
    was written); back shows them again in reverse, and the diagram follows."""
    page.locator("#follow").select_option(STORY)
    seqs = []
    for message_id in STORY_IDS:
        _show(page, "forward", message_id)
        seq, sender = _stored_pane_matches_the_database(page, lesson)
        seqs.append(seq)
        assert page.locator("#cannot-read li").count() == 0
        assert page.locator("#can-read li").count() == len(COCAIR.participants)
        assert page.locator(f'#can-read li[data-unit="{sender}"][data-reason="sender"]'
                            ).count() == 1
        assert str(page.locator("#position").text_content()).startswith(
            f"Item {int(page.locator('g.row.current').get_attribute('data-index')) + 1} of")
        if message_id == STORY_IDS[0]:
            shot(page, "lesson-warning.png", full_page=False)
    assert seqs == sorted(seqs)
    for message_id in reversed(STORY_IDS[:-1]):
        _show(page, "back", message_id)
        _stored_pane_matches_the_database(page, lesson)
    assert int(_field(page, "seq")) == seqs[0]


def test_lesson_removed_member_is_shown_unable_to_read_new_messages(page, lesson) -> None:
    """After the OCU removes Abidjan's unit, the next message is at epoch 1: the page shows
    that unit unable to read it, with what its own keys did with the stored bytes; its
    next message cannot be sent until it is added back, and then every member reads it."""
    page.locator("#follow").select_option(STORY)
    _show(page, "forward", STORY_IDS[0])
    page.locator('#participants button[data-action="remove"][data-unit="CI-JAITF-ABJ"]'
                 ).click()
    page.locator('#written[data-id="epoch 1"]').wait_for(timeout=WAIT)
    _settled(page)
    _show(page, "forward", STORY_IDS[1])
    _stored_pane_matches_the_database(page, lesson)
    assert _field(page, "epoch") == "1"
    removed = page.locator('#cannot-read li[data-unit="CI-JAITF-ABJ"][data-reason="removed"]')
    assert "removed at epoch 1" in removed.inner_text()
    assert "unknown_epoch" in removed.inner_text()
    assert page.locator("#cannot-read li").count() == 1
    assert "gone" in str(page.locator('g.lane-head[data-unit="CI-JAITF-ABJ"]'
                                      ).get_attribute("class"))
    page.evaluate("window.scrollTo(0, 0)")  # the Remove button scrolled the page down
    shot(page, "lesson-removed.png", full_page=False)

    page.locator("#forward").click()  # Abidjan's seizure report: its sender is out
    page.locator("#notice-text", has_text="add it back first").wait_for(timeout=WAIT)
    page.locator('#participants button[data-action="add"][data-unit="CI-JAITF-ABJ"]').click()
    page.locator('#written[data-id="epoch 2"]').wait_for(timeout=WAIT)
    _settled(page)
    _show(page, "forward", STORY_IDS[2])
    _stored_pane_matches_the_database(page, lesson)
    assert page.locator("#cannot-read li").count() == 0
    shot(page, "lesson-members.png")
