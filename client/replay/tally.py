"""The OCU's tally: figures computed from the messages it has read (decrypted and
checked), under the metric names scenarios use for their published results.

Metrics (see docs/scenarios.md): ``messages``, ``messages.<type>``, ``reports``,
``items``, ``arrests``, ``countries``, ``agencies``, ``hits``, ``hits.<database>``
(``hits.interpol`` for all INTERPOL databases), ``<category>.count``, ``<category>.kg`` /
``.l`` / ``.<unit>``, ``drug.<substance>.kg`` (or another unit),
``firearm.<firearm_type>.count``, ``firearm_part.<part>.count``, ``ammunition.rounds``,
``currency.usd``, ``currency.counterfeit.usd``, ``document.<document_status>.count``,
``person.<role>.count``, ``person.<role>.minor.count``, ``person.minor.count``,
``person.exploitation.<type>.count``, ``person.notice.<colour>.count``; and from
inspection reports: ``inspections``, ``inspections.<object>``, ``offence.count``,
``offence.<kind>.count``, ``offence.<locus>.count``, ``investigations``,
``entity.<kind>.count``, ``fines.count``, ``fines.usd``, ``assets.count``,
``assets.<kind>.count``, ``assets.value.usd``.

A seizure report counts once, in its latest revision; a withdrawn one not at all; an
inspection report likewise. Persons count from seizure report person items and from
inspection reports' persons (counts of people, not named). Pure.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

_TO_KG = {"kg": 1.0, "g": 0.001, "mg": 0.000001, "t": 1000.0}
_TO_L = {"l": 1.0, "ml": 0.001}
_METRIC = re.compile(
    r"^(messages(\.[a-z_]+)?|reports|items|arrests|countries|agencies|inspections"
    r"|investigations|hits(\.[a-z_]+)?"
    r"|ammunition\.rounds|currency\.usd|currency\.counterfeit\.usd"
    r"|person\.notice\.[a-z_]+\.count"
    r"|[a-z_]+(\.[a-z0-9_]+)*\.[a-z0-9]+)$")


#: the item field that names a category's kind (drug.<substance>, firearm.<type> ...)
KIND_FIELDS = {"drug": "substance", "firearm": "firearm_type", "firearm_part": "part",
               "document": "document_status", "tobacco": "product", "vessel": "vessel_type",
               "vehicle": "vehicle_type", "wildlife": "species_group"}
#: a second way a category's items are counted (wildlife.live.count beside
#: wildlife.bird.count); its values and the first kind's never overlap
SECOND_KIND_FIELDS = {"wildlife": "specimen"}


def commodity_key(item: Mapping[str, Any]) -> str:
    """The finest commodity an item is counted under: ``drug.cocaine``, ``wildlife.bird``,
    or its category when it does not say its kind."""
    cat = str(item["category"])
    if cat == "person":
        role = (item.get("person") or {}).get("role")
        return f"person.{role}" if role else cat
    kind = item.get(KIND_FIELDS.get(cat, ""))
    return f"{cat}.{kind}" if kind else cat


def known_metric(metric: str) -> bool:
    """Whether the tally can ever count ``metric`` (see ``metric_problem``)."""
    return metric_problem(metric) is None


def metric_problem(metric: str) -> str | None:
    """Why the tally can never count ``metric``, or None: its message type, database,
    category, kind and unit must come from the schemas (a misspelt name would always
    read 0)."""
    if "." not in metric and metric not in (*_WHOLE, "messages", "hits", "inspections"):
        return (f"no metric named {metric!r} (the one-word metrics are messages, reports, "
                f"items, arrests, countries, agencies, hits, inspections and "
                f"investigations; the others are "
                f"<category>[.<kind>].<measure>, as drug.cocaine.kg)")
    if not _METRIC.match(metric):
        return "is not a metric name (words of a-z, 0-9 and _ joined by dots)"
    parts = metric.split(".")
    head, rest = parts[0], parts[1:]
    if head in _WHOLE:
        return f"{head} is counted as a whole: nothing goes after it" if rest else None
    if head == "messages":
        return _one_of("message type", rest, _message_types())
    if head == "hits":
        return _one_of("database", rest, {"interpol"} | vocabulary()["database"])
    if metric in ("ammunition.rounds", "currency.usd", "currency.counterfeit.usd"):
        return None
    vocab = vocabulary()
    if head in _INSPECTION_HEADS:
        return _inspection_problem(head, rest, vocab)
    if head not in vocab["categories"]:
        return (f"no category {head!r} in the seizure report schema (categories: "
                f"{', '.join(sorted(vocab['categories']))}; and messages, reports, items, "
                f"arrests, countries, hits)")
    if head == "person":
        if metric in ("person.count", "person.minor.count"):
            return None
        if rest[0] == "exploitation":
            if len(rest) == 3 and rest[2] == "count":
                return _one_of("exploitation", rest[1:2], vocab.get("exploitation", set()))
            return "an exploitation figure is person.exploitation.<type>.count"
        if len(rest) == 3 and rest[1:] == ["minor", "count"]:
            return _one_of("person role", rest[:1], vocab["role"])
        if rest[0] == "notice":
            if len(rest) == 3 and rest[2] == "count":
                return _one_of("notice", rest[1:2], vocab["notice"])
            return "a notice figure is person.notice.<colour>.count"
        if len(rest) == 2 and rest[1] == "count":
            return _one_of("person role", rest[:1], vocab["role"])
        return "a person figure is person.count or person.<role>.count"
    measure = rest[-1]
    # masses and volumes are tallied in kg and l only
    measures = {"count", "kg", "l"} | (vocab["units"] - set(_TO_KG) - set(_TO_L))
    if measure not in measures:
        return (f"{measure!r} is not a measure the tally keeps (masses in kg, volumes in l; "
                f"one of {', '.join(sorted(measures))})")
    if len(rest) == 1:
        return None
    field = KIND_FIELDS.get(head)
    if field is None:
        return f"{head} items have no kind to count them by: {head}.{measure}"
    if len(rest) > 2:
        return f"a figure by kind is {head}.<{field}>.{measure}"
    kinds = vocab.get(field, set())
    second = SECOND_KIND_FIELDS.get(head)
    if second:
        field = f"{field} or {second}"
        kinds = kinds | vocab.get(second, set())
    return _one_of(field.replace("_", " "), rest[:1], kinds)


#: metrics that count a whole and take no suffix
_WHOLE = ("reports", "items", "arrests", "countries", "agencies", "investigations")


#: figures from inspection reports, and what may follow each
_INSPECTION_HEADS = ("inspections", "offence", "entity", "fines", "assets")


def _inspection_problem(head: str, rest: list[str], vocab: dict[str, set[str]]
                        ) -> str | None:
    if head == "inspections":
        return _one_of("inspected object", rest, vocab.get("object", set()))
    if head == "fines":
        if rest in (["count"], ["usd"]):
            return None
        return "a fines figure is fines.count or fines.usd"
    if head == "assets":
        if rest in (["count"], ["value", "usd"]):
            return None
        if len(rest) == 2 and rest[1] == "count":
            return _one_of("asset kind", rest[:1], vocab.get("asset_kind", set()))
        return "an assets figure is assets.count, assets.<kind>.count or assets.value.usd"
    kinds = vocab.get("offence_kind" if head == "offence" else "entity_kind", set())
    if head == "offence":
        kinds = kinds | vocab.get("locus", set())
        if rest == ["count"]:
            return None
    if len(rest) == 2 and rest[1] == "count":
        return _one_of(f"{head} kind" + (" or locus" if head == "offence" else ""),
                       rest[:1], kinds)
    return f"a figure of {head} is {head}.<kind>.count" + (
        ", offence.<locus>.count or offence.count" if head == "offence" else "")


def _one_of(what: str, rest: list[str], known: set[str]) -> str | None:
    if not rest:
        return None
    if len(rest) > 1 or rest[0] not in known:
        return f"no {what} {'.'.join(rest)!r} (known: {', '.join(sorted(known))})"
    return None


def _message_types() -> set[str]:
    from client.messages import default_catalog

    return set(default_catalog().types)


_VOCAB: dict[str, set[str]] = {}


def vocabulary() -> dict[str, set[str]]:
    """Categories, kinds, roles and units, read from the schemas once."""
    if not _VOCAB:
        from client.messages import default_catalog
        from client.messages.catalog import subschemas

        docs = default_catalog().documents
        enums: dict[str, set[str]] = {}
        for node in subschemas([docs["seizure-report.schema.json"],
                                docs["common.schema.json"]]):
            for key in ("properties", "$defs"):
                for name, sub in (node.get(key) or {}).items():
                    if isinstance(sub, dict) and "enum" in sub:
                        enums.setdefault(name, set()).update(map(str, sub["enum"]))
        common = docs["common.schema.json"]["$defs"]
        _VOCAB.update(enums)
        _VOCAB.update(_inspection_vocabulary(docs))
        _VOCAB["categories"] = enums["category"]
        _VOCAB["units"] = set(common["quantity_unit"]["enum"])
    return _VOCAB


def _inspection_vocabulary(docs: Mapping[str, Any]) -> dict[str, set[str]]:
    """The inspection report's enums by where they are (several are named ``kind``)."""
    doc = docs.get("inspection-report.schema.json")
    if doc is None:
        return {}

    def enum(*path: str) -> set[str]:
        node: Any = doc
        for key in path:
            node = _resolve(docs, doc, node)[key]
        return set(map(str, _resolve(docs, doc, node).get("enum", ())))

    props = ("properties",)
    return {
        "object": enum(*props, "inspected", *props, "object"),
        "offence_kind": enum(*props, "offences", "items", *props, "kind"),
        "locus": enum(*props, "offences", "items", *props, "locus"),
        "entity_kind": enum(*props, "entities", "items", *props, "kind"),
        "asset_kind": enum(*props, "assets", "items", *props, "kind"),
        "exploitation": enum(*props, "persons", "items", *props, "exploitation"),
    }


def _resolve(docs: Mapping[str, Any], doc: Any, node: Any) -> Any:
    """``node``, or what its ``$ref`` points to (in ``doc`` or another schema file)."""
    while isinstance(node, dict) and "$ref" in node:
        where, _, pointer = node["$ref"].partition("#")
        target = docs[where] if where else doc
        for part in pointer.strip("/").split("/") if pointer.strip("/") else []:
            target = target[part]
        node, doc = target, (docs[where] if where else doc)
    return node


def _item_keys(item: dict[str, Any]) -> list[tuple[str, float]]:
    """(metric, amount) pairs one seized item adds to."""
    cat = item["category"]
    out: list[tuple[str, float]] = []
    prefixes = [cat] + ([key] if (key := commodity_key(item)) != cat else [])
    if (second := item.get(SECOND_KIND_FIELDS.get(cat, ""))) is not None:
        prefixes.append(f"{cat}.{second}")
    count = float(item.get("count", 1))
    for p in prefixes:
        out.append((f"{p}.count", count))
    q = item.get("quantity")
    if q:
        unit, value = q["unit"], float(q["value"])
        for p in prefixes:
            if unit in _TO_KG:
                out.append((f"{p}.kg", value * _TO_KG[unit]))
            elif unit in _TO_L:
                out.append((f"{p}.l", value * _TO_L[unit]))
            else:
                out.append((f"{p}.{unit}", value))
    if cat == "ammunition":
        out.append(("ammunition.rounds", float(item.get("rounds", 0))))
    if cat == "currency":
        money = item["money"]
        usd = money.get("usd_equivalent")
        if usd is None and money["currency"] == "USD":
            usd = money["amount"]
        if usd is not None:
            out.append(("currency.usd", float(usd)))
            if item.get("counterfeit"):
                out.append(("currency.counterfeit.usd", float(usd)))
    if cat == "person":
        person = item.get("person") or {}
        if person.get("notice"):
            out.append((f"person.notice.{person['notice']}.count", 1.0))
        out += _person_keys(person.get("role"), 1.0, person.get("minor"),
                            person.get("exploitation"))
    return out


def _person_keys(role: str | None, n: float, minor: Any, exploitation: Any
                 ) -> list[tuple[str, float]]:
    """What persons who are minors, or exploited, add (beyond person.<role>.count)."""
    out = []
    if minor is True:
        out += [("person.minor.count", n)] + ([(f"person.{role}.minor.count", n)]
                                              if role else [])
    if isinstance(exploitation, str):
        out.append((f"person.exploitation.{exploitation}.count", n))
    return out


def inspection_keys(report: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(metric, amount) pairs one inspection report adds to."""
    out: list[tuple[str, float]] = []
    inspected = report.get("inspected") or {}
    n = float(inspected.get("count", 1))
    out += [("inspections", n), (f"inspections.{inspected.get('object', 'other')}", n)]
    for o in report.get("offences", ()):
        c = float(o.get("count", 1))
        out += [("offence.count", c), (f"offence.{o['kind']}.count", c),
                (f"offence.{o['locus']}.count", c)]
    for p in report.get("persons", ()):
        c = float(p["count"])
        out += [("person.count", c), (f"person.{p['role']}.count", c)]
        out += _person_keys(p["role"], c, p.get("minor"), p.get("exploitation"))
    out.append(("investigations", float(report.get("investigations_opened", 0))))
    for e in report.get("entities", ()):
        out.append((f"entity.{e['kind']}.count", 1.0))
    for f in report.get("fines", ()):
        out.append(("fines.count", 1.0))
        usd = _usd(f.get("amount") or {})
        if usd is not None:
            out.append(("fines.usd", usd))
    for a in report.get("assets", ()):
        c = float(a.get("count", 1))
        out += [("assets.count", c), (f"assets.{a['kind']}.count", c)]
        usd = _usd(a.get("value") or {})
        if usd is not None:
            out.append(("assets.value.usd", usd))
    return out


def _usd(money: Mapping[str, Any]) -> float | None:
    usd = money.get("usd_equivalent")
    if usd is None and money.get("currency") == "USD":
        usd = money.get("amount")
    return None if usd is None else float(usd)


class Tally:
    """Figures of the messages added so far. ``participants`` maps unit -> an object
    with ``country`` and ``role`` (the operation's roster)."""

    def __init__(self, participants: Mapping[str, Any]) -> None:
        self.participants = participants
        self.by_type: Counter[str] = Counter()
        self.messages = 0
        self.reports: dict[str, dict[str, Any]] = {}
        self.report_time: dict[str, float] = {}
        #: inspection reports by id, latest revision
        self.inspections: dict[str, dict[str, Any]] = {}
        #: database hits in answers: (request id, database) of each
        self.answer_hits: list[tuple[str, str]] = []
        #: hit notifications: (request id, database) of each
        self.notified_hits: list[tuple[str, str]] = []
        self.senders: Counter[str] = Counter()
        self.by_day: dict[int, Counter[str]] = defaultdict(Counter)

    def add(self, message: dict[str, Any], *, at: float = 0.0) -> None:
        kind = message["type"]
        self.messages += 1
        self.by_type[kind] += 1
        self.senders[message["sender"]["unit"]] += 1
        self.by_day[int(at // 86400) + 1]["messages"] += 1
        if kind == "seizure_report":
            before = self.reports.get(message["id"])
            if before is None or message.get("revision", 1) >= before.get("revision", 1):
                self.reports[message["id"]] = message
                self.report_time.setdefault(message["id"], at)
        elif kind == "inspection_report":
            before = self.inspections.get(message["id"])
            if before is None or message.get("revision", 1) >= before.get("revision", 1):
                self.inspections[message["id"]] = message
        elif kind == "rfi_response":
            for hit in message.get("hits", []):
                self.answer_hits.append((message["refers_to"], hit["database"]))
        elif kind == "hit_notification":
            self.notified_hits.append((message["refers_to"], message["database"]))

    @property
    def hits(self) -> Counter[str]:
        """Hits per database, each counted once per request: the hits an answer reports,
        and a hit notification only for a request whose answers reported none (a desk
        that answers with a hit and notifies it has found one hit, not two)."""
        out: Counter[str] = Counter(db for _, db in self.answer_hits)
        answered = {req for req, _ in self.answer_hits}
        out.update(db for req, db in self.notified_hits if req not in answered)
        return out

    def live_reports(self) -> list[dict[str, Any]]:
        return [r for r in self.reports.values() if r.get("status") != "withdrawn"]

    def totals(self) -> dict[str, float]:
        """Every metric with a non-zero value."""
        out: defaultdict[str, float] = defaultdict(float)
        out["messages"] = self.messages
        for kind, n in self.by_type.items():
            out[f"messages.{kind}"] = n
        reports = self.live_reports()
        out["reports"] = len(reports)
        for r in reports:
            out["items"] += len(r["items"])
            out["arrests"] += r.get("outcome", {}).get("arrests", 0)
            for item in r["items"]:
                for key, amount in _item_keys(item):
                    out[key] += amount
        for r in self.inspections.values():
            if r.get("status") != "withdrawn":
                for key, amount in inspection_keys(r):
                    out[key] += amount
        for db, n in self.hits.items():
            out["hits"] += n
            out[f"hits.{db}"] += n
            if db.startswith("interpol_"):
                out["hits.interpol"] += n
        units = [self.participants[u] for u in self.senders
                 if u in self.participants and self.participants[u].role == "unit"]
        out["countries"] = len({p.country for p in units})
        out["agencies"] = len({(p.country, p.agency) for p in units})
        return {k: round(v, 6) for k, v in sorted(out.items()) if v}

    def value(self, metric: str) -> float:
        return self.totals().get(metric, 0.0)
