"""docs/schemas.md, the field reference, generated from the schema files so it cannot drift
from them: ``generate`` builds the Markdown, ``write`` saves it, ``check`` says whether the
saved file is current.

``generate`` is pure and deterministic (same schemas, same bytes); only ``write`` and
``check`` touch the file system. Edit the schemas or the prose below, never the output.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from client.messages.catalog import Catalog
from client.messages.fields import Field, SchemaWalker, Table

#: Where the generated reference lives.
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "schemas.md"
#: The definitions file, documented before the message types.
COMMON = "common.schema.json"

PREAMBLE = """\
# Message schemas

<!-- Generated from schemas/*.schema.json by `opshub schemas docs`; do not edit by hand:
     change the schemas (or the prose in client/messages/docgen.py) and regenerate. -->

What units, liaison desks and the operation's coordination unit (OCU) exchange inside an
operation's encrypted channel is JSON, and each kind of message is defined by a JSON Schema
2020-12 file in `schemas/`. The schemas are the source of truth: any language with a 2020-12
validator can check a message against them, and this page is generated from them. Messages
are validated before they are encrypted and again after they are decrypted; to check files
by hand, run `opshub validate FILE...`, which prints every problem with the JSON path of the
offending value.

Conventions, in short: a message names its `type` and the `version` of that type's schema,
and carries the envelope fields (`id`, `operation`, `sender`, `sent_at`, `marking`) defined
once in `common.schema.json`; unknown fields are errors, not silently ignored; names are
`snake_case` and enumerated values lower-case `snake_case`, except codes with an upper-case
standard form (countries, currencies, TLP, UN/LOCODE, IATA); a message that answers another
names it in `refers_to`; personal data is annotated `x-nominal` and must be declared in
`marking.nominal`; `x-source` says which standard or form a field corresponds to. The full
conventions are in [schemas/README.md](../schemas/README.md).

In the tables, a field's path uses dots for nested objects and `[]` for the elements of a
list (`items[].quantity.value`); fields marked **nominal** hold personal data and are
removed before a message is aggregated for readers not entitled to see it.
"""

#: (heading, pattern matched against each part of an ``x-source`` text, what the source
#: is). A part goes to the first source it matches.
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("WCO CEN seizure templates", r"\bcen(comm)?\b", """\
The World Customs Organization's Customs Enforcement Network (CEN) is the database where
customs administrations record seizures and offences, and CENcomm is its closed-group
messaging tool for joint operations, with templates for warnings, feedback and seizures.
CEN describes a case as an event (when, where, what kind of place, direction, how it was
detected, how the goods were hidden), the conveyance and route, the commodities seized with
their quantities, and the people involved. The seizure report keeps that breakdown so a
report can be entered into CEN afterwards."""),
    ("UNODC individual drug seizures", r"\bunodc\b|\bids\b", """\
The United Nations Office on Drugs and Crime collects individual drug seizures (IDS) from
member states next to its annual questionnaire: for each seizure, the drug and its form, the
amount and unit, when and where it was seized, the mode of transport and the countries of
origin, transit and destination. Drug items and routes use the same split so a seizure can
be reported onward without re-keying."""),
    ("INTERPOL iARMS", r"\biarms\b", """\
INTERPOL's Illicit Arms Records and tracing Management System holds records of lost, stolen,
trafficked and smuggled firearms and carries trace requests between countries. A firearm is
identified by make, model, calibre, serial number and markings, and traced through its
country of manufacture and its last legal import. In opshub's model a hit on an iARMS record
notifies the INTERPOL General Secretariat, the WCO and the NCB of the country that recorded
the firearm, which is what the hit notification carries."""),
    ("NIEM", r"\bniem\b", """\
The US National Information Exchange Model is a shared vocabulary for exchanging records
between agencies: `nc:` is its core (people, places, items, documents) and `j:` its justice
domain (incidents, arrests, charges). Where a field matches a NIEM element the annotation
names it, which eases mapping onto NIEM-based systems."""),
    ("UN/ECE Recommendation 19", r"un/?ece", """\
UN/ECE Recommendation 19 codes the mode of transport with one digit, from 0 (not known)
through maritime, rail, road, air, mail, multimodal, fixed installation and inland water to
9 (not applicable). The schemas spell the modes as words (`maritime`, `air`) and give the
digit in the description of [transport_mode](#transport_mode)."""),
    ("ISO 3166-1, ISO 4217, ISO 639-1", r"\biso\b", """\
Countries are ISO 3166-1 alpha-2 codes (`DM`, `BQ`), currencies ISO 4217 alphabetic codes
(`XCD`, `USD`) and the language of free text an ISO 639-1 code (`en`, `fr`): the
definitions [country](#country), [currency](#currency) and [language](#language), used
wherever such a code appears. The country and currency lists are written out, so a mistyped
code fails validation instead of reaching a partner."""),
    ("TLP 2.0", r"\btlp\b", """\
FIRST's Traffic Light Protocol 2.0 tells recipients how far they may pass information on:
CLEAR (no limit), GREEN (within their community), AMBER (their organisation and its clients,
on a need-to-know basis), AMBER+STRICT (their organisation only) and RED (the named
recipients only). Every message carries its level in `marking.tlp`, next to the
`marking.nominal` flag (see [marking](#marking))."""),
    ("WCO Harmonized System", r"harmoni[sz]ed system|\bhs\b", """\
The WCO's Harmonized System classifies traded goods by a six-digit code that countries
extend to eight or ten digits in their tariffs; it lets a seized item be matched against
the declaration it travelled under."""),
    ("CITES", r"\bcites\b", """\
The Convention on International Trade in Endangered Species lists protected animals and
plants in three appendices by the level of protection; wildlife items name the species by
its scientific name and the appendix it is listed in."""),
    ("Basel Convention", r"\bbasel\b", """\
The Basel Convention controls cross-border movements of hazardous and other wastes; its
annexes give each kind of waste a code (Y, A or B followed by digits), which waste items
carry."""),
)

_HEADER = ("| field | type | required | description / allowed values | source |\n"
           "|---|---|---|---|---|")


def generate(catalog: Catalog) -> str:
    """The Markdown reference for every schema of ``catalog``."""
    walker = SchemaWalker(catalog.documents)
    sections: list[tuple[str, Table]] = []  # (section name, table) for the sources index
    out = [PREAMBLE, _contents(catalog)]
    common = catalog.documents.get(COMMON)
    if common is not None:
        out.append(f"## Common definitions\n\n{common.get('description', '')}\n"
                   f"File: `schemas/{COMMON}`.")
        for name, definition in common.get("$defs", {}).items():
            table = walker.table(definition, COMMON)
            sections.append((name, table))
            out.append(_definition(name, definition, table, walker))
    out.append("## Message types")
    for kind in catalog.types:
        for version in catalog.versions[kind]:
            schema = catalog.schemas[(kind, version)]
            table = walker.table(schema.schema, schema.file.name, own_only=True)
            sections.append((kind, table))
            out.append(_message(kind, version, len(catalog.versions[kind]), schema.file.name,
                                schema.schema, table))
    out.append(_sources(sections))
    return "\n\n".join(part.strip("\n") for part in out if part) + "\n"


def write(path: Path = DOC_PATH, catalog: Catalog | None = None) -> None:
    """Regenerate the reference at ``path``. Raises OSError when it cannot be written."""
    path.write_text(generate(catalog or Catalog()), encoding="utf-8")


def check(path: Path = DOC_PATH, catalog: Catalog | None = None) -> bool:
    """True when the file at ``path`` is what ``generate`` would write now."""
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return current == generate(catalog or Catalog())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m client.messages.docgen [--check] [PATH]``: write, or check (exit 1 when
    stale)."""
    parser = argparse.ArgumentParser(prog="docgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    parser.add_argument("path", nargs="?", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    if args.check:
        if check(args.path):
            return 0
        print(f"{args.path} is stale: run `opshub schemas docs` to regenerate",
              file=sys.stderr)
        return 1
    write(args.path)
    return 0


def _contents(catalog: Catalog) -> str:
    lines = ["## Contents", ""]
    if COMMON in catalog.documents:
        lines.append("- [Common definitions](#common-definitions)")
    lines.append("- [Message types](#message-types)")
    lines.extend(f"  - [`{kind}`](#{_anchor(kind)})" for kind in catalog.types)
    lines.append("- [Where the fields come from](#where-the-fields-come-from)")
    return "\n".join(lines)


def _definition(name: str, definition: dict[str, object], table: Table,
                walker: SchemaWalker) -> str:
    parts = [f"### `{name}`", _sentence(definition.get("description") or
                                        definition.get("title") or "")]
    if definition.get("x-nominal") is True:
        parts.append("**Nominal**: everything in it is personal data.")
    if table.fields or table.variants:
        parts.append(_tables(table))
    else:
        row = walker.table({"properties": {name: definition}}, COMMON).fields[0]
        parts.append(f"Type: {row.type}." + (f" Allowed: {row.allowed}." if row.allowed
                                               else ""))
    return "\n\n".join(p for p in parts if p)


def _message(kind: str, version: int, versions: int, file: str,
             schema: dict[str, object], table: Table) -> str:
    heading = f"### `{kind}`" if versions == 1 else f"### `{kind}` version {version}"
    parts = [heading, _sentence(schema.get("description") or schema.get("title") or ""),
             f"Version {version}, file `schemas/{file}`."
             + (f" Source: {table.source}." if table.source else "")]
    if table.inherited:
        names = ", ".join(f"`{n}`" for n in table.inherited)
        parts.append(f"Also carries the [envelope](#envelope) fields ({names}).")
    parts.append(_tables(table))
    return "\n\n".join(p for p in parts if p)


def _tables(table: Table) -> str:
    parts = [_table(table.fields)] if table.fields else []
    parts.append(_rules(table.rules))
    for variant in table.variants:
        where = f"`{variant.path}`" if variant.path else "The message"
        parts.append(f"#### {where} when {variant.condition}\n\n" + _table(variant.fields))
        parts.append(_rules(variant.rules))
    return "\n\n".join(p for p in parts if p)


def _rules(rules: Iterable[str]) -> str:
    return "\n".join(f"- {_sentence(rule)}" for rule in rules)


def _table(fields: Iterable[Field]) -> str:
    rows = [_HEADER]
    for f in fields:
        name = f"`{f.path}`" + (" **nominal**" if f.nominal else "")
        text = " — ".join(t for t in (f.description, f.allowed) if t)
        rows.append("| " + " | ".join(_cell(c) for c in (
            name, f.type, "yes" if f.required else "", text, f.source)) + " |")
    return "\n".join(rows)


def _sources(sections: list[tuple[str, Table]]) -> str:
    cited = sorted({(section, path, part.strip())
                    for section, table in sections
                    for path, source in ((f.path, f.source) for f in (
                        *table.fields, *(g for v in table.variants for g in v.fields)))
                    for part in source.split(";") if part.strip()}
                   | {(section, "", part.strip()) for section, table in sections
                      for part in table.source.split(";") if part.strip()})
    parts = ["## Where the fields come from", (
        "Fields whose `x-source` annotation names a standard or form, grouped by source, "
        "each with a short note on what the source is.")]
    groups: dict[str, list[tuple[str, str, str]]] = {heading: [] for heading, _, _ in SOURCES}
    others: list[tuple[str, str, str]] = []
    for row in cited:
        heading = next((h for h, pattern, _ in SOURCES
                        if re.search(pattern, row[2], re.IGNORECASE)), None)
        (groups[heading] if heading else others).append(row)
    for heading, _, prose in SOURCES:
        parts.append(f"### {heading}\n\n{prose}\n\n" + _source_table(groups[heading]))
    if others:
        parts.append("### Other sources\n\n" + _source_table(others))
    return "\n\n".join(parts)


def _source_table(rows: list[tuple[str, str, str]]) -> str:
    if not rows:
        return "No field names it in an `x-source` annotation."
    lines = ["| schema | field | corresponds to |", "|---|---|---|"]
    lines.extend(f"| `{_cell(s)}` | {f'`{_cell(p)}`' if p else 'the whole message'} | "
                 f"{_cell(src)} |" for s, p, src in rows)
    return "\n".join(lines)


def _sentence(text: object) -> str:
    text = str(text).strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading of just ``heading`` in backticks."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


if __name__ == "__main__":
    raise SystemExit(main())
