"""The exercise's browser tests: `opshub exercise` running the sample in its own process
(the browser itself: tests/client/conftest.py and tests/client/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.browser import served


@pytest.fixture
def exercise(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The sample exercise served by `opshub exercise`; its links, read from the ready
    file. Stopped with SIGINT at the end, as a person would with Ctrl-C."""
    with served(tmp_path, "exercise", "cocair-v-tabletop", "--speed", "60") as ready:
        yield ready
