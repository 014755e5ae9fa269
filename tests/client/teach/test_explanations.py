"""The lesson's explanations file: the project's own covers every message type, and a
trainer's copy with a key missing is refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from client.messages import default_catalog
from client.teach import explanations

TYPES = list(default_catalog().types)


def test_explanations_default_file_explains_every_message_type_and_reason() -> None:
    texts = explanations.load(explanations.DEFAULT, TYPES)
    for kind in TYPES:
        assert texts.types[kind]["purpose"]
        assert texts.step(kind)
    for reason in explanations.READING_KEYS:
        assert texts.reading(reason, unit="X", epoch=1, joined=2, removed=1)


def test_explanations_step_falls_back_from_variant_to_type() -> None:
    texts = explanations.load(explanations.DEFAULT, TYPES)
    assert texts.step("rfi_response.hit") != texts.step("rfi_response.no_hit")
    assert texts.step("warning.unheard_of") == texts.step("warning")


def test_explanations_fill_placeholders_and_keep_a_misspelt_one(tmp_path: Path) -> None:
    data = yaml.safe_load(explanations.DEFAULT.read_text(encoding="utf-8"))
    data["reading"]["removed"] = "{unit} out at {removed}; {typo}"
    path = tmp_path / "texts.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    texts = explanations.load(path, TYPES)
    assert texts.reading("removed", unit="X", removed=2) == "{unit} out at {removed}; {typo}"
    data["reading"]["removed"] = "{unit} out at {removed}"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert explanations.load(path, TYPES).reading("removed", unit="X", removed=2) == (
        "X out at 2")


@pytest.mark.parametrize(("drop", "named"), [
    (("types", "warning"), "types.warning"),
    (("types", "alert", "checks"), "types.alert.checks"),
    (("steps", "member_removed"), "steps.member_removed"),
    (("hub", "cannot_learn"), "hub.cannot_learn"),
    (("reading", "not_yet"), "reading.not_yet"),
])
def test_explanations_missing_key_is_refused_by_name(tmp_path: Path, drop: tuple[str, ...],
                                                     named: str) -> None:
    data = yaml.safe_load(explanations.DEFAULT.read_text(encoding="utf-8"))
    node = data
    for key in drop[:-1]:
        node = node[key]
    del node[drop[-1]]
    path = tmp_path / "texts.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(explanations.UsageError, match=named.replace(".", r"\.")):
        explanations.load(path, TYPES)
