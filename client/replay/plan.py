"""The traffic generator: from a scenario and a seed, every message the replay sends,
when and by whom, and the simulated databases the liaison desks answer from.

Deterministic for a seed. Storylines are sent as written. Filler seizure reports carry
exactly what the published figures need beyond the storylines (an exact, at-least or
about figure is filled to its published value), spread over the operation's days, units,
places and commodities. Filler warnings, alerts and requests for information fill the
message budget; the messages they cause (feedback from each addressed unit, a desk's
answer) are counted in advance so that the replay carries ``background.messages`` in all.
The tally is never computed from this plan: the OCU counts what it decrypts.
"""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from client.messages import default_catalog
from client.messages.checks import problems
from client.replay import plan_hits
from client.replay import plan_inspections as inspections
from client.replay.scenario import Participant, Scenario, envelope
from client.replay.tally import KIND_FIELDS, SECOND_KIND_FIELDS, Tally, vocabulary
from client.replay.wording import wording
from protocol.errors import ScenarioError

#: Background message ids carry this marker; agents improvise reactions only to these
#: (storyline messages are answered by their storylines).
BACKGROUND = ".BG"
SITREP_HOUR = 20
FEEDBACK_ACTIONS = ["controlled_no_finding", "not_found", "monitored",
                    "not_controlled_too_late"]
_OFFICE = [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 1, 1]

#: an item of each category that can fill the number of reports or items alone (its
#: quantity drawn from _FREE_AMOUNTS)
_FREE_ITEMS: dict[str, dict[str, Any]] = {
    "tobacco": {"category": "tobacco", "product": "cigarettes",
                "quantity": {"value": 0, "unit": "sticks"}},
    "alcohol": {"category": "alcohol", "beverage": "spirits",
                "quantity": {"value": 0, "unit": "l"}},
    "counterfeit_goods": {"category": "counterfeit_goods", "goods": "apparel",
                          "quantity": {"value": 0, "unit": "pieces"}},
    "vehicle": {"category": "vehicle", "count": 1},
    "vessel": {"category": "vessel", "count": 1},
    "waste": {"category": "waste", "quantity": {"value": 0, "unit": "kg"}},
    "other": {"category": "other", "description": "goods held for examination"},
}
_FREE_AMOUNTS = {"tobacco": (200, 20000, 200), "alcohol": (5, 400, 1),
                 "counterfeit_goods": (10, 500, 1), "waste": (50, 5000, 50)}
#: categories filled generically (count or quantity, no other field needed)
GENERIC_FILL = frozenset({"explosive", "vehicle", "vessel", "wildlife", "waste", "tobacco",
                          "alcohol", "counterfeit_goods", "cultural_property", "other"})
#: filler item per commodity key: category, fields, unit of quantity and rounding
DRUG_FORM = {"cocaine": "powder", "cocaine_base": "paste", "cannabis_herb": "herb",
             "cannabis_resin": "resin", "cannabis_plants": "plants", "heroin": "powder",
             "khat": "herb", "methamphetamine": "powder", "psychotropic_other": "tablets",
             "tramadol": "tablets", "mdma": "tablets", "fentanyl": "powder",
             "codeine": "liquid"}


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    sender: str
    message: dict[str, Any] | None  # None: a situation report built by the OCU at run time
    storyline: str | None = None
    day: int = 0


@dataclass(slots=True)
class Plan:
    events: list[Event]
    #: desk unit -> {lookup key -> record of a hit}; a key not there is a miss
    databases: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    expected_messages: int = 0


#: the agents' reactions at run time (client/replay/engine.py): at least REACTION_DELAY
#: after what they answer (a later step of the replay's clock); feedback to a warning
#: within FEEDBACK_SPREAD after that; a desk's answer after response_minutes, and the
#: notification of an iARMS hit NOTIFY_AFTER later
REACTION_DELAY = 3600.0
FEEDBACK_SPREAD = 6 * 3600.0
NOTIFY_AFTER = 60.0


def reaction_within(scenario: Scenario, kind: str) -> float:
    """How long after a background message of type ``kind`` the agents' reactions to it
    may come (0 for one nobody answers)."""
    if kind == "warning":
        return REACTION_DELAY + FEEDBACK_SPREAD
    if kind == "request_for_information":
        hi = float((scenario.background.get("response_minutes") or [20, 120])[1])
        return max(REACTION_DELAY, hi * 60.0) + NOTIFY_AFTER
    return 0.0


def _cannot(scenario: Scenario, reason: str) -> ScenarioError:
    """The error for a scenario whose published figures this generator cannot produce."""
    return ScenarioError(f"{scenario.path}: cannot generate the traffic: {reason}")


def _split(total: float, parts: int, rng: random.Random, *, integer: bool) -> list[float]:
    """``parts`` positive amounts summing to ``total`` exactly (integers if asked)."""
    if parts <= 1:
        return [total]
    weights = [rng.uniform(0.3, 1.7) for _ in range(parts)]
    s = sum(weights)
    if integer:
        return [float(n) for n in _whole_parts(round(total), weights)]
    out = [round(total * w / s, 1) for w in weights]
    out[-1] = round(total - sum(out[:-1]), 6)
    if out[-1] <= 0:
        return [total]
    return out


def _whole_parts(total: int, weights: list[float]) -> list[int]:
    """``total`` as at most ``len(weights)`` whole amounts of at least 1 each, each within
    1 of its weighted share (largest remainders get the units the rounding leaves)."""
    weights = weights[:max(1, min(len(weights), total))]
    rest = total - len(weights)
    if rest < 0:  # a total of 0 or less: one part
        return [total]
    s = sum(weights)
    shares = [rest * w / s for w in weights]
    out = [1 + int(x) for x in shares]
    by_remainder = sorted(range(len(out)), key=lambda k: shares[k] - int(shares[k]),
                          reverse=True)
    for k in by_remainder[:total - sum(out)]:
        out[k] += 1
    return out


class Planner:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.s = scenario
        self.rng = random.Random(f"opshub:{scenario.code}:{seed}")
        self.units = scenario.by_role("unit")
        self.desks = scenario.by_role("liaison")
        self.ocu = scenario.participants[scenario.ocu]
        self.counters: dict[str, int] = {}
        bg = scenario.background
        self.rhythm = bg.get("rhythm") or _OFFICE
        self.commodities: dict[str, float] = bg.get("commodities") or {"drug.cocaine": 1.0}
        self.response = bg.get("response_minutes") or [20, 120]
        #: how filler is worded, and what its warnings suspect: the categories the
        #: scenario names, else the kind of operation's usual ones
        self.words = wording(str(scenario.data["operation"].get("kind", "customs")))
        commodity = set(vocabulary()["category"])
        named = sorted(commodity & ({r["metric"].split(".")[0] for r in scenario.results}
                                    | {k.split(".")[0] for k in bg.get("commodities") or {}}))
        self.suspected = named or list(self.words.commodities)
        fill = bg.get("fill") or {}
        #: categories whose counts are filled one item per unit
        self.one_by_one = frozenset(fill.get("one_by_one", ()))
        #: categories for items that move no published figure
        self.free = self._free_categories(fill.get("free"))

    # --- helpers -----------------------------------------------------------------------

    def _id(self, unit: str) -> str:
        self.counters[unit] = self.counters.get(unit, 0) + 1
        return f"{unit}{BACKGROUND}{self.counters[unit]:04d}".upper()

    def _time(self, day: int | None = None, *, answered: str | None = None) -> float:
        """A time on ``day`` (any day) at the operation's rhythm. For a message of type
        ``answered``, which agents react to, a day early enough that the reactions fall
        inside the operation (the same hour a day or more before, else the latest time
        that leaves room)."""
        day = day if day is not None else self.rng.randrange(self.s.days)
        hour = self.rng.choices(range(24), weights=self.rhythm)[0]
        at = day * 86400.0 + hour * 3600 + self.rng.randrange(3600)
        if answered is not None:
            end, within = self.s.days * 86400.0, reaction_within(self.s, answered)
            while at + within > end and at >= 86400.0:
                at -= 86400.0
            if at + within > end:
                at = max(0.0, end - within)
        return at

    def _unit(self) -> Participant:
        return self.rng.choices(self.units, weights=[u.weight for u in self.units])[0]

    def _message(self, sender: Participant, at: float, body: dict[str, Any]) -> dict[str, Any]:
        m = envelope(self.s.code, sender, self._id(sender.unit), at, body,
                     start_of=self.s.data)
        found = problems(default_catalog(), m)
        if found:  # a bug in this generator, not in the scenario
            raise AssertionError(f"generated {m['type']} is invalid: {found}")
        return m

    def _place(self, unit: Participant) -> dict[str, Any]:
        if unit.places:
            p = dict(self.rng.choice(unit.places))
            return {"country": unit.country, **p}
        return {"country": unit.country, "place_type": "airport"}

    # --- seizure reports ---------------------------------------------------------------

    def _items_for(self, metric: str, amount: float) -> list[dict[str, Any]]:
        """Items that together add ``amount`` to ``metric`` (and to its parents only)."""
        parts = metric.split(".")
        cat = parts[0]
        if (parts[-1] == "count" and cat in ("drug", "currency", "person")
                and not metric.startswith("person.notice.")
                and (cat != "person" or len(parts) != 3)):
            raise _cannot(self.s, f"the generator cannot fill metric {metric!r}")
        if cat == "drug":
            unit = parts[-1]
            n = max(1, min(12, int(math.log10(max(amount, 1)) * 3) + 1))
            out = []
            for v in _split(amount, n, self.rng, integer=unit != "kg"):
                substance = parts[1] if len(parts) == 3 else self._pick("drug", "other")
                out.append({"category": "drug", "substance": substance,
                            "form": DRUG_FORM.get(substance, "other"),
                            "quantity": {"value": v, "unit": unit}})
            return out
        if cat in ("firearm", "firearm_part", "document"):
            field_name = {"firearm": "firearm_type", "firearm_part": "part",
                          "document": "document_status"}[cat]
            default = {"firearm": "pistol", "firearm_part": "magazine",
                       "document": "falsified"}[cat]
            n = (int(amount) if cat in self.one_by_one
                 else max(1, min(int(amount), int(math.sqrt(amount)) + 1)))
            items = []
            for c in _split(amount, n, self.rng, integer=True):
                kind = parts[1] if len(parts) == 3 else self._pick(cat, default)
                item: dict[str, Any] = {"category": cat, field_name: kind, "count": int(c)}
                if cat == "document":
                    item["document_type"] = "passport"
                    item.pop(field_name)
                    item["document_status"] = kind
                items.append(item)
            return items
        if metric == "ammunition.rounds":
            n = max(1, min(20, int(amount // 50) + 1))
            return [{"category": "ammunition", "rounds": int(r)}
                    for r in _split(amount, n, self.rng, integer=True)]
        if cat == "currency":
            counterfeit = metric == "currency.counterfeit.usd"
            n = max(1, min(10, int(math.log10(max(amount, 1)))))
            return [{"category": "currency", "counterfeit": counterfeit,
                     "money": {"amount": v, "currency": "USD"}}
                    for v in _split(amount, n, self.rng, integer=True)]
        if cat == "person":
            role = parts[1] if parts[1] != "notice" else "suspect"
            notice = parts[2] if parts[1] == "notice" else None
            out = []
            for _ in range(int(amount)):
                person: dict[str, Any] = {"role": role, "family_name": "Fictional",
                                          "given_names": f"Person {self.rng.randrange(10**6)}"}
                if notice:
                    person.update(notice=notice, arrested=True)
                out.append({"category": "person", "person": person})
            return out
        if cat in GENERIC_FILL:
            return self._generic_items(cat, parts, amount)
        raise _cannot(self.s, f"the generator cannot fill metric {metric!r}")

    def _generic_items(self, cat: str, parts: list[str], amount: float
                       ) -> list[dict[str, Any]]:
        """Items of a category without figures of its own in the generator (vehicles,
        vessels, wildlife, waste, tobacco ...): ``count`` for a count, ``quantity`` for
        an amount; the kind field where the metric names one (tobacco.cigarettes)."""
        measure = parts[-1]
        integer = measure == "count" or measure not in ("kg", "l")
        n = max(1, min(int(amount) if integer else 12, int(math.sqrt(max(amount, 1))) + 1))
        if measure == "count" and cat in self.one_by_one:
            n = int(amount)
        out = []
        for v in _split(amount, n, self.rng, integer=integer):
            item: dict[str, Any] = {"category": cat}
            if len(parts) == 3 and cat in KIND_FIELDS:
                second = SECOND_KIND_FIELDS.get(cat)
                field = (second if second and parts[1] in vocabulary().get(second, set())
                         else KIND_FIELDS[cat])
                item[field] = parts[1]
            if measure == "count":
                item["count"] = int(v)
            else:
                item["quantity"] = {"value": v, "unit": measure}
            if cat == "other":
                item["description"] = "goods seized during the operation"
            out.append(item)
        return out

    def _pick(self, category: str, default: str) -> str:
        """A kind of ``category`` for filler (by the scenario's commodity weights), never
        one a published figure fixes on its own (an exact, about or at-most figure for
        drug.cocaine must not grow because drug.kg needs more)."""
        fixed = {r["metric"].split(".")[1] for r in self.s.results
                 if r["rule"] != "at_least" and r["metric"].startswith(category + ".")
                 and r["metric"].count(".") == 2}
        keys = [(k.split(".")[1], w) for k, w in self.commodities.items()
                if k.startswith(category + ".") and len(k.split(".")) == 2
                and k.split(".")[1] not in fixed]
        if not keys:
            return default
        return self.rng.choices([k for k, _ in keys], weights=[w for _, w in keys])[0]

    def seizure_reports(self, storyline: Tally) -> list[dict[str, Any]]:
        """Items and report skeletons (unit, time, items, arrests) for the residuals."""
        targets = {r["metric"]: r for r in self.s.results}
        have = storyline.totals()
        items: list[dict[str, Any]] = []
        # most specific first: drug.cocaine.kg before drug.kg
        fillable = [r for r in self.s.results if r["rule"] != "at_most" and r["metric"] not in
                    ("messages", "reports", "items", "arrests", "countries", "agencies")
                    and not r["metric"].startswith(("hits", "messages."))
                    and not inspections.fills(r["metric"])]
        added: dict[str, float] = {}
        for r in sorted(fillable, key=lambda r: -r["metric"].count(".")):
            metric = r["metric"]
            current = have.get(metric, 0.0) + added.get(metric, 0.0)
            residual = round(r["value"] - current, 6)
            if residual <= 0:
                continue
            new = self._items_for(metric, residual)
            probe = Tally({})
            probe.reports["x"] = {"items": new}
            for k, v in probe.totals().items():
                if k not in ("reports", "items", "countries"):
                    added[k] = added.get(k, 0.0) + v
            items.extend(new)
        n_reports = len(storyline.live_reports())
        reports_target = targets.get("reports")
        count = (int(reports_target["value"]) - n_reports if reports_target
                 else max(1, len(items) // 2))
        items_target = targets.get("items")
        if items_target is not None:
            need = int(items_target["value"]) - int(have.get("items", 0)) - len(items)
            items.extend(self._free_items(max(0, need)))
        if count <= 0:
            if items:
                raise _cannot(self.s, "the published number of reports leaves no report "
                              "for the residual figures")
            return []
        if len(items) < count:
            items.extend(self._free_items(count - len(items)))
        self.rng.shuffle(items)
        groups: list[list[dict[str, Any]]] = [[] for _ in range(count)]
        for i, item in enumerate(items):
            groups[i % count if i < count else self.rng.randrange(count)].append(item)
        arrests = targets.get("arrests")
        residual_arrests = int(arrests["value"] - have.get("arrests", 0)) if arrests else 0
        per = _split(residual_arrests, min(count, max(residual_arrests, 1)), self.rng,
                     integer=True) if residual_arrests > 0 else []
        out = []
        for i, group in enumerate(groups):
            out.append({"items": group, "arrests": int(per[i]) if i < len(per) else 0})
        return out

    def _free_categories(self, chosen: list[str] | None) -> list[str]:
        """The categories of items that only make up the number of reports or items:
        ``chosen`` (background.fill.free), else those the scenario names that no exact,
        about or at-most figure fixes and the generator can make alone; else ``other``.
        Never one the scenario does not name: a pollution operation gets no cigarettes."""
        fixed = {r["metric"].split(".")[0] for r in self.s.results if r["rule"] != "at_least"}
        if chosen is not None:
            return [c for c in chosen if c in _FREE_ITEMS] or ["other"]
        named = ({r["metric"].split(".")[0] for r in self.s.results}
                 | {k.split(".")[0] for k in self.commodities}
                 | {i["category"] for st in self.s.steps
                    for i in st.message.get("items", ()) if isinstance(i, dict)})
        return sorted(c for c in named if c in _FREE_ITEMS and c not in fixed) or ["other"]

    def _free_items(self, n: int) -> list[dict[str, Any]]:
        """Items that move no published figure, of the free categories."""
        out = []
        for _ in range(n):
            cat = self.rng.choice(self.free)
            item = copy.deepcopy(_FREE_ITEMS[cat])
            if "quantity" in item:
                low, high, step = _FREE_AMOUNTS[cat]
                item["quantity"]["value"] = self.rng.randrange(low, high, step)
            out.append(item)
        return out

    def report_events(self, skeletons: list[dict[str, Any]]) -> list[Event]:
        events = []
        units = list(self.units)
        self.rng.shuffle(units)
        for i, sk in enumerate(skeletons):
            unit = units[i] if i < len(units) else self._unit()
            at = self._time()
            place = self._place(unit)
            body: dict[str, Any] = {
                "type": "seizure_report", "form": "simplified", "status": "submitted",
                "revision": 1,
                "event": {"when": self.s.when(max(0.0, at - 3600)), "where": place,
                          "direction": self.rng.choice(["import", "export", "transit"]),
                          "detection": {"method": self.rng.choice(self.words.detection)}},
                "items": sk["items"],
                "outcome": {"arrests": sk["arrests"]},
            }
            if any(it["category"] == "person" for it in sk["items"]):
                body["marking"] = {"tlp": "AMBER", "nominal": True}
            events.append(Event(at, unit.unit, self._message(unit, at, body)))
        return events

    def inspection_events(self, storyline: Tally) -> list[Event]:
        """Inspection reports of the scenario's units for what the control figures
        still need (client/replay/plan_inspections.py)."""
        need = inspections.residuals(self.s.results, storyline.totals())
        vocab = vocabulary()
        # where no figure says: an object no figure fixes; an offence's place is where it
        # was found
        fixed = {r["metric"].split(".")[1] for r in self.s.results if r["rule"] != "at_least"
                 and r["metric"].startswith(("inspections.", "offence."))}
        named = {r["metric"].split(".")[1] for r in self.s.results
                 if r["metric"].startswith("inspections.")}
        # where an offence found at a place a figure fixes is put instead: the place
        # most of the units inspect that no figure fixes, else a port by choice
        places = Counter(inspections.LOCUS_OF_PLACE.get(str(p.get("place_type")), "inland")
                         for u in self.units for p in u.places)
        loci = sorted(vocab.get("locus", set()),
                      key=lambda p: (p in fixed, -places[p], p != "port", p))
        bodies = inspections.bodies(
            need, self.rng, loci=loci,
            kinds=sorted(vocab.get("offence_kind", set())),
            objects=sorted(named - fixed) or ["other"],
            one_by_one="inspections" in self.one_by_one,
            cannot=lambda reason: _cannot(self.s, reason))
        events = []
        for body in bodies:
            unit = self._unit()
            at = self._time()
            body.update(when=self.s.when(max(0.0, at - 3600)), where=self._place(unit))
            inspections.locus_found(body, fixed, loci[0])
            events.append(Event(at, unit.unit, self._message(unit, at, body)))
        return events

    # --- filler traffic ----------------------------------------------------------------

    def hits_needed(self, storyline: Tally) -> list[str]:
        """The database of each hit to plant (client/replay/plan_hits.py)."""
        return plan_hits.needed(self.s.results, storyline.totals(),
                                sorted({d for p in self.desks for d in p.databases}),
                                self.rng, cannot=lambda reason: _cannot(self.s, reason))

    def filler(self, budget: int, hits: list[str],
               databases: dict[str, dict[str, dict[str, Any]]]) -> list[Event]:
        """Warnings, alerts and requests (with the messages they cause) worth exactly
        ``budget`` messages; one request per entry of ``hits`` hits a record planted in
        that database."""
        mix = self.s.background.get("mix") or {"warning": 3, "request_for_information": 2,
                                               "alert": 1}
        mix = {k: v for k, v in mix.items() if v > 0 and k != "situation_report"}
        desks = [d for d in self.desks if d.databases]
        if not desks:
            mix.pop("request_for_information", None)
        events: list[Event] = []
        if hits and not desks:
            raise _cannot(self.s, "the published hits need a liaison desk with databases")
        to_plant = list(hits)
        while budget > 0:
            kind = self.rng.choices(list(mix), weights=list(mix.values()))[0] if mix else "alert"
            hit_db = to_plant[0] if to_plant else None
            cost_hit = 3 if hit_db == "interpol_iarms" else 2  # an iARMS hit is notified too
            if hit_db is not None and budget >= cost_hit:
                kind = "request_for_information"
            if kind == "warning" and budget >= 2:
                n = min(budget - 1, self.rng.randint(2, 5), len(self.units))  # a route
                events.append(self._warning(n))
                budget -= 1 + n
            elif kind == "request_for_information" and budget >= 2:
                if hit_db is not None and budget >= cost_hit:
                    events.append(self._request(desks, databases, hit_db=to_plant.pop(0)))
                    budget -= cost_hit
                else:
                    events.append(self._request(desks, databases, hit_db=None))
                    budget -= 2
            else:
                events.append(self._alert())
                budget -= 1
        if to_plant:
            raise _cannot(self.s, f"the message budget leaves no room for {len(to_plant)} "
                          f"more hits")
        return events

    def warning_to(self, unit: Participant) -> Event:
        """A warning for one unit (its feedback follows at run time)."""
        at = self._time(answered="warning")
        kind, description, reason = self.words.warnings[0]
        body = {"type": "warning", "subject": {"kind": kind, "description": description},
                "reason": reason, "suspected_commodities": [self.suspected[0]],
                "requested_action": "control", "addressees": [unit.unit]}
        return Event(at, self.ocu.unit, self._message(self.ocu, at, body))

    def _warning(self, n: int) -> Event:
        at = self._time(answered="warning")
        addressees = self.rng.sample(self.units, min(n, len(self.units)))
        kind, description, reason = self.rng.choice(self.words.warnings)
        body = {"type": "warning", "subject": {"kind": kind, "description": description},
                "reason": reason, "suspected_commodities": [self.rng.choice(self.suspected)],
                "requested_action": "control",
                "addressees": [u.unit for u in addressees]}
        return Event(at, self.ocu.unit, self._message(self.ocu, at, body))

    def _alert(self) -> Event:
        at = self._time()
        alerts = self.words.alerts  # drawn only among several: a seed's traffic stays
        subject, text = alerts[0] if len(alerts) == 1 else self.rng.choice(alerts)
        body = {"type": "alert", "subject": subject, "severity": "info", "body": text}
        return Event(at, self.ocu.unit, self._message(self.ocu, at, body))

    def _request(self, desks: list[Participant], databases: dict[str, dict[str, dict[str, Any]]],
                 *, hit_db: str | None) -> Event:
        """A unit's request to a desk; with ``hit_db``, to a desk answering from that
        database, with a record planted for it there."""
        if hit_db is not None:
            desk = self.rng.choice([d for d in desks if hit_db in d.databases])
            db = hit_db
        else:
            desk = self.rng.choice(desks)
            db = self.rng.choice(list(desk.databases))
        unit = self._unit()
        at = self._time(answered="request_for_information")
        key = f"REF{self.rng.randrange(10**8):08d}"
        body: dict[str, Any] = {"type": "request_for_information", "to": [desk.party()],
                                "databases": [db],
                                "reason": "Routine check of a subject controlled today."}
        if db == "interpol_smv":
            body["subject"] = {"kind": "vehicle"}
            body["query"] = {"vehicle": {"registration": key[:10]}}
            lookup = key[:10]
        elif db in ("interpol_iarms", "atf_etrace"):
            body["subject"] = {"kind": "firearm"}
            body["query"] = {"firearm": {"make": "Unknown make", "serial_number": key}}
            lookup = key
        elif db in ("interpol_nominal", "interpol_notices"):
            # a person: invented, and nominal data all the same
            body["subject"] = {"kind": "person"}
            body["query"] = {"persons": [{"role": "suspect", "family_name": "Fictional",
                                          "given_names": f"Traveller {key[3:]}"}]}
            body["marking"] = {"tlp": "AMBER", "nominal": True}
            lookup = f"Traveller {key[3:]}"
        else:
            body["subject"] = {"kind": "travel_document"}
            body["query"] = {"document": {"kind": "passport", "number": key}}
            body["marking"] = {"tlp": "AMBER", "nominal": True}
            lookup = key
        if hit_db is not None:
            record: dict[str, Any] = {
                "database": db, "reference": f"{db.upper()}-{self.rng.randrange(10**6):06d}",
                "summary": "Record found; the requesting unit is asked to follow up."}
            if db == "interpol_iarms":  # what the desk's hit notification says
                record["recording_country"] = self.rng.choice(
                    ["US", "BR", "FR", "ZA", "DO", "CO"])
                record["recorded_as"] = self.rng.choice(["stolen", "lost", "trafficked"])
            databases.setdefault(desk.unit, {})[lookup] = record
        return Event(at, unit.unit, self._message(unit, at, body))

    def sitreps(self) -> list[Event]:
        return [Event(d * 86400.0 + SITREP_HOUR * 3600, self.ocu.unit, None, day=d + 1)
                for d in range(self.s.days)]


def make_plan(scenario: Scenario, seed: int) -> Plan:
    """Every planned event of a replay, in time order. Raises ScenarioError when the
    published figures cannot be generated from this scenario."""
    planner = Planner(scenario, seed)
    story = Tally(scenario.participants)
    for step in scenario.steps:
        story.add(step.message, at=step.at)
    events = [Event(st.at, st.sender, st.message, st.storyline) for st in scenario.steps]
    events += planner.report_events(planner.seizure_reports(story))
    events += planner.inspection_events(story)
    events += planner.sitreps()
    databases: dict[str, dict[str, dict[str, Any]]] = {}
    total = int(scenario.background["messages"])
    budget = total - len(events)
    if budget < 0:
        raise _cannot(scenario, f"background.messages ({total}) is fewer than the "
                      f"{len(events)} messages the storylines, reports and daily reports "
                      f"need")
    # every unit says something (a feedback to a warning addressed to it alone), so that
    # the countries figure depends on the roster, not on chance
    speaking = {e.sender for e in events}
    for unit in planner.units:
        if unit.unit not in speaking and budget >= 2:
            events.append(planner.warning_to(unit))
            budget -= 2
    hits = planner.hits_needed(story)
    events += planner.filler(budget, hits, databases)
    events.sort(key=lambda e: (e.at, e.sender))
    _check_plan(scenario, events, hits)
    return Plan(events, databases, total)


#: figures that only the run itself produces (reactions, answers, who speaks)
_AT_RUN_TIME = ("messages", "hits", "countries", "agencies")


def _check_plan(scenario: Scenario, events: list[Event], planted_hits: list[str]) -> None:
    """The planned messages alone must meet every figure that does not depend on the
    run: a safety net for what the generator cannot fill (a vehicle count, a fill that
    would push an at-most figure over). Raises ScenarioError naming the figure."""
    from client.replay.aar import check

    tally = Tally(scenario.participants)
    for e in events:
        if e.message is not None:
            tally.add(e.message, at=e.at)
    for db in planted_hits:
        tally.answer_hits.append((f"planned-{len(tally.answer_hits)}", db))
    totals = tally.totals()
    for r in scenario.results:
        if r["metric"].split(".")[0] == "hits":
            observed = totals.get(r["metric"], 0.0)
            if not check(r, observed):
                raise _cannot(scenario, f"{plan_hits.figure(r)} cannot be generated: the "
                              f"planted hits give {observed:g}")
        if r["metric"].split(".")[0] in _AT_RUN_TIME:
            continue
        observed = totals.get(r["metric"], 0.0)
        if not check(r, observed):
            raise _cannot(scenario, f"{plan_hits.figure(r)} cannot be generated: the plan "
                          f"gives {observed:g} (carry it in storylines, or see "
                          f"docs/scenarios.md)")
