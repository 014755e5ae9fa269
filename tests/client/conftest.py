"""The browser fixture of the browser tests (tests/client/browser.py has the rest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.client.browser import ARGS, CHROMIUM


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
