"""Message content: the schemas in schemas/ (catalog), checks beyond them, the channel
encoding, nominal-data filtering and rendering. Client side only: the hub never sees it."""

from __future__ import annotations

import functools

from client.messages.catalog import Catalog


@functools.cache
def default_catalog() -> Catalog:
    """The catalog of the project's schemas/ folder, loaded and compiled once."""
    return Catalog()
