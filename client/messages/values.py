"""How single values of a message read to a person: numbers with thousands separators,
quantities ("411 kg"), money ("USD 1,631,000"), yes/no, codes with spaces, times in UTC.

Pure; shared by the one-line summaries and the renderings. Never raises on odd input: a
value of an unexpected shape is shown as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from client.messages.catalog import Catalog, subschemas

_QUANTITY_KEYS = frozenset({"value", "unit", "estimated"})
_MONEY_KEYS = frozenset({"amount", "currency", "usd_equivalent"})


def enum_words(catalog: Catalog) -> frozenset[str]:
    """Every ``snake_case`` enumerated value of the catalog's schemas, to be shown with
    spaces (``express_courier`` -> "express courier").

    Enumerations are not annotations, so the validator cannot say which values of a message
    came from one; a free-text value that happens to equal such a code is shown with spaces
    too, a harmless confusion.
    """
    return frozenset(v for node in subschemas(catalog.documents.values())
                     if isinstance(node.get("enum"), list)
                     for v in node["enum"] if isinstance(v, str) and "_" in v)


def word(value: str, words: frozenset[str]) -> str:
    """An enumerated code with spaces for underscores; any other string unchanged."""
    return value.replace("_", " ") if value in words else value


def number(value: float) -> str:
    """1631000 -> "1,631,000"; 2.50 -> "2.5"."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return f"{value:,}"


def utc_minute(value: Any) -> str:
    """An RFC 3339 time as "2025-09-27 14:10 UTC"; anything unparsable as it is."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M")
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def compact(value: Any, words: frozenset[str]) -> str | None:
    """A value that fits on one line (scalar, quantity, money, list of codes or numbers) as
    text, or None for one that needs a block of its own (an object, a list of objects or of
    sentences, which could hold commas themselves)."""
    match value:
        case bool():
            return "yes" if value else "no"
        case int() | float():
            return number(value)
        case str():
            return word(value, words)
        case None:
            return "-"
        case {"value": int() | float() as amount, "unit": str() as unit} if (
                set(value) <= _QUANTITY_KEYS):
            text = f"{number(amount)} {unit}"
            return text + " (estimated)" if value.get("estimated") is True else text
        case {"amount": int() | float() as amount, "currency": str() as currency} if (
                set(value) <= _MONEY_KEYS):
            text = f"{currency} {number(amount)}"
            usd = value.get("usd_equivalent")
            if isinstance(usd, int | float) and not isinstance(usd, bool) and (
                    currency != "USD"):
                text += f" (USD {number(usd)})"
            return text
        case list() if all(_is_code(v) for v in value):
            return ", ".join(str(compact(v, words)) for v in value) or "none"
        case dict() if not value:
            return "none"
    return None


def _is_code(value: Any) -> bool:
    """A list element that can share a comma-separated line: a number, a boolean, or a
    string without spaces (a code or an id)."""
    if isinstance(value, str):
        return not any(c.isspace() for c in value)
    return value is None or isinstance(value, int | float)
