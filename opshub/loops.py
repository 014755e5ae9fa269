"""The event loops the tools run on: uvloop where it is installed (agents and load
generators), asyncio where a measurement says so (the hub, see docs/performance.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """Run ``coro`` to completion on a new event loop of the kind named."""
    if loop == "asyncio":
        return asyncio.run(coro)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result
