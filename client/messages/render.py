"""Readable renderings of one message: plain text for the terminal, an HTML fragment or a
self-contained HTML page. Each is a headline, a one-line summary for the message type, then
every field labelled with its schema ``title``.

Pure (no I/O) and never validates: a message that fails its schema still renders, labelled
with field names wherever the schema could not be matched. Every string that reaches HTML
goes through ``html.escape``; pages load nothing from outside.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from client.messages.catalog import Catalog, pointer
from client.messages.summary import summarise
from client.messages.values import compact, enum_words, utc_minute

#: Shown in the headline, so left out of the field list.
_HEADLINE_FIELDS = frozenset({"type", "version", "id", "sent_at", "marking"})

_PAGE_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
.opshub-message { border: 1px solid #bbb; border-radius: 6px; padding: 0.6em 1em;
  margin: 1em 0; }
.opshub-message h3 { margin: 0.2em 0; font-size: 1.05em; }
.opshub-summary { margin: 0.3em 0 0.6em; font-style: italic; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; white-space: pre-line; }
ol { margin: 0; padding-left: 1.4em; }
"""


def field_titles(catalog: Catalog, message: Any) -> dict[str, str]:
    """The schema ``title`` of each value of ``message``, by JSON pointer.

    Titles are annotations in JSON Schema 2020-12, so the validator collects them while it
    evaluates the message, following every ``$ref``, ``allOf`` and ``if``/``then`` (the
    seizure report's item categories) on the way. Only titles written on a property count:
    the title of a whole definition reached by ``$ref`` names a type, not the field
    (``refers_to``, ``seizure_ref`` and ``delivery_id`` are all a "message id"), so such a
    field is labelled by its name. Where a property is defined in several places (its
    message type's schema and the envelope), the one with the fewest ``$ref`` hops wins. A
    message whose type or version is unknown gets no titles; an invalid one gets those of
    the parts that were evaluated.
    """
    schema, _ = catalog.schema_for(message)
    if schema is None:
        return {}
    best: dict[str, tuple[tuple[int, int], str]] = {}
    for unit in schema.validator.evaluate(message).list()["details"]:
        notes = unit.get("annotations")
        if not isinstance(notes, dict) or not isinstance(notes.get("title"), str):
            continue
        path: str = unit["evaluationPath"]
        if path.endswith("/$ref"):
            continue  # a definition's own title
        rank = (path.count("/$ref"), path.count("/"))
        where: str = unit["instanceLocation"]
        if where not in best or rank < best[where][0]:
            best[where] = (rank, notes["title"])
    return {where: title for where, (_, title) in best.items()}


def render_text(catalog: Catalog, message: Mapping[str, Any]) -> str:
    """The message as plain text: headline, summary, then indented "Label: value" lines."""
    view = _View.of(catalog, message)
    lines = [headline(message)]
    summary = summarise(message, view.words)
    if summary:
        lines.append(summary)
    lines.extend("  " + line for line in view.text_block(message, ""))
    return "\n".join(lines) + "\n"


def render_html(catalog: Catalog, message: Mapping[str, Any]) -> str:
    """The message as an HTML fragment: a ``<section>`` with headline, summary and fields."""
    view = _View.of(catalog, message)
    kind = str(message.get("type", "message"))
    summary = summarise(message, view.words)
    parts = [f'<section class="opshub-message opshub-{_esc(kind)}">',
             f"<h3>{_esc(headline(message))}</h3>"]
    if summary:
        parts.append(f'<p class="opshub-summary">{_esc(summary)}</p>')
    parts.append(view.html_block(message, ""))
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def html_page(catalog: Catalog, messages: Iterable[Mapping[str, Any]], title: str) -> str:
    """A self-contained HTML page (inline style, no scripts or external resources) with one
    fragment per message."""
    body = "".join(render_html(catalog, m) for m in messages)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_esc(title)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{_esc(title)}</h1>\n{body}</body>\n</html>\n")


def headline(message: Mapping[str, Any]) -> str:
    """"SEIZURE REPORT SR-1 · Dominica Customs (DM) · 2025-09-27 14:10 UTC · TLP:AMBER"
    (then "· nominal" when the message holds personal data)."""
    kind = str(message.get("type", "message")).replace("_", " ").upper()
    parts = [f"{kind} {message.get('id', '(no id)')}"]
    sender = message.get("sender")
    if isinstance(sender, Mapping):
        name = sender.get("name") or sender.get("unit") or "(unknown sender)"
        country = sender.get("country")
        parts.append(f"{name} ({country})" if country else str(name))
    if "sent_at" in message:
        parts.append(utc_minute(message["sent_at"]))
    marking = message.get("marking")
    if isinstance(marking, Mapping):
        if "tlp" in marking:
            parts.append(f"TLP:{marking['tlp']}")
        if marking.get("nominal") is True:
            parts.append("nominal")
    return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class _View:
    """What rendering one message needs from the catalog: titles by pointer and the enum
    values to show with spaces."""

    titles: dict[str, str]
    words: frozenset[str]

    @classmethod
    def of(cls, catalog: Catalog, message: Mapping[str, Any]) -> _View:
        return cls(field_titles(catalog, message), enum_words(catalog))

    def label(self, where: str, name: str) -> str:
        title = self.titles.get(where) or name.replace("_", " ")
        return title[:1].upper() + title[1:]

    def fields(self, obj: Mapping[str, Any], where: str) -> Iterable[tuple[str, str, Any]]:
        for key, value in obj.items():
            if where == "" and key in _HEADLINE_FIELDS:
                continue
            path = where + pointer([key])
            yield path, self.label(path, str(key)), value

    def text_block(self, value: Any, where: str) -> list[str]:
        """Lines (unindented) for an object's fields or a list's numbered elements."""
        lines: list[str] = []
        if isinstance(value, Mapping):
            for path, label, item in self.fields(value, where):
                one_line = compact(item, self.words)
                if one_line is not None:
                    first, *more = one_line.splitlines() or [""]
                    lines.append(f"{label}: {first}")
                    lines.extend("  " + line for line in more)
                else:
                    lines.append(f"{label}:")
                    lines.extend("  " + line for line in self.text_block(item, path))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                mark = f"{i + 1}. "
                one_line = compact(item, self.words)
                sub = one_line.splitlines() if one_line is not None else self.text_block(
                    item, f"{where}/{i}")
                lines.extend((mark if n == 0 else " " * len(mark)) + line
                             for n, line in enumerate(sub or ["-"]))
        return lines

    def html_block(self, value: Any, where: str) -> str:
        """A ``<dl>`` for an object, an ``<ol>`` for a list that needs blocks, or one
        escaped line."""
        one_line = compact(value, self.words)
        if one_line is not None and where:
            return _esc(one_line)
        if isinstance(value, list):
            items = "".join(f"<li>{self.html_block(item, f'{where}/{i}')}</li>"
                            for i, item in enumerate(value))
            return f"<ol>{items}</ol>"
        rows = "".join(f"<dt>{_esc(label)}</dt><dd>{self.html_block(item, path)}</dd>\n"
                       for path, label, item in self.fields(value, where))
        return f"<dl>\n{rows}</dl>"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
