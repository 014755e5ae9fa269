"""The fields a schema defines, flattened into rows (JSON path, type, required, description,
allowed values, source, nominal) and rules, for the reference documentation.

Follows ``$ref`` (within and across files) and merges ``allOf``. An ``if``/``then`` whose
``then`` adds fields becomes a variant with fields of its own (the seizure report's item
categories); one that only tightens existing fields becomes a rule ("when `phase` is
`proposed`: `consignment` is required"). Pure: works on parsed schema documents, reads no
files. Texts use Markdown code spans for paths and values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Enumerations longer than this are summarised by their ``x-expected`` text.
LONG_ENUM = 12
#: Keywords that give a schema its shape; every other keyword is a note on the field.
_STRUCTURE = frozenset({"$ref", "properties", "required", "items", "allOf", "oneOf", "anyOf",
                        "if", "then", "else", "contains", "$defs", "$schema", "$id",
                        "unevaluatedProperties", "additionalProperties"})
_BOUNDS = (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"),
           ("exclusiveMaximum", "<"), ("minLength", "length >="), ("maxLength", "length <="),
           ("minItems", "items >="), ("maxItems", "items <="))


@dataclass(frozen=True, slots=True)
class Field:
    """One row of a field table."""

    path: str  # "event.where.country"; array elements as "items[].quantity.value"
    type: str
    required: bool
    description: str
    allowed: str
    source: str
    nominal: bool


@dataclass(frozen=True, slots=True)
class Variant:
    """Fields that apply only under a condition (one category of seized item)."""

    path: str  # the object they belong to, "items[]"; "" for the message itself
    condition: str  # "`category` is `drug`"
    fields: tuple[Field, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """The fields of one schema, its rules and variants, and what it inherits."""

    fields: tuple[Field, ...]
    rules: tuple[str, ...]
    variants: tuple[Variant, ...]
    inherited: tuple[str, ...]  # names from an allOf $ref (the envelope), not in fields
    source: str  # the schema's own x-source, for the whole message or definition


@dataclass(slots=True)
class _Flat:
    """A schema with its $ref and allOf merged in."""

    notes: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, list[tuple[Any, str]]] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)
    items: tuple[Any, str] | None = None
    conditionals: list[tuple[Any, Any, str]] = field(default_factory=list)  # if, then, doc
    alternatives: list[tuple[str, list[_Flat]]] = field(default_factory=list)
    contains: list[tuple[Any, str]] = field(default_factory=list)
    inherited: set[str] = field(default_factory=set)
    definition: str = ""


@dataclass(slots=True)
class _Sink:
    fields: list[Field] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


class SchemaWalker:
    """Flattens the schemas of one catalog (documents by file name)."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        self.documents = documents

    def table(self, schema: Any, doc: str, *, own_only: bool = False) -> Table:
        """The fields of ``schema`` (in file ``doc``); with ``own_only``, properties that
        come from an ``allOf`` ``$ref`` (the envelope) are left out and named instead."""
        flat = self._flatten(schema, doc, ())
        skip = flat.inherited if own_only else set()
        sink, variants = _Sink(), list[Variant]()
        self._rows(flat, "", False, sink, variants, skip)
        return Table(tuple(sink.fields), tuple(sink.rules), tuple(variants),
                     tuple(sorted(skip)), _source(flat))

    def resolve(self, ref: str, doc: str) -> tuple[Any, str, str]:
        """The schema a ``$ref`` names, the file it is in, and its definition name ("" when
        it is not directly under ``$defs``). Raises KeyError for a reference to nothing."""
        file, _, fragment = ref.partition("#")
        file = file.rsplit("/", 1)[-1] or doc
        node: Any = self.documents[file]
        parts = [p.replace("~1", "/").replace("~0", "~") for p in fragment.split("/")[1:]]
        for part in parts:
            node = node[int(part)] if isinstance(node, list) else node[part]
        name = parts[1] if len(parts) == 2 and parts[0] == "$defs" else ""
        return node, file, name

    def _flatten(self, schema: Any, doc: str, seen: tuple[str, ...]) -> _Flat:
        flat = _Flat()
        if not isinstance(schema, Mapping):
            return flat
        if isinstance(schema.get("$ref"), str):
            target, file, name = self.resolve(schema["$ref"], doc)
            key = f"{file}#{schema['$ref'].partition('#')[2]}"
            if key not in seen:
                flat = self._flatten(target, file, (*seen, key))
                if name and "x-message-type" not in self.documents[file]:
                    flat.definition = name  # a shared definition, documented on its own
        flat.notes.update((k, v) for k, v in schema.items() if k not in _STRUCTURE)
        for name, sub in schema.get("properties", {}).items():
            flat.properties.setdefault(name, []).insert(0, (sub, doc))
        flat.required.update(schema.get("required", []))
        if "items" in schema:
            flat.items = (schema["items"], doc)
        if "if" in schema and "then" in schema:
            flat.conditionals.append((schema["if"], schema["then"], doc))
        if "contains" in schema:
            flat.contains.append((schema["contains"], doc))
        for entry in schema.get("allOf", []):
            part = self._flatten(entry, doc, seen)
            for name, subs in part.properties.items():
                flat.properties.setdefault(name, []).extend(subs)
                if "$ref" in entry and name not in schema.get("properties", {}):
                    flat.inherited.add(name)
            flat.required |= part.required
            flat.items = flat.items or part.items
            flat.conditionals.extend(part.conditionals)
            flat.alternatives.extend(part.alternatives)
            flat.contains.extend(part.contains)
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                flat.alternatives.append(
                    (keyword, [self._flatten(e, doc, seen) for e in schema[keyword]]))
        return flat

    def _merged(self, subs: list[tuple[Any, str]]) -> _Flat:
        """The view of a property defined in several places (its own schema first, then
        the envelope's or the parent's): the first to say something wins."""
        parts = [self._flatten(s, d, ()) for s, d in subs]
        out = parts[0]
        for part in parts[1:]:
            for k, v in part.notes.items():
                out.notes.setdefault(k, v)
            for name, more in part.properties.items():
                out.properties.setdefault(name, []).extend(more)
            out.required |= part.required
            out.items = out.items or part.items
            out.conditionals.extend(part.conditionals)
            out.alternatives.extend(part.alternatives)
            out.contains.extend(part.contains)
            out.definition = out.definition or part.definition
        return out

    def _rows(self, flat: _Flat, prefix: str, nominal: bool, sink: _Sink,
              variants: list[Variant], skip: set[str],
              parent: dict[str, list[tuple[Any, str]]] | None = None) -> None:
        """Rows for ``flat``'s properties (and what is under them) into ``sink``; in a
        variant, ``parent`` holds the properties the main table already expanded."""
        for name, subs in flat.properties.items():
            if name in skip:
                continue
            sub = self._merged(subs + (parent or {}).get(name, []))
            path = prefix + name
            flag = sub.notes.get("x-nominal")
            nom = flag if isinstance(flag, bool) else nominal
            sink.fields.append(Field(path, self._type(sub), name in flat.required,
                                     _description(sub.notes), self._allowed(sub, path),
                                     _source(sub), nom))
            if parent is None or name not in parent:
                self._descend(sub, path, nom, sink, variants)
        for keyword, options in flat.alternatives:
            names = [n for o in options if not o.properties for n in sorted(o.required)]
            if names and all(not o.properties and o.required for o in options):
                which = "at least one" if keyword == "anyOf" else "exactly one"
                sink.rules.append(f"{which} of {_codes(prefix + n for n in names)} is present")
        for if_schema, then_schema, doc in flat.conditionals:
            condition = self._condition(if_schema, prefix) or f"`{_literal(if_schema)}` holds"
            then = self._flatten(then_schema, doc, ())
            if set(then.properties) - set(flat.properties):
                own = _Sink()
                option_nominal = then.notes.get("x-nominal")
                self._rows(then, prefix, option_nominal is True or nominal, own, variants,
                           set(), flat.properties)
                variants.append(Variant(prefix.removesuffix("."),
                                        self._condition(if_schema, "") or condition,
                                        tuple(own.fields), tuple(own.rules)))
            else:
                effects = self._effects(then, prefix)
                if effects:
                    sink.rules.append(f"when {condition}: {'; '.join(effects)}")

    def _descend(self, sub: _Flat, path: str, nominal: bool, sink: _Sink,
                 variants: list[Variant]) -> None:
        if sub.properties or sub.conditionals:
            self._rows(sub, path + ".", nominal, sink, variants, set())
        elif sub.items is not None:
            item = self._flatten(*sub.items, ())
            flag = item.notes.get("x-nominal")
            self._descend(item, path + "[]", flag if isinstance(flag, bool) else nominal,
                          sink, variants)

    def _condition(self, schema: Any, prefix: str) -> str:
        """An ``if`` as text: "`category` is `drug`", "`serial_number` is present"."""
        if not isinstance(schema, Mapping):
            return ""
        parts: list[str] = []
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            path = prefix + name
            if "const" in sub:
                parts.append(f"`{path}` is `{_literal(sub['const'])}`")
            elif isinstance(sub.get("enum"), list):
                parts.append(f"`{path}` is " + " or ".join(
                    f"`{_literal(v)}`" for v in sub["enum"]))
            elif "properties" in sub:
                parts.append(self._condition(sub, path + "."))
        parts.extend(f"`{prefix}{name}` is present" for name in schema.get("required", [])
                     if name not in properties)
        return " and ".join(p for p in parts if p)

    def _effects(self, flat: _Flat, prefix: str) -> list[str]:
        """What a ``then`` demands: "`revision` is required", "`revision` >= 2"."""
        out = [f"`{prefix}{name}` is required" for name in sorted(flat.required)]
        for name, subs in flat.properties.items():
            sub = self._merged(subs)
            allowed = self._allowed(sub, prefix + name)
            if allowed:
                out.append(f"`{prefix}{name}` {allowed}")
            out.extend(self._effects(sub, f"{prefix}{name}."))
        return out

    def _type(self, flat: _Flat) -> str:
        notes = flat.notes
        kind = notes.get("type")
        if "const" in notes:
            text = "const"
        elif "enum" in notes:
            text = "code"
        elif isinstance(kind, list):
            text = " or ".join(kind)
        elif kind == "array" and flat.items is not None:
            text = "array of " + self._type(self._flatten(*flat.items, ()))
        elif isinstance(kind, str):
            text = kind
        elif flat.properties:
            text = "object"
        elif flat.alternatives and any(o.notes or o.definition
                                       for o in flat.alternatives[0][1]):
            return " or ".join(self._type(o) for o in flat.alternatives[0][1])
        else:
            text = "any"
        if "format" in notes:
            text += f" ({notes['format']})"
        if flat.definition and kind != "array":
            text += f" ([{flat.definition}](#{flat.definition}))"
        return text

    def _allowed(self, flat: _Flat, path: str) -> str:
        notes = flat.notes
        out: list[str] = []
        if "const" in notes:
            out.append(f"always `{_literal(notes['const'])}`")
        options = notes.get("enum")
        if isinstance(options, list):
            if len(options) > LONG_ENUM:
                out.append(notes.get("x-expected") or f"one of {len(options)} values")
            else:
                out.append("one of " + ", ".join(f"`{_literal(v)}`" for v in options))
        if "pattern" in notes:
            out.append(f"pattern `{notes['pattern']}`")
        bounds = [f"{word} {notes[key]}" for key, word in _BOUNDS if key in notes]
        if bounds:
            out.append(", ".join(bounds))
        for schema, _ in flat.contains:
            condition = self._condition(schema, "")
            out.append(f"must hold an element where {condition}" if condition
                       else f"must hold an element matching `{_literal(schema)}`")
        if "default" in notes:
            out.append(f"default `{_literal(notes['default'])}`")
        return "; ".join(out)


def _description(notes: Mapping[str, Any]) -> str:
    """"Title. description" (the description as written: it may start with a code)."""
    title = str(notes.get("title") or "")
    title = title[:1].upper() + title[1:]
    description = str(notes.get("description") or "")
    if title and description:
        return f"{title}. {description}"
    return title or description


def _source(flat: _Flat) -> str:
    source = flat.notes.get("x-source", "")
    return "; ".join(map(str, source)) if isinstance(source, list) else str(source)


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _codes(names: Any) -> str:
    return ", ".join(f"`{n}`" for n in names)
