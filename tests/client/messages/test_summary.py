"""summary: one line per message type, and a fallback that never raises."""

from __future__ import annotations

from typing import Any

import pytest

from client.messages.summary import summarise

WORDS = frozenset({"express_courier", "firearm_part", "interpol_iarms", "wco_secretariat",
                   "interpol_general_secretariat"})


def test_summarise_seizure_report_counts_items_and_place() -> None:
    """A seizure report sums up its items and where they were seized."""
    message = {"type": "seizure_report", "items": [
        {"category": "firearm", "firearm_type": "pistol", "count": 20},
        {"category": "ammunition", "rounds": 200}],
        "event": {"where": {"country": "DM", "place": "Roseau",
                            "place_type": "express_courier"}}}
    times = "\N{MULTIPLICATION SIGN}"
    assert summarise(message, WORDS) == (f"20 {times} firearm (pistol), 1 {times} ammunition "
                                         "(rounds: 200) at Roseau (DM, express courier)")


def test_summarise_feedback_names_the_warning() -> None:
    """Feedback says which warning it answers and what was done."""
    message = {"type": "feedback", "refers_to": "W-7", "action_taken": "seized"}
    assert summarise(message, WORDS) == "re warning W-7: seized"


def test_summarise_hit_notification_lists_who_is_notified() -> None:
    """A hit notification names the record, its country and every recipient."""
    message = {"type": "hit_notification", "database": "interpol_iarms",
               "record": {"reference": "IARMS-1", "recording_country": "US"},
               "recipients": [{"kind": "interpol_general_secretariat"},
                              {"kind": "wco_secretariat"}, {"kind": "ncb", "country": "US"}]}
    assert summarise(message, WORDS) == ("iARMS hit on record IARMS-1 recorded by US; "
                                         "notified: INTERPOL GS, WCO, NCB US")


def test_summarise_unknown_type_uses_generic_line() -> None:
    """A type without its own summary gets what it refers to and its subject."""
    message = {"type": "postcard", "refers_to": "P-1", "subject": "greetings"}
    assert summarise(message, WORDS) == "re P-1: greetings"


@pytest.mark.parametrize("kind", ["seizure_report", "warning", "feedback", "alert",
                                  "request_for_information", "rfi_response", "trace_request",
                                  "trace_response", "hit_notification", "controlled_delivery",
                                  "situation_report"])
@pytest.mark.parametrize("body", [{}, {"items": "x", "event": 3, "record": [], "to": "x",
                                       "recipients": [1], "hits": [None], "totals": 5,
                                       "firearm": "x", "outcome": 1, "subject": 2}])
def test_summarise_never_raises_on_odd_shapes(kind: str, body: dict[str, Any]) -> None:
    """A message of the wrong shape still gets a (possibly thin) summary."""
    assert isinstance(summarise({"type": kind, **body}, WORDS), str)
