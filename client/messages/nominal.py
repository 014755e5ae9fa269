"""Nominal (personal) data: where a message holds it, and a copy without it.

The schemas mark personal data with the ``x-nominal`` annotation, on a field or on a
whole definition (``person``, a seizure item of category person). Validation collects
annotations per instance location, so the schema stays the one place that says what is
personal: nothing here lists field names. Pure functions; the message must be valid.
"""

from __future__ import annotations

import copy
from typing import Any

from client.messages.catalog import Catalog
from protocol.errors import SchemaError


def nominal_paths(catalog: Catalog, message: dict[str, Any]) -> list[str]:
    """JSON pointers of every part of ``message`` marked ``x-nominal``, outermost
    first; a part inside another nominal part is not listed. Raises SchemaError if the
    message is not valid (an invalid message yields no annotations to trust)."""
    schema = catalog.validate(message)
    found = set()
    for unit in schema.validator.evaluate(message).annotations():
        notes = unit.get("annotations")
        if isinstance(notes, dict) and notes.get("x-nominal") is True:
            found.add(unit["instanceLocation"])
    out: list[str] = []
    for path in sorted(found, key=lambda p: (p.count("/"), p)):
        if not any(path == q or path.startswith(q + "/") for q in out):
            out.append(path)
    return out


def strip_nominal(catalog: Catalog, message: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``message`` without its nominal parts, and the pointers removed.

    An object field marked nominal is dropped; an array element marked nominal (a person
    in a list, a seizure item of category person) is removed from its array. The copy's
    ``marking.nominal`` is false; the caller shows how many parts were withheld. Raises
    SchemaError if the message is not valid."""
    paths = nominal_paths(catalog, message)
    out = copy.deepcopy(message)
    # deepest first, and within one array from the highest index down, so that removing
    # one part never shifts the pointer of another
    for path in sorted(paths, key=_removal_order, reverse=True):
        if path == "":
            raise SchemaError("the whole message is nominal data; nothing is left to share")
        parent, key = _resolve_parent(out, path)
        if isinstance(parent, list):
            del parent[int(key)]
        else:
            del parent[key]
    if paths:
        out["marking"] = {**out["marking"], "nominal": False}
    return out, paths


def _removal_order(path: str) -> tuple[int, list[Any]]:
    parts = _unescape(path)
    return len(parts), [int(p) if p.isdigit() else p for p in parts]


def _unescape(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _resolve_parent(doc: Any, path: str) -> tuple[Any, str]:
    parts = _unescape(path)
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node, parts[-1]
