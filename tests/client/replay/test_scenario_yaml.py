"""YAML pitfalls in scenario files: a plain value YAML 1.1 reads as a boolean or a number,
and a comma that splits a value inside a {...} map, each reported as what YAML did and
what to quote, at the line where it happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.replay.scenario import ScenarioProblem, load
from protocol.errors import ScenarioError

MINI = Path(__file__).resolve().parents[2] / "data" / "mini-scenario.yaml"


def _problems(tmp_path: Path, old: str, new: str) -> list[ScenarioProblem]:
    """The problems of the mini scenario with ``old`` replaced by ``new`` (once)."""
    text = MINI.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / "scenario.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    return list(caught.value.problems)


def _line(old: str) -> int:
    """1-based line of ``old`` in the mini scenario."""
    text = MINI.read_text(encoding="utf-8")
    return text[:text.index(old)].count("\n") + 1


def test_scenario_yaml_country_no_says_to_quote_it(tmp_path: Path) -> None:
    """Norway written as NO, which YAML reads as false, is reported as that, with the quotes
    to add, at its line."""
    old = "country: BR, agency: police"
    (p,) = _problems(tmp_path, old, "country: NO, agency: police")
    assert p.path == "/participants/4/country"
    assert p.message == "YAML read NO as false; write it in quotes: 'NO'"
    assert p.line == _line(old)


@pytest.mark.parametrize("word", ["yes", "No", "on", "OFF"])
def test_scenario_yaml_boolean_word_in_a_message_text_says_to_quote_it(
        tmp_path: Path, word: str) -> None:
    """yes/no/on/off as the whole of a text field inside a storyline message is reported as
    a boolean YAML made of it."""
    (p,) = _problems(tmp_path, "reason: Matches the courier profile.", f"reason: {word}")
    assert p.path == "/storylines/0/steps/0/message/reason"
    value = "true" if word.lower() in ("yes", "on") else "false"
    assert p.message == f"YAML read {word} as {value}; write it in quotes: '{word}'"


def test_scenario_yaml_comma_in_a_flow_map_value_says_to_quote_the_value(
        tmp_path: Path) -> None:
    """An unquoted comma inside {...} splits a value into a value and a stray field: the
    problem says so and shows the value quoted, not "unknown field 'Lome)'"."""
    old = "where: {country: TG, place: Lome airport, place_type: airport}"
    (p,) = _problems(tmp_path, old, "where: {country: TG, place: Lome (Tokoin, Lome), "
                                    "place_type: airport}")
    assert p.path == "/storylines/0/steps/1/message/event/where/Lome)"
    assert p.message == ("a comma inside a {...} value splits it: quote the value: "
                         "place: 'Lome (Tokoin, Lome)'")
    assert p.line == _line(old)


def test_scenario_yaml_comma_in_a_participant_map_says_to_quote_the_value(
        tmp_path: Path) -> None:
    """The same split in a participant written as a one-line map (the schema's unknown
    field) names the whole value, however many commas it held."""
    old = "name: Togo customs,"
    (p, q) = _problems(tmp_path, old, "name: Togo customs, Lome, airport,")
    assert {p.path, q.path} == {"/participants/3/Lome", "/participants/3/airport"}
    assert p.message == q.message == ("a comma inside a {...} value splits it: quote the "
                                      "value: name: 'Togo customs, Lome, airport'")


def test_scenario_yaml_number_like_id_says_to_quote_it(tmp_path: Path) -> None:
    """A step id 0123, which YAML 1.1 reads as the octal number 83, is reported as that."""
    (p,) = _problems(tmp_path, "- id: warn\n", "- id: 0123\n")
    assert p.path == "/storylines/0/steps/0/id"
    assert p.message == "YAML read 0123 as the number 83; write it in quotes: '0123'"


def test_scenario_yaml_number_still_wrong_in_quotes_says_both(tmp_path: Path) -> None:
    """A time 8:40 (YAML 1.1 reads 520, in base 60) says what YAML read and what is still
    wrong with the text once quoted."""
    (p,) = _problems(tmp_path, 'time: "08:00"', "time: 8:40")
    assert p.path == "/storylines/0/steps/0/at/time"
    assert p.message.startswith("YAML read 8:40 as the number 520; in quotes, "
                                "\"8:40\" does not match")


def test_scenario_yaml_number_problem_not_caused_by_yaml_is_unchanged(
        tmp_path: Path) -> None:
    """A number that is wrong as a number (an unknown message version) keeps its message:
    quoting would not help."""
    (p,) = _problems(tmp_path, "type: feedback,", "type: feedback, version: 2,")
    assert p.message == "version 2 of feedback is not known here (known: 1)"


def test_scenario_yaml_boolean_field_name_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """A field name YAML reads as a boolean (on:) is reported with the quotes to add; the
    schema check used to stop on it with a ValueError."""
    old = "mix: {warning: 2,"
    (p,) = _problems(tmp_path, old, "mix: {on: 2, warning: 2,")
    assert p.path == "/background/mix/on"
    assert p.message == "YAML read the field name on as true; write it in quotes: 'on'"
    assert p.line == _line(old)
