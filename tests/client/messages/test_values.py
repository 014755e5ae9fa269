"""values: how single values read."""

from __future__ import annotations

from client.messages.values import compact, number, utc_minute, word

WORDS = frozenset({"express_courier"})


def test_number_groups_thousands() -> None:
    """Integers get thousands separators; whole floats lose their ".0"."""
    assert (number(1631000), number(2.5), number(411.0)) == ("1,631,000", "2.5", "411")


def test_compact_quantity_reads_value_and_unit() -> None:
    """A quantity reads "411 kg", an estimate says so."""
    assert compact({"value": 411, "unit": "kg"}, WORDS) == "411 kg"
    assert compact({"value": 2, "unit": "t", "estimated": True}, WORDS) == "2 t (estimated)"


def test_compact_money_reads_currency_first() -> None:
    """Money reads "USD 1,631,000", with its USD equivalent for other currencies."""
    assert compact({"amount": 1631000, "currency": "USD"}, WORDS) == "USD 1,631,000"
    assert (compact({"amount": 252000, "currency": "EUR", "usd_equivalent": 275000}, WORDS)
            == "EUR 252,000 (USD 275,000)")


def test_compact_leaves_objects_to_blocks() -> None:
    """An object that is not a quantity or money does not fit on one line."""
    assert compact({"country": "DM"}, WORDS) is None
    assert compact([{"country": "DM"}], WORDS) is None


def test_compact_joins_lists_of_codes() -> None:
    """A list of codes reads as a comma-separated line."""
    assert compact(["DM", "express_courier", True], WORDS) == "DM, express courier, yes"


def test_compact_leaves_lists_of_sentences_to_blocks() -> None:
    """A list of free text is not joined: its items may hold commas of their own."""
    assert compact(["jigs, drill guides", "tool marks"], WORDS) is None


def test_word_only_rewrites_known_codes() -> None:
    """Known enumerated values get spaces; other strings are left alone."""
    assert (word("express_courier", WORDS), word("file_name", WORDS)) == (
        "express courier", "file_name")


def test_utc_minute_converts_offsets() -> None:
    """A time with an offset is shown in UTC to the minute; junk is shown as is."""
    assert utc_minute("2023-09-27T16:00:00-04:00") == "2023-09-27 20:00 UTC"
    assert utc_minute("yesterday") == "yesterday"
