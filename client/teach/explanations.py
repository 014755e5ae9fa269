"""The lesson's explanations: one data file (``explanations.yaml`` beside this module, or a
trainer's own copy) with a text per message type, per workflow step, for what the hub
can and cannot learn, and for why a member can or cannot read a message. Loading checks
that every key the lesson view asks for is there, so a translated file with a key
missing fails when the lesson starts, naming the key, not in front of a class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from protocol.errors import UsageError

DEFAULT = Path(__file__).resolve().parent / "explanations.yaml"
TYPE_KEYS = ("title", "purpose", "who_acts", "checks")
READING_KEYS = ("read", "sender", "removed", "not_yet", "not_member", "no_record")
MEMBERSHIP_STEPS = ("channel_created", "member_removed", "member_added")


@dataclass(frozen=True, slots=True)
class Explanations:
    language: str
    types: dict[str, dict[str, Any]]
    steps: dict[str, str]
    hub: dict[str, list[str]]
    reading_texts: dict[str, str]

    def step(self, key: str) -> str:
        """The text of a workflow step: ``type.variant`` falls back to ``type``, and that
        to what the type is for."""
        kind = key.split(".")[0]
        return (self.steps.get(key) or self.steps.get(kind)
                or str(self.types.get(kind, {}).get("purpose", "")))

    def reading(self, reason: str, **fields: Any) -> str:
        return _fill(self.reading_texts[reason], fields)

    def membership(self, key: str, **fields: Any) -> str:
        return _fill(self.steps[key], fields)


def _fill(text: str, fields: dict[str, Any]) -> str:
    try:
        return text.format(**fields)
    except (KeyError, IndexError, ValueError):
        return text  # a placeholder the trainer misspelt shows as written


def load(path: Path, types: list[str]) -> Explanations:
    """The explanations in ``path``, which must explain every one of ``types``. Raises
    UsageError naming the file and the missing or malformed key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read explanations {path}: {exc}") from None

    def need(node: Any, key: str, where: str, kind: type) -> Any:
        value = node.get(key) if isinstance(node, dict) else None
        if not isinstance(value, kind) or not value:
            raise UsageError(f"{path}: {where}{key} is missing or not a "
                             f"{'list' if kind is list else 'text' if kind is str else 'map'}")
        return value

    language = need(data, "language", "", str)
    type_nodes = need(data, "types", "", dict)
    for t in types:
        node = need(type_nodes, t, "types.", dict)
        for k in TYPE_KEYS:
            need(node, k, f"types.{t}.", list if k == "checks" else str)
    steps = need(data, "steps", "", dict)
    for t in types:  # a type's own text, or one per variant (``rfi_response.hit``)
        if not any(k == t or k.startswith(f"{t}.") for k in steps):
            raise UsageError(f"{path}: steps.{t} is missing (or steps.{t}.<variant>)")
    for k in MEMBERSHIP_STEPS:
        need(steps, k, "steps.", str)
    for k, v in steps.items():
        if not isinstance(v, str):
            raise UsageError(f"{path}: steps.{k} is not a text")
    hub = need(data, "hub", "", dict)
    for k in ("can_learn", "cannot_learn"):
        need(hub, k, "hub.", list)
    reading = need(data, "reading", "", dict)
    for k in READING_KEYS:
        need(reading, k, "reading.", str)
    return Explanations(language, {t: type_nodes[t] for t in type_nodes}, dict(steps),
                        {k: list(hub[k]) for k in ("can_learn", "cannot_learn")},
                        dict(reading))
