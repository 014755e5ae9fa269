"""Message forms: a message type's JSON Schema described as the fields a person fills in
(one per value, each with its JSON pointer, label, help and kind of control), for the seat
page to render (static/forms.js).

Pure: reads the catalog's parsed schemas through ``SchemaWalker``, which follows ``$ref``
and merges ``allOf``; no I/O. A description decides which control holds a value, never
whether the value is right: that stays with the checks ``SecureAgent.send`` runs, which the
page shows next to the field whose pointer a problem names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from client.messages.catalog import Catalog, pointer
from client.messages.fields import SchemaWalker
from protocol.errors import UsageError

if TYPE_CHECKING:
    from client.messages.fields import _Flat

#: Envelope fields the exercise runtime fills in when a seat's message goes (its
#: ``ENVELOPE`` takes this set): no control. ``marking`` is the writer's choice, so it stays.
FILLED_IN = frozenset({"id", "operation", "sender", "sent_at", "version", "language"})
#: An array of codes with at most this many options is a set of checkboxes; a longer one
#: (countries) is typed, one code per line.
CHECKBOXES = 24
#: A string allowed more characters than this gets a box of several lines.
SHORT_TEXT = 200
#: Objects nested deeper than this are edited as JSON (a guard for recursive schemas).
MAX_DEPTH = 8
#: The element of an array in a field's pointer: "/items/-/quantity/value" is the
#: quantity of each item. RFC 6901 reads "-" as the element after the last, a new one.
EACH = "-"
_PLACEHOLDERS = {"date-time": "YYYY-MM-DDThh:mm:ssZ", "date": "YYYY-MM-DD"}


class Kind(StrEnum):
    """What a person types a value into; the page picks the control."""

    TEXT = "text"
    LONG_TEXT = "long_text"
    NUMBER = "number"
    INTEGER = "integer"
    DATE_TIME = "date_time"
    DATE = "date"
    ENUM = "enum"  # one of ``options``: a select
    BOOLEAN = "boolean"  # yes, no, or (when optional) not given
    STRINGS = "strings"  # an array of strings (or of many codes), one per line
    CHOICES = "choices"  # an array of a few codes: checkboxes
    GROUP = "group"  # an object: its fields together
    LIST = "list"  # an array of objects: a group repeated, with add and remove
    CONST = "const"  # fixed by the schema: no control, always ``value``
    JSON = "json"  # nothing simpler fits (an alternative of shapes): JSON text


@dataclass(frozen=True, slots=True, kw_only=True)
class FormField:
    """One value of the message, or a group of them."""

    name: str
    pointer: str  # from the message's root; EACH stands for an array's element
    label: str  # the schema's title
    help: str  # the schema's description
    kind: Kind
    required: bool  # within the object that holds it
    nominal: bool = False  # personal data (x-nominal)
    options: tuple[Any, ...] = ()  # ENUM, CHOICES, and the codes STRINGS accepts
    default: Any = None
    value: Any = None  # CONST
    placeholder: str = ""
    item_label: str = ""  # LIST: what one element is called ("Seized item")
    fields: tuple[FormField, ...] = ()  # GROUP, LIST (of each element)
    variants: tuple[Variants, ...] = ()  # GROUP, LIST

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "pointer": self.pointer,
                               "label": self.label, "help": self.help,
                               "kind": self.kind.value, "required": self.required}
        if self.nominal:
            out["nominal"] = True
        if self.kind in (Kind.ENUM, Kind.CHOICES) or self.options:
            out["options"] = list(self.options)
        if self.default is not None:
            out["default"] = self.default
        if self.kind is Kind.CONST:
            out["value"] = self.value
        if self.placeholder:
            out["placeholder"] = self.placeholder
        if self.kind is Kind.LIST:
            out["item_label"] = self.item_label
        if self.kind in (Kind.GROUP, Kind.LIST):
            out["fields"] = [f.to_json() for f in self.fields]
            out["variants"] = [v.to_json() for v in self.variants]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """What one value of the key adds: fields of their own, and fields of the object
    that become required (a drug item's substance; its quantity)."""

    values: tuple[Any, ...]
    label: str
    fields: tuple[FormField, ...]
    requires: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"values": list(self.values), "label": self.label,
                "fields": [f.to_json() for f in self.fields], "requires": list(self.requires)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Variants:
    """The schema's ``if``/``then`` branches on one field of an object (``category``)."""

    key: str
    cases: tuple[Case, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "cases": [c.to_json() for c in self.cases]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Form:
    """The form of one message type at one version."""

    type: str
    version: int
    title: str
    help: str
    const: dict[str, Any]  # set on every message ("type"), no control
    fields: tuple[FormField, ...]
    variants: tuple[Variants, ...]
    rules: tuple[str, ...]  # the schema's other conditions, as SchemaWalker words them

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "version": self.version, "title": self.title,
                "help": self.help, "const": dict(self.const),
                "fields": [f.to_json() for f in self.fields],
                "variants": [v.to_json() for v in self.variants], "rules": list(self.rules)}


def form(catalog: Catalog, message_type: str) -> dict[str, Any]:
    """The form description (JSON) of ``message_type`` at its latest version. Raises
    UsageError for a type the catalog does not know."""
    return describe(catalog, message_type).to_json()


def describe(catalog: Catalog, message_type: str) -> Form:
    """The form of ``message_type`` at its latest version. Raises UsageError for a type
    the catalog does not know."""
    versions = catalog.versions.get(message_type)
    if not versions:
        raise UsageError(f"no message type {message_type!r}; known: "
                         f"{', '.join(catalog.types)}")
    schema = catalog.schemas[(message_type, versions[-1])]
    walker = SchemaWalker(catalog.documents)
    root = walker._flatten(schema.schema, schema.file.name, ())
    build = _Builder(walker)
    const: dict[str, Any] = {}
    skip = set(FILLED_IN)
    for name, subs in root.properties.items():
        notes = walker._merged(subs).notes
        if name not in FILLED_IN and "const" in notes:
            const[name] = notes["const"]
            skip.add(name)
    table = walker.table(schema.schema, schema.file.name, own_only=True)
    return Form(type=message_type, version=schema.version,
                title=str(root.notes.get("title") or message_type),
                help=str(root.notes.get("description") or ""), const=const,
                fields=build.fields(root, "", False, 0, skip),
                variants=build.variants(root, "", False, 0), rules=table.rules)


class _Builder:
    """Fields from the walker's flattened schemas (their $ref and allOf merged in).

    It reads SchemaWalker's ``_flatten`` and ``_merged``, the view the reference tables
    are built from, so that forms and docs/schemas.md follow the schemas the same way;
    a table's flat rows lose what a form needs (titles, enum values, the variants' keys).
    """

    def __init__(self, walker: SchemaWalker) -> None:
        self.walker = walker

    def fields(self, flat: _Flat, at: str, nominal: bool, depth: int,
               skip: set[str] | None = None) -> tuple[FormField, ...]:
        return tuple(self.field(name, subs, at, name in flat.required, nominal, depth)
                     for name, subs in flat.properties.items() if name not in (skip or ()))

    def field(self, name: str, subs: list[tuple[Any, str]], at: str, required: bool,
              nominal: bool, depth: int) -> FormField:
        """The field of property ``name``, defined by ``subs`` (its own schema first)."""
        sub = self.walker._merged(subs)
        notes = sub.notes
        nom = _nominal(notes, nominal)
        here = at + pointer([name])
        # the label is the property's own title, else its name: a referenced definition's
        # title is too general ("date" for date_of_birth)
        own = subs[0][0] if isinstance(subs[0][0], Mapping) else {}
        common: dict[str, Any] = {"name": name, "pointer": here, "label": _label(own, name),
                                  "help": str(notes.get("description") or ""),
                                  "required": required, "nominal": nom}
        if "default" in notes:
            common["default"] = notes["default"]
        kind = notes.get("type")
        if "const" in notes:
            return FormField(kind=Kind.CONST, value=notes["const"], **common)
        if isinstance(notes.get("enum"), list):
            return FormField(kind=Kind.ENUM, options=tuple(notes["enum"]), **common)
        if kind in ("boolean", "integer", "number"):
            return FormField(kind=Kind(kind), **common)
        if kind == "string":
            return FormField(kind=_string_kind(notes),
                             placeholder=_PLACEHOLDERS.get(str(notes.get("format")), ""),
                             **common)
        if depth < MAX_DEPTH and kind == "array" and sub.items is not None:
            return self._array(sub, common, depth)
        if depth < MAX_DEPTH and (kind == "object" or sub.properties):
            return FormField(kind=Kind.GROUP, fields=self.fields(sub, here, nom, depth + 1),
                             variants=self.variants(sub, here, nom, depth + 1), **common)
        return FormField(kind=Kind.JSON, **common)

    def _array(self, sub: _Flat, common: dict[str, Any], depth: int) -> FormField:
        assert sub.items is not None
        item = self.walker._flatten(*sub.items, ())
        nom = _nominal(item.notes, common["nominal"])
        each = common["pointer"] + "/" + EACH
        if item.properties:
            return FormField(kind=Kind.LIST, item_label=_label(item.notes, common["label"]),
                             fields=self.fields(item, each, nom, depth + 1),
                             variants=self.variants(item, each, nom, depth + 1), **common)
        options = item.notes.get("enum")
        if isinstance(options, list):
            kind = Kind.CHOICES if len(options) <= CHECKBOXES else Kind.STRINGS
            return FormField(kind=kind, options=tuple(options), **common)
        if item.notes.get("type") in ("string", None):  # None: a string of alternatives
            return FormField(kind=Kind.STRINGS, **common)
        return FormField(kind=Kind.JSON, **common)

    def variants(self, flat: _Flat, at: str, nominal: bool,
                 depth: int) -> tuple[Variants, ...]:
        """Cases of each ``if``/``then`` that branches on one field's value and adds
        fields or requires some; other conditions stay rules (Form.rules)."""
        cases: dict[str, list[Case]] = {}
        for if_schema, then_schema, doc in flat.conditionals:
            found = _discriminator(if_schema)
            if found is None or found[0] not in flat.properties:
                continue
            key, values = found
            then = self.walker._flatten(then_schema, doc, ())
            nom = _nominal(then.notes, nominal)
            own = [(n, s) for n, s in then.properties.items() if n not in flat.properties]
            requires = tuple(n for n in sorted(then.required) if n in flat.properties)
            if not own and not requires:
                continue
            label = _label(then.notes, " or ".join(map(str, values)))
            fields = tuple(self.field(n, s, at, n in then.required, nom, depth)
                           for n, s in own)
            cases.setdefault(key, []).append(
                Case(values=values, label=label, fields=fields, requires=requires))
        return tuple(Variants(key=k, cases=tuple(c)) for k, c in cases.items())


def _discriminator(schema: Any) -> tuple[str, tuple[Any, ...]] | None:
    """``(key, values)`` for an ``if`` that holds when one required field has one of some
    values (``category`` is ``drug``); None for any other condition."""
    if not isinstance(schema, Mapping):
        return None
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or len(properties) != 1:
        return None
    [(key, condition)] = properties.items()
    # without "required", the if also holds when the key is absent: not a branch on it
    if key not in schema.get("required", ()) or not isinstance(condition, Mapping):
        return None
    if "const" in condition:
        return key, (condition["const"],)
    if isinstance(condition.get("enum"), list):
        return key, tuple(condition["enum"])
    return None


def _string_kind(notes: Mapping[str, Any]) -> Kind:
    if notes.get("format") == "date-time":
        return Kind.DATE_TIME
    if notes.get("format") == "date":
        return Kind.DATE
    longest = notes.get("maxLength")
    return Kind.LONG_TEXT if isinstance(longest, int) and longest > SHORT_TEXT else Kind.TEXT


def _nominal(notes: Mapping[str, Any], inherited: bool) -> bool:
    flag = notes.get("x-nominal")
    return flag if isinstance(flag, bool) else inherited


def _label(notes: Mapping[str, Any], fallback: str) -> str:
    """The schema's title, or the name, as a person reads it: "Action taken" (but
    "iARMS check" keeps its case)."""
    title = str(notes.get("title") or fallback.replace("_", " "))
    first = title.split(" ", 1)[0]
    return title[:1].upper() + title[1:] if first.islower() else title
