"""Filler inspection reports: what the published figures of controls still need beyond
the storylines (inspections, offences by kind and by place, investigations, entities,
fines, assets), carried by inspection reports of the scenario's units.

Each figure's residual (its value less what the storylines give) is filled exactly, the
most specific first, as the seizure filler does (client/replay/plan.py): the objects
inspected, then offences (each one kind at one place: a kind figure and a place figure
are paired), then what the inspections led to. ``at_most`` figures are never filled.
Persons (minors, exploitation) are not filled: the storylines carry them. Pure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from protocol.errors import ScenarioError

T = TypeVar("T")

#: heads of the figures this filler fills
HEADS = ("inspections", "offence", "investigations", "entity", "fines", "assets")


def fills(metric: str) -> bool:
    return metric.split(".")[0] in HEADS


def residuals(results: Iterable[Mapping[str, Any]], have: Mapping[str, float]
              ) -> dict[str, float]:
    """metric -> what is still to fill, for the figures this filler fills."""
    out = {}
    for r in results:
        if r["rule"] == "at_most" or not fills(r["metric"]):
            continue
        need = round(float(r["value"]) - have.get(r["metric"], 0.0), 6)
        if need > 0:
            out[r["metric"]] = need
    return out


def _spread(names: Mapping[str, float], total: float, fallback: T) -> list[str | T]:
    """One name per unit: each named one its count, then ``fallback`` up to ``total``."""
    out: list[str | T] = [name for name, n in names.items() for _ in range(int(n))]
    return out + [fallback] * max(0, int(total) - len(out))


def _parts(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` as ``parts`` whole amounts of at least 1 each (parts <= total)."""
    return [1 + int(x) for x in _split(total - parts, parts, rng)]


def _split(total: float, parts: int, rng: random.Random) -> list[float]:
    """``total`` as ``parts`` non-negative whole amounts."""
    if parts <= 0:
        return []
    cuts = sorted(rng.randint(0, int(total)) for _ in range(parts - 1))
    return [float(b - a) for a, b in zip([0, *cuts], [*cuts, int(total)], strict=True)]


def bodies(need: Mapping[str, float], rng: random.Random, *, loci: list[str],
           kinds: list[str], objects: list[str], one_by_one: bool,
           cannot: Callable[[str], ScenarioError]) -> list[dict[str, Any]]:
    """Inspection report bodies (no envelope, no place or time) that add exactly
    ``need`` (from ``residuals``). ``loci`` and ``kinds``: every offence place and kind
    (an offence no figure places has locus None: the caller puts it where the report
    says the inspection was, ``locus_found``); ``objects``: what is inspected where no
    figure says (the first one)."""
    if not need:
        return []
    objects_by = {m.split(".")[1]: n for m, n in need.items() if m.startswith("inspections.")}
    inspected = _spread(objects_by, max(need.get("inspections", 0.0),
                                        sum(objects_by.values())), objects[0])
    kinds_by = {m.split(".")[1]: n for m, n in need.items()
                if m.startswith("offence.") and m.count(".") == 2 and m.split(".")[1] in kinds}
    loci_by = {m.split(".")[1]: n for m, n in need.items()
               if m.startswith("offence.") and m.count(".") == 2 and m.split(".")[1] in loci}
    unknown = [m for m in need if m.startswith("offence.") and m.count(".") == 2
               and m.split(".")[1] not in kinds_by and m.split(".")[1] not in loci_by]
    if unknown:
        raise cannot(f"the generator cannot fill {', '.join(unknown)}")
    n_offences = max(need.get("offence.count", 0.0), sum(kinds_by.values()),
                     sum(loci_by.values()))
    offence_kinds = _spread(kinds_by, n_offences, "other")
    offence_loci = _spread(loci_by, n_offences, None)  # None: where it was found
    offences = [{"kind": k, "locus": p, "count": 1}
                for k, p in zip(offence_kinds, offence_loci, strict=True)]
    rng.shuffle(offences)
    # reports: each inspected object its own report when counted one by one, else about
    # the square root of each kind's number, each report one kind of object
    counts: dict[str, int] = {}
    for obj in inspected:
        counts[obj] = counts.get(obj, 0) + 1
    if not counts:
        counts = {objects[0]: 1}  # findings need an inspection to be reported in
    reports: list[dict[str, Any]] = []
    for obj, c in counts.items():
        parts = c if one_by_one else max(1, math.isqrt(c))
        for size in _parts(c, parts, rng):
            reports.append({"type": "inspection_report",
                            "inspected": {"object": obj, "count": size},
                            "result": "compliant"})
    rng.shuffle(reports)
    for i, offence in enumerate(offences):
        r = reports[i % len(reports)]
        r.setdefault("offences", []).append(offence)
        r["result"] = "offence_found"
    with_findings = [r for r in reports if r.get("offences")] or reports
    investigations = need.get("investigations", 0.0)
    for r, n in zip(with_findings, _split(investigations, len(with_findings), rng),
                    strict=True):
        if n:
            r["investigations_opened"] = int(n)
    for metric, n in need.items():
        head, _, rest = metric.partition(".")
        if head == "entity":
            for _ in range(int(n)):
                rng.choice(with_findings).setdefault("entities", []).append(
                    {"kind": rest.split(".")[0]})
    _fines(need, with_findings, rng)
    _assets(need, with_findings, rng)
    for r in reports:  # what was taken makes it a seizure, not only an offence found
        if r.get("assets") and r.get("offences"):
            r["result"] = "seizure"
    return reports


#: the offence locus of an inspection's place_type (client/replay/plan.py), where the
#: place is not one: "inland"
LOCUS_OF_PLACE = {"seaport": "port", "at_sea": "at_sea", "coast": "coast",
                  "inland_waters": "inland_waters", "airport": "airport",
                  "land_border": "land_border"}


def locus_found(report: dict[str, Any], fixed: Collection[str], fallback: str) -> None:
    """Put the report's offences that no figure places where the inspection was (its
    ``where.place_type``), unless a figure fixes that locus: then at ``fallback``."""
    here = LOCUS_OF_PLACE.get(str(report.get("where", {}).get("place_type")), "inland")
    for offence in report.get("offences", []):
        if offence["locus"] is None:
            offence["locus"] = here if here not in fixed else fallback


def _fines(need: Mapping[str, float], reports: list[dict[str, Any]],
           rng: random.Random) -> None:
    usd = need.get("fines.usd", 0.0)
    n = int(need.get("fines.count", 0.0)) or (1 if usd else 0)
    for amount in _split(usd, n, rng) if usd else [0.0] * n:
        value = int(amount) if usd else rng.randrange(500, 20000, 500)
        rng.choice(reports).setdefault("fines", []).append(
            {"amount": {"amount": value, "currency": "USD", "usd_equivalent": value}})


def _assets(need: Mapping[str, float], reports: list[dict[str, Any]],
            rng: random.Random) -> None:
    by_kind = {m.split(".")[1]: n for m, n in need.items()
               if m.startswith("assets.") and m.count(".") == 2 and m != "assets.value.usd"}
    kinds = _spread(by_kind, need.get("assets.count", 0.0), "other")
    usd = need.get("assets.value.usd", 0.0)
    if usd and not kinds:
        kinds = ["other"]
    values = _split(usd, len(kinds), rng) if usd else [0.0] * len(kinds)
    for kind, value in zip(kinds, values, strict=True):
        asset: dict[str, Any] = {"kind": kind, "count": 1}
        if usd:
            asset["value"] = {"amount": int(value), "currency": "USD",
                              "usd_equivalent": int(value)}
        rng.choice(reports).setdefault("assets", []).append(asset)
