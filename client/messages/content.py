"""Messages as the bytes an operation's channel carries: compact UTF-8 JSON under the
content type ``MESSAGE`` of the end-to-end header, and the files people write (JSON or
YAML). Pure apart from ``load_file``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from client.messages.catalog import Problem
from protocol.errors import SchemaError

#: End-to-end content type of a schema message (1 is opaque application bytes).
MESSAGE = 2


def encode(message: dict[str, Any]) -> bytes:
    """The channel bytes of ``message``: JSON, no whitespace, keys in the writer's order
    (so a report decodes to exactly what was sent)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


def decode(data: bytes) -> Any:
    """The message in ``data``. Raises SchemaError (path "") for bytes that are not UTF-8
    JSON."""
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"content is not UTF-8 JSON: {exc}",
                          problems=[Problem("", "json", f"not UTF-8 JSON: {exc}")]) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as the strings people wrote: the schemas want
    RFC 3339 strings, not datetime objects."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_file(path: Path) -> Any:
    """A message from a .json, .yaml or .yml file. Raises SchemaError for text that does
    not parse (the problem says where), OSError for a file that cannot be read."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise SchemaError(f"not valid YAML: {where}{exc}", problems=[
                Problem("", "yaml", f"not valid YAML: {where}"
                        f"{getattr(exc, 'problem', None) or exc}")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not valid JSON: {exc}", problems=[
            Problem("", "json", f"not valid JSON: line {exc.lineno}, column {exc.colno}: "
                    f"{exc.msg}")]) from None
