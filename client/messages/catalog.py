"""The message catalog: every schema in schemas/, compiled once, and validation of one
message against the schema its ``type`` and ``version`` name.

Pure (no I/O after loading the schema files). Validation reports every problem at once,
each with the JSON pointer of the offending value and what was expected there. The fast
path is one compiled ``is_valid`` call (jsonschema-rs); only a message that fails it is
walked again to collect and phrase its problems.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs

from protocol.errors import SchemaError

#: The schema files (the source of truth; usable from any language).
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
#: Base URI of every schema's ``$id``; never fetched, all references resolve locally.
BASE_URI = "https://opshub.example/schemas/"
#: Enumerations longer than this are summarised by their ``x-expected`` text.
_LONG_ENUM = 12


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a message: where (JSON pointer, "" for the whole message),
    which rule (a JSON Schema keyword, or ``reference`` / ``rule`` for checks beyond the
    schema), and a sentence naming the bad value and what was expected."""

    path: str
    keyword: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "keyword": self.keyword, "message": self.message}


def pointer(parts: Any) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True, slots=True)
class MessageSchema:
    """One message type at one version: its schema document and compiled validator."""

    type: str
    version: int
    file: Path
    schema: dict[str, Any]
    validator: Any
    #: the same schema with every ``x-nominal`` part replaced by ``false``: valid only
    #: for a message that holds no nominal data (a compiled check, ~as fast as
    #: ``validator``; nominal.nominal_paths says where, at ~10x the cost)
    nominal_free: Any


class Catalog:
    """All message schemas of a folder, compiled once. Thread-safe to share."""

    def __init__(self, folder: Path = SCHEMA_DIR) -> None:
        self.folder = folder
        self.documents: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.glob("*.schema.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            self.documents[path.name] = doc
        if not self.documents:
            raise FileNotFoundError(f"no *.schema.json files in {folder}")
        registry = jsonschema_rs.Registry([(d["$id"], d) for d in self.documents.values()])
        self._registry = registry
        without = {n: _without_nominal(d) for n, d in self.documents.items()}
        registry_without = jsonschema_rs.Registry([(d["$id"], d) for d in without.values()])
        self.schemas: dict[tuple[str, int], MessageSchema] = {}
        for name, doc in self.documents.items():
            kind, version = doc.get("x-message-type"), doc.get("x-version")
            if kind is None:
                continue  # a definitions file (common.schema.json) or the scenario format
            if not isinstance(kind, str) or not isinstance(version, int):
                raise ValueError(f"{name}: x-message-type must be a string and x-version "
                                 f"an integer")
            validator = jsonschema_rs.validator_for(doc, registry=registry,
                                                    validate_formats=True)
            nominal_free = jsonschema_rs.validator_for(without[name],
                                                       registry=registry_without,
                                                       validate_formats=True)
            self.schemas[(kind, version)] = MessageSchema(kind, version, folder / name, doc,
                                                          validator, nominal_free)
        self.versions: dict[str, list[int]] = {}
        for kind, version in sorted(self.schemas):
            self.versions.setdefault(kind, []).append(version)
        self._expected = _enum_descriptions(self.documents.values())
        self._property_names = _property_names(self.documents.values())

    def document_validator(self, name: str) -> Any:
        """A compiled validator for a schema file that is not a message type (such as
        ``scenario.schema.json``), with every file of the folder resolvable."""
        return jsonschema_rs.validator_for(self.documents[name], registry=self._registry,
                                           validate_formats=True)

    def phrase(self, error: Any) -> list[Problem]:
        """Problems of one jsonschema-rs error, phrased as for messages."""
        return self._phrase(error)

    @property
    def types(self) -> list[str]:
        return sorted(self.versions)

    def schema_for(self, message: Any) -> tuple[MessageSchema | None, list[Problem]]:
        """The schema ``message`` names by its type and version, or the problems that
        stop us from knowing it."""
        if not isinstance(message, dict):
            return None, [Problem("", "type", f"a message is a JSON object, not "
                                  f"{_json_type(message)}")]
        kind, version = message.get("type"), message.get("version")
        problems = []
        if kind is None:
            problems.append(Problem("/type", "required", "missing: every message names its "
                                    f"type, one of {', '.join(self.types)}"))
        elif kind not in self.versions:
            problems.append(Problem("/type", "enum", f"{kind!r} is not a message type; "
                                    f"expected one of {', '.join(self.types)}"))
        if version is None:
            problems.append(Problem("/version", "required",
                                    "missing: every message carries its schema version"))
        elif not isinstance(version, int) or isinstance(version, bool):
            problems.append(Problem("/version", "type", f"{version!r} is not an integer"))
        elif kind in self.versions and version not in self.versions[kind]:
            known = ", ".join(map(str, self.versions[kind]))
            problems.append(Problem("/version", "enum", f"version {version} of {kind} is not "
                                    f"known here (known: {known})"))
        if problems:
            return None, problems
        assert isinstance(kind, str)
        assert isinstance(version, int)
        return self.schemas[(kind, version)], []

    def problems(self, message: Any) -> list[Problem]:
        """Every problem with ``message``; an empty list means it is valid."""
        schema, problems = self.schema_for(message)
        if schema is None:
            return problems
        if schema.validator.is_valid(message):
            return []
        out: list[Problem] = []
        for error in schema.validator.iter_errors(message):
            out.extend(self._phrase(error))
        return sorted(self._without_echoes(out), key=lambda p: (p.path, p.keyword))

    def _without_echoes(self, problems: list[Problem]) -> list[Problem]:
        """Drop "unknown field" problems that only echo another problem: in JSON Schema
        2020-12 a subschema that fails (an envelope missing its id, an item of an unknown
        category) evaluates none of its properties, so ``unevaluatedProperties`` then
        flags every field it defines. A field whose name no schema defines is kept: that
        is a real typo."""
        failed = [p.path for p in problems if p.keyword != "unevaluatedProperties"]
        out = []
        for p in problems:
            if p.keyword == "unevaluatedProperties":
                parent, _, name = p.path.rpartition("/")
                if name in self._property_names and any(
                        f == parent or f.startswith(parent + "/") for f in failed):
                    continue
            out.append(p)
        return out

    def validate(self, message: Any) -> MessageSchema:
        """Check ``message``; returns its schema. Raises SchemaError listing every
        problem."""
        schema, problems = self.schema_for(message)
        if schema is not None and schema.validator.is_valid(message):
            return schema
        problems = problems or self.problems(message)
        kind = message.get("type") if isinstance(message, dict) else None
        label = f"{kind} message" if isinstance(kind, str) else "message"
        raise SchemaError(f"invalid {label}: " + "; ".join(map(str, problems)),
                          problems=problems)

    def _phrase(self, error: Any) -> list[Problem]:
        kind = error.kind
        name = kind.name
        where = pointer(error.instance_path)
        if name == "required":
            return [Problem(f"{where}/{kind.property}", "required",
                            "missing: this field is required here")]
        if name in ("unevaluatedProperties", "additionalProperties"):
            return [Problem(f"{where}/{p}", name, f"unknown field {p!r} (not in the schema "
                            f"here; check its spelling)") for p in kind.unexpected]
        if name == "enum":
            options = list(kind.options)
            expected = self._expected.get(_enum_key(options))
            if expected is None:
                expected = ("one of " + ", ".join(map(_show, options)) if len(options) <= _LONG_ENUM
                            else f"one of {len(options)} listed values")
            return [Problem(where, "enum", f"{_show(error.instance)} is not {expected}")]
        if name == "const":
            return [Problem(where, "const", f"{_show(error.instance)} is not "
                            f"{_show(kind.expected_value)}")]
        if name == "type":
            return [Problem(where, "type", f"{_show(error.instance)} is "
                            f"{_json_type(error.instance)}, expected "
                            f"{error.message.rsplit(' of type ', 1)[-1].replace(chr(34), '')}")]
        return [Problem(where, name, error.message)]


def _without_nominal(node: Any) -> Any:
    """A copy of a schema document with each subschema annotated ``x-nominal: true``
    replaced by the ``false`` schema (nothing there may be present)."""
    if isinstance(node, dict):
        if node.get("x-nominal") is True:
            return False
        return {k: _without_nominal(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_nominal(v) for v in node]
    return node


def _enum_key(options: list[Any]) -> str:
    return json.dumps(options, sort_keys=True)


def subschemas(documents: Any) -> Iterator[dict[str, Any]]:
    """Every object (schema or keyword map) inside the given schema documents."""
    stack = list(documents)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _enum_descriptions(documents: Any) -> dict[str, str]:
    """enum (as JSON) -> its ``x-expected`` text, for long code lists such as countries."""
    return {_enum_key(node["enum"]): node["x-expected"] for node in subschemas(documents)
            if "enum" in node and "x-expected" in node}


def _property_names(documents: Any) -> set[str]:
    """Every property name any schema defines."""
    return {name for node in subschemas(documents)
            if isinstance(node.get("properties"), dict) for name in node["properties"]}


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
