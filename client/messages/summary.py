"""One line saying what a message is about, per message type ("20 pistols at Roseau (DM,
express courier)", "re warning W-7: seized", "inspected 1 vessel at ...: offence found"), with
a generic line for types it does not know.

Pure. A summary reads the message with ``get`` and never raises: it must work on messages
that fail validation and on versions newer than the code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from client.messages.values import compact, number, utc_minute, word

#: Items listed in a seizure report's summary before "and N more".
_MAX_ITEMS = 5
#: Fields of a seizure item that say what it is, by category.
_ITEM_DETAIL: dict[str, tuple[str, ...]] = {
    "drug": ("substance", "quantity"),
    "firearm": ("firearm_type", "make", "model", "calibre"),
    "ammunition": ("calibre", "rounds"),
    "firearm_part": ("part",),
    "explosive": ("explosive_type", "quantity"),
    "currency": ("money",),
    "document": ("document_type", "document_status", "issuing_country"),
    "person": ("person.role",),
    "vehicle": ("vehicle_type", "make", "model"),
    "vessel": ("vessel_type", "name"),
    "wildlife": ("species", "quantity"),
    "waste": ("basel_code", "quantity"),
    "tobacco": ("product", "quantity"),
    "alcohol": ("beverage", "quantity"),
    "counterfeit_goods": ("goods", "quantity"),
    "cultural_property": ("object_type",),
    "other": ("description", "quantity"),
}
_DATABASES = {"interpol_iarms": "iARMS", "interpol_sltd": "SLTD", "interpol_smv": "SMV",
              "interpol_nominal": "INTERPOL nominal", "interpol_notices": "INTERPOL notices",
              "wco_cen": "CEN", "atf_etrace": "ATF eTrace", "hsi": "HSI"}
_RECIPIENTS = {"interpol_general_secretariat": "INTERPOL GS", "wco_secretariat": "WCO"}

Summary = Callable[[Mapping[str, Any], frozenset[str]], str]


def summarise(message: Mapping[str, Any], words: frozenset[str]) -> str:
    """The one-line summary of ``message`` ("" when there is nothing to say)."""
    summary = _SUMMARIES.get(str(message.get("type")), _generic)
    return " ".join(summary(message, words).split()).rstrip(":;, ")


def _get(obj: Any, path: str) -> Any:
    """``obj["a"]["b"]`` for "a.b", or None where a step is missing or not an object."""
    for key in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _show(value: Any, words: frozenset[str]) -> str:
    """A value on one line; "" for a missing one or one that needs a block."""
    if value is None:
        return ""
    return compact(value, words) or ""


def _place(location: Any, words: frozenset[str]) -> str:
    """ "Roseau (DM, express courier)" for a location object."""
    if not isinstance(location, Mapping):
        return ""
    codes = [_show(location.get(k), words) for k in ("country", "place_type", "iata", "locode")]
    inside = ", ".join(c for c in codes if c)
    place = _show(location.get("place"), words)
    return f"{place} ({inside})" if place and inside else place or inside


def _seizure_item(item: Any, words: frozenset[str]) -> str:
    if not isinstance(item, Mapping):
        return "?"
    category = str(item.get("category", "item"))
    count = item.get("count", 1)
    details = []
    for key in _ITEM_DETAIL.get(category, ("description", "quantity")):
        value = _get(item, key)
        if value is not None:
            text = _show(value, words)
            details.append(f"{key}: {text}" if isinstance(value, int) else text)
    detail = f" ({', '.join(d for d in details if d)})" if any(details) else ""
    return f"{_show(count, words)} \N{MULTIPLICATION SIGN} {word(category, words)}{detail}"


def _seizure_report(m: Mapping[str, Any], words: frozenset[str]) -> str:
    items = m.get("items")
    items = items if isinstance(items, list) else []
    text = ", ".join(_seizure_item(i, words) for i in items[:_MAX_ITEMS])
    if len(items) > _MAX_ITEMS:
        text += f" and {len(items) - _MAX_ITEMS} more"
    place = _place(_get(m, "event.where"), words)
    return f"{text} at {place}" if place else text


def _warning(m: Mapping[str, Any], words: frozenset[str]) -> str:
    action = _show(m.get("requested_action"), words) or "watch"
    kind = _show(_get(m, "subject.kind"), words) or "subject"
    text = f"{action} {kind}"
    suspected = _show(m.get("suspected_commodities"), words)
    if suspected:
        detail = _show(m.get("commodity_detail"), words)
        text += f", suspected {suspected}" + (f" ({detail})" if detail else "")
    place = _place(_get(m, "expected.where"), words)
    if place:
        text += f", at {place}"
    addressees = _show(m.get("addressees"), words)
    return text + (f"; to {addressees}" if addressees else "")


def _feedback(m: Mapping[str, Any], words: frozenset[str]) -> str:
    text = f"re warning {m.get('refers_to', '?')}: {_show(m.get('action_taken'), words)}"
    extra = []
    if m.get("seizure_ref"):
        extra.append(f"seizure {m['seizure_ref']}")
    if isinstance(m.get("persons_arrested"), int) and m["persons_arrested"] > 0:
        extra.append(f"{m['persons_arrested']} arrested")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _alert(m: Mapping[str, Any], words: frozenset[str]) -> str:
    severity = _show(m.get("severity"), words)
    subject = _show(m.get("subject"), words)
    return f"{severity}: {subject}" if severity else subject


def _request_for_information(m: Mapping[str, Any], words: frozenset[str]) -> str:
    kind = _show(_get(m, "subject.kind"), words) or "information"
    to = m.get("to")
    desks = [str(p.get("unit")) for p in to if isinstance(p, Mapping)] if isinstance(
        to, list) else []
    text = f"{kind} query" + (f" to {', '.join(desks)}" if desks else "")
    databases = m.get("databases")
    if isinstance(databases, list) and databases:
        text += " (" + ", ".join(_DATABASES.get(str(d), str(d)) for d in databases) + ")"
    if m.get("priority"):
        text += f"; {_show(m['priority'], words)}"
    if m.get("respond_by"):
        text += f", answer by {utc_minute(m['respond_by'])}"
    return text


def _rfi_response(m: Mapping[str, Any], words: frozenset[str]) -> str:
    text = f"re request {m.get('refers_to', '?')}: {_show(m.get('result'), words)}"
    hits = m.get("hits")
    if isinstance(hits, list) and hits:
        names = [" ".join(filter(None, (_DATABASES.get(str(h.get("database")),
                                                       str(h.get("database"))),
                                        h.get("reference"))))
                 for h in hits if isinstance(h, Mapping)]
        text += f" ({len(hits)} hit{'s' if len(hits) > 1 else ''}: {', '.join(names)})"
    return text


def _firearm(firearm: Any, words: frozenset[str]) -> str:
    if not isinstance(firearm, Mapping):
        return "firearm"
    text = " ".join(_show(firearm.get(k), words) for k in (
        "firearm_type", "make", "model", "calibre") if firearm.get(k) is not None)
    serial = firearm.get("serial_number")
    return (text or "firearm") + (f", serial {serial}" if serial else "")


def _trace_request(m: Mapping[str, Any], words: frozenset[str]) -> str:
    text = f"trace {_firearm(m.get('firearm'), words)}"
    via = m.get("requested_of")
    if via:
        text += f" via {_DATABASES.get(str(via), _show(via, words))}"
        if m.get("requested_of_country"):
            text += f" ({m['requested_of_country']})"
    return text


def _trace_response(m: Mapping[str, Any], words: frozenset[str]) -> str:
    text = f"re trace {m.get('refers_to', '?')}: {_show(m.get('outcome'), words)}"
    history = m.get("history")
    if isinstance(history, list) and history:
        text += f", {len(history)} event{'s' if len(history) > 1 else ''}"
    if m.get("last_legal_country"):
        text += f", last legal in {m['last_legal_country']}"
    return text


def _hit_notification(m: Mapping[str, Any], words: frozenset[str]) -> str:
    database = m.get("database")
    text = f"{_DATABASES.get(str(database), _show(database, words))} hit"
    record = m.get("record")
    if isinstance(record, Mapping):
        if record.get("reference"):
            text += f" on record {record['reference']}"
        if record.get("recording_country"):
            text += f" recorded by {record['recording_country']}"
        if record.get("recorded_as"):
            text += f" as {_show(record['recorded_as'], words)}"
    notified = []
    for r in m.get("recipients") or []:
        if isinstance(r, Mapping):
            kind = str(r.get("kind"))
            if kind == "ncb":
                notified.append(f"NCB {r.get('country', '?')}")
            else:
                notified.append(_RECIPIENTS.get(kind) or str(r.get("unit") or kind))
    return text + (f"; notified: {', '.join(notified)}" if notified else "")


def _controlled_delivery(m: Mapping[str, Any], words: frozenset[str]) -> str:
    text = f"delivery {m.get('delivery_id', '?')}: {_show(m.get('phase'), words)}"
    if m.get("from_country") or m.get("to_country"):
        text += f", {m.get('from_country', '?')} → {m.get('to_country', '?')}"
    outcome = m.get("outcome")
    if isinstance(outcome, Mapping):
        if outcome.get("seized") is not None:
            text += "; seized" if outcome["seized"] else "; nothing seized"
        if isinstance(outcome.get("arrests"), int):
            text += f", {number(outcome['arrests'])} arrested"
    return text


def _situation_report(m: Mapping[str, Any], words: frozenset[str]) -> str:
    parts = []
    if m.get("day") is not None:
        parts.append(f"day {m['day']}")
    start, end = _get(m, "period.from"), _get(m, "period.to")
    if start and end:
        parts.append(f"{utc_minute(start)} to {utc_minute(end)}")
    totals = m.get("totals")
    if not isinstance(totals, Mapping):
        totals = {}
    figures = [f"{number(totals[k])} {k.replace('_', ' ')}" for k in (
        "seizures", "arrests", "database_hits") if isinstance(totals.get(k), int | float)]
    text = ", ".join(parts)
    return f"{text}: {', '.join(figures)}" if figures else text


#: Inspected objects in the plural ("inspected 3 vessels").
_PLURALS = {"vessel": "vessels", "vehicle": "vehicles", "aircraft": "aircraft",
            "container": "containers", "consignment": "consignments", "premises": "premises",
            "company": "companies", "person": "persons", "website": "websites",
            "other": "other objects"}
#: An offence's locus as it follows the kind ("oil pollution at sea").
_LOCI = {"at_sea": "at sea", "coast": "on the coast", "inland_waters": "on inland waters",
         "port": "in port", "airport": "at an airport", "land_border": "at a land border",
         "inland": "inland", "online": "online"}


def _count(value: Any) -> int:
    """A count field's value, 1 when missing or not a positive integer (the default)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _entries(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a list field; anything else is no entries."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _figure(value: Any) -> float | None:
    """A number of a message (not a boolean), or None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _money_total(amounts: list[Any], words: frozenset[str]) -> str:
    """The sum of money objects: in their currency when they share one (with the USD
    equivalent when each has one), else in USD when each has a USD figure, else ""."""
    money = [a for a in amounts if isinstance(a, Mapping)
             and _figure(a.get("amount")) is not None and isinstance(a.get("currency"), str)]
    if not money or len(money) < len(amounts):
        return ""
    usd = [_figure(a["amount"] if a["currency"] == "USD" else a.get("usd_equivalent"))
           for a in money]
    usd_total = sum(u for u in usd if u is not None) if None not in usd else None
    currencies = {a["currency"] for a in money}
    if len(currencies) == 1:
        total: dict[str, Any] = {"amount": sum(a["amount"] for a in money),
                                 "currency": currencies.pop()}
        if usd_total is not None:
            total["usd_equivalent"] = usd_total
        return compact(total, words) or ""
    return f"USD {number(usd_total)}" if usd_total is not None else ""


def _by_role(persons: list[Mapping[str, Any]], words: frozenset[str]) -> str:
    """Counts by role in order, with the minors among them ("26 [times] victim of
    trafficking (3 minors), 4 [times] suspect")."""
    counts: dict[str, list[int]] = {}
    for p in persons:
        n = _count(p.get("count"))
        both = counts.setdefault(_show(p.get("role"), words) or "person", [0, 0])
        both[0] += n
        both[1] += n if p.get("minor") is True else 0
    return ", ".join(f"{n} \N{MULTIPLICATION SIGN} {role}"
                     + (f" ({minors} minor{'s' if minors > 1 else ''})" if minors else "")
                     for role, (n, minors) in counts.items())


def _inspection_report(m: Mapping[str, Any], words: frozenset[str]) -> str:
    inspected = m.get("inspected")
    inspected = inspected if isinstance(inspected, Mapping) else {}
    n, what = _count(inspected.get("count")), str(inspected.get("object") or "object")
    text = f"inspected {n} {_PLURALS.get(what, what) if n > 1 else word(what, words)}"
    place = _place(m.get("where"), words)
    if place:
        text += f" at {place}"
    text += f": {_show(m.get('result'), words) or '?'}"
    offences = [f"{_count(o.get('count'))} \N{MULTIPLICATION SIGN} "
                f"{_show(o.get('kind'), words) or 'offence'}"
                + (f" {_LOCI.get(str(o.get('locus')), _show(o.get('locus'), words))}"
                   if o.get("locus") else "")
                for o in _entries(m.get("offences"))]
    if offences:
        more = f" and {len(offences) - _MAX_ITEMS} more" if len(offences) > _MAX_ITEMS else ""
        text += f" ({', '.join(offences[:_MAX_ITEMS])}{more})"
    extra = []
    persons = _entries(m.get("persons"))
    if persons:
        extra.append(f"persons: {_by_role(persons, words)}")
    opened = m.get("investigations_opened")
    if isinstance(opened, int) and not isinstance(opened, bool) and opened > 0:
        extra.append(f"{number(opened)} investigation{'s' if opened > 1 else ''} opened")
    entities = _entries(m.get("entities"))
    if entities:
        kinds: dict[str, int] = {}
        for e in entities:
            kind = _show(e.get("kind"), words) or "entity"
            kinds[kind] = kinds.get(kind, 0) + 1
        extra.append("entities: " + ", ".join(f"{k} \N{MULTIPLICATION SIGN} {kind}"
                                              for kind, k in kinds.items()))
    fines = _entries(m.get("fines"))
    if fines:
        total = _money_total([f.get("amount") for f in fines], words)
        extra.append(f"{len(fines)} fine{'s' if len(fines) > 1 else ''}"
                     + (f": {total}" if total else ""))
    assets = _entries(m.get("assets"))
    if assets:
        listed = ", ".join(f"{_count(a.get('count'))} \N{MULTIPLICATION SIGN} "
                           f"{_show(a.get('kind'), words) or 'asset'}" for a in assets)
        valued = [a["value"] for a in assets if a.get("value") is not None]
        total = _money_total(valued, words) if valued else ""
        if total and len(valued) < len(assets):
            total += " where valued"
        extra.append(f"assets: {listed}" + (f", worth {total}" if total else ""))
    if m.get("seizure_ref"):
        extra.append(f"seizure {m['seizure_ref']}")
    if m.get("refers_to"):
        extra.append(f"re warning {m['refers_to']}")
    return "; ".join([text, *extra])


def _generic(m: Mapping[str, Any], words: frozenset[str]) -> str:
    """For a type without its own summary: what it refers to and its first short text."""
    parts = [f"re {m['refers_to']}"] if m.get("refers_to") else []
    for key in ("subject", "summary", "title", "description"):
        if isinstance(m.get(key), str):
            text = m[key]
            parts.append(text if len(text) <= 100 else text[:99] + "…")
            break
    return ": ".join(parts)


_SUMMARIES: dict[str, Summary] = {
    "seizure_report": _seizure_report,
    "warning": _warning,
    "feedback": _feedback,
    "alert": _alert,
    "request_for_information": _request_for_information,
    "rfi_response": _rfi_response,
    "trace_request": _trace_request,
    "trace_response": _trace_response,
    "hit_notification": _hit_notification,
    "controlled_delivery": _controlled_delivery,
    "situation_report": _situation_report,
    "inspection_report": _inspection_report,
}
