"""Documented cases checked as cases: a scenario's ``cases`` (a seizure its source
describes: who reported it, what, how much, where) looked for in the seizure reports the
OCU read, one by one, rather than in an operation-wide total the generator can fill.

A case is met by one live seizure report (its latest revision) whose sender is the case's
unit or country, whose place matches when the case names one, and whose items of the
case's category (and kind) add up to the case's count and quantity. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from client.replay.names import commodity_name
from client.replay.tally import KIND_FIELDS, SECOND_KIND_FIELDS

#: masses and volumes compared in one unit each
_SCALE = {"kg": ("kg", 1.0), "g": ("kg", 0.001), "mg": ("kg", 1e-6), "t": ("kg", 1000.0),
          "l": ("l", 1.0), "ml": ("l", 0.001)}
#: how far a quantity may be from the case's and still be it (rounding in a release)
TOLERANCE = 0.0005


def check_cases(cases: Iterable[Mapping[str, Any]], reports: Iterable[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """One result per case: ``ok``, and what was found (the report that has it, or the
    nearest miss) in words."""
    reports = list(reports)
    return [_check(case, reports) for case in cases]


def _check(case: Mapping[str, Any], reports: list[Mapping[str, Any]]) -> dict[str, Any]:
    goods = case["goods"]
    want = describe(goods)
    result = {"id": case["id"], "storyline": case.get("storyline"),
              "published": case["published"], "reported_by": case["reported_by"],
              "goods": want, "ok": False, "found": ""}
    mine = [r for r in reports if _sender_is(r, case["reported_by"])
            and _place_is(r, case.get("place"))]
    near = []
    for r in mine:
        count, amount, unit = _sum(r["items"], goods)
        if count == 0:
            continue
        got = describe({**goods, "count": count, "quantity": (
            {"value": round(amount, 6), "unit": unit} if unit else None)})
        if _meets(goods, count, amount):
            where = _place(r)
            return {**result, "ok": True, "found": f"{r['sender']['unit']} reported {got}"
                    f"{f' at {where}' if where else ''} ({r['id']})"}
        near.append(f"{r['id']} has {got}")
    place = f" at {case['place']}" if case.get("place") else ""
    missing = f"no seizure report from {case['reported_by']}{place} has {want}"
    return {**result, "found": missing + (f" ({'; '.join(near)})" if near else "")}


def describe(goods: Mapping[str, Any]) -> str:
    """The goods in words: "Firearms: pistol, 20", "Cocaine, 500.2 kg"."""
    kind = f".{goods['kind']}" if goods.get("kind") else ""
    what = commodity_name(f"{goods['category']}{kind}")
    q = goods.get("quantity")
    if q:
        return f"{what}, {q['value']:g} {q['unit']}"
    if goods.get("count") is not None:
        return f"{what}, {goods['count']:g}"
    return what


def _sender_is(report: Mapping[str, Any], who: str) -> bool:
    sender = report["sender"]
    return who in (sender.get("unit"), sender.get("country"))


def _place(report: Mapping[str, Any]) -> str:
    where = (report.get("event") or {}).get("where") or {}
    return ", ".join(str(where[k]) for k in ("place", "country") if where.get(k))


def _place_is(report: Mapping[str, Any], place: str | None) -> bool:
    if not place:
        return True
    where = (report.get("event") or {}).get("where") or {}
    names = [str(where.get(k, "")) for k in ("place", "code", "locode", "iata")]
    return any(place.casefold() in n.casefold() for n in names if n)


def _sum(items: Iterable[Mapping[str, Any]], goods: Mapping[str, Any]
         ) -> tuple[float, float, str | None]:
    """Count, and quantity in the case's unit family, of the report's items that are the
    case's goods."""
    want_q = goods.get("quantity")
    family = _SCALE.get(want_q["unit"], (want_q["unit"], 1.0))[0] if want_q else None
    count = amount = 0.0
    for item in items:
        if item.get("category") != goods["category"]:
            continue
        if goods.get("kind") and goods["kind"] not in _kinds(item):
            continue
        count += float(item.get("count", 1))
        q = item.get("quantity")
        if q and family:
            base, factor = _SCALE.get(q["unit"], (q["unit"], 1.0))
            if base == family:
                amount += float(q["value"]) * factor
    if want_q and family:
        amount /= _SCALE.get(want_q["unit"], (family, 1.0))[1]
    return count, amount, want_q["unit"] if want_q else None


def _kinds(item: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the item is within its category, as the tally counts it: a person's role, or
    the category's kind fields (a wildlife item is a species group and a specimen)."""
    category = item.get("category")
    if category == "person":
        return ((item.get("person") or {}).get("role"),)
    return tuple(item.get(fields[category]) for fields in (KIND_FIELDS, SECOND_KIND_FIELDS)
                 if category in fields)


def _meets(goods: Mapping[str, Any], count: float, amount: float) -> bool:
    if goods.get("count") is not None and abs(count - float(goods["count"])) > 1e-9:
        return False
    q = goods.get("quantity")
    if q:
        value = float(q["value"])
        return abs(amount - value) <= TOLERANCE * max(1.0, value)
    return True
