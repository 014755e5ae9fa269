"""What a YAML document's nodes say that the loaded data no longer does: the line of
every node, plain text that YAML 1.1 read as a boolean or a number (NO, on, 0123, 8:40),
field names read that way, and fields that an unquoted comma split off a value inside
{...}. The scenario and exercise loaders use it to put a line on each problem and to say
which pitfall caused one and what to quote. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from client.messages.content import _Loader

#: Tags YAML 1.1 gives plain (unquoted) scalars such as NO, on, 0123 or 8:40.
_NOT_TEXT = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


@dataclass(frozen=True, slots=True)
class Nodes:
    """What the YAML nodes say that the loaded data no longer does, by JSON pointer."""

    lines: dict[str, int] = field(default_factory=dict)  # 1-based line of every node
    typed: dict[str, str] = field(default_factory=dict)  # plain text read as bool or number
    keys: dict[str, str] = field(default_factory=dict)  # field names read as bool or number
    split: dict[str, str] = field(default_factory=dict)  # stray field -> the whole value


def nodes(text: str) -> Nodes:
    """Walk the YAML nodes of ``text``. Raises yaml.YAMLError."""
    out = Nodes()

    def walk(node: yaml.Node, path: str) -> None:
        out.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.style is None and node.tag in _NOT_TEXT:
            out.typed[path] = node.value
        elif isinstance(node, yaml.MappingNode):
            if node.flow_style:
                _split_values(node, path, text, out.split)
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.style is None and k.tag in _NOT_TEXT:
                    out.keys[f"{path}/{k.value}"] = k.value
                walk(v, f"{path}/{k.value}")
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{path}/{i}")

    root = yaml.compose(text, Loader=_Loader)
    if root is not None:
        walk(root, "")
    return out


def _split_values(node: yaml.MappingNode, path: str, text: str, out: dict[str, str]) -> None:
    """Record the fields of a {...} map that an unquoted comma split off the plain value
    before them: ``{place: Lome (Tokoin, Lome)}`` reads as place "Lome (Tokoin" and a
    field "Lome)" with no value (YAML 1.2, 7.4: a comma ends a plain scalar in a flow
    collection)."""
    value: tuple[str, yaml.Node] | None = None  # the last field with a plain value
    stray: list[yaml.Node] = []

    def close() -> None:
        if value is not None and stray:
            name, first = value
            whole = text[first.start_mark.index:stray[-1].end_mark.index]
            for key in stray:
                out[f"{path}/{key.value}"] = f"{name}: {quoted(whole)}"
        stray.clear()

    for k, v in node.value:
        bare = (isinstance(k, yaml.ScalarNode) and k.style is None
                and isinstance(v, yaml.ScalarNode) and v.value == "" and v.style is None
                and ":" not in text[k.end_mark.index:v.start_mark.index])
        if bare and value is not None:
            stray.append(k)
            continue
        close()
        value = ((str(k.value), v) if isinstance(v, yaml.ScalarNode) and v.style is None
                 and v.value else None)
    close()


def lines(text: str) -> dict[str, int]:
    """JSON pointer -> 1-based line of every node of a YAML document."""
    return nodes(text).lines


def put(data: Any, pointer: str, value: Any) -> None:
    """Set the node at ``pointer`` (as ``nodes`` spells it) if it is there and not the
    root."""
    if not pointer:
        return
    *parents, last = pointer.split("/")[1:]
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data.get(part)
        if not isinstance(data, dict | list):
            return
    if isinstance(data, list):
        data[int(last)] = value
    elif last in data:
        data[last] = value


def yaml_value(text: str) -> Any:
    """What the scenario loader makes of a plain scalar ``text``."""
    return yaml.load(text, Loader=_Loader)


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"the number {value}"


def quoted(text: str) -> str:
    """``text`` as a quoted YAML scalar."""
    if "'" not in text:
        return f"'{text}'"
    return json.dumps(text, ensure_ascii=False)
