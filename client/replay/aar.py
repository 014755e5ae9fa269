"""The OCU's after-action report: the published results checked against its tally, and
the tables and series the report shows. Built only from the messages the OCU read or
sent (its ``log``) and the scenario's published figures. Pure; names things by their
codes (countries, commodities, metrics) and leaves wording them to the rendering.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from typing import Any

from client.messages import default_catalog
from client.messages.summary import summarise
from client.messages.values import enum_words
from client.replay.cases import check_cases
from client.replay.scenario import Scenario
from client.replay.tally import Tally, _item_keys, commodity_key


def check(result: dict[str, Any], observed: float) -> bool:
    rule, value = str(result["rule"]), float(result["value"])
    eps = 1e-6 * max(1.0, abs(value))
    if rule == "exact":
        return abs(observed - value) <= eps
    if rule == "at_least":
        return observed >= value - eps
    if rule == "at_most":
        return observed <= value + eps
    tol = float(result.get("tolerance", 0.0)) * value
    return abs(observed - value) <= tol + eps


def _seconds(scenario: Scenario, rfc3339: str) -> float:
    t = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return (t - scenario.t0).total_seconds()


def build(scenario: Scenario, tally: Tally, log: list[dict[str, Any]], *, seed: int,
          speed: str, extra: dict[str, Any] | None = None,
          words: frozenset[str] | None = None) -> dict[str, Any]:
    """The report's dict. ``words``: the catalog's enumerated codes, for the storyline
    steps' one-line summaries (the default catalog's when None)."""
    if words is None:
        words = enum_words(default_catalog())
    totals = tally.totals()
    sources = figure_sources(scenario, totals)
    checks = []
    for r in scenario.results:
        observed = totals.get(r["metric"], 0.0)
        checks.append({"metric": r["metric"], "rule": r["rule"], "published": r["value"],
                       "observed": observed, "ok": check(r, observed),
                       "tolerance": r.get("tolerance"), "text": r["published"]})
    by_id = {m["id"]: m for m in log}
    days: dict[int, Counter[str]] = defaultdict(Counter)
    countries: dict[str, Counter[str]] = defaultdict(Counter)
    units: dict[str, set[str]] = defaultdict(set)
    commodities: dict[str, dict[str, Any]] = {}
    talk: Counter[tuple[str, str]] = Counter()
    waits: dict[str, list[float]] = defaultdict(list)
    for m in log:
        day = int(_seconds(scenario, m["sent_at"]) // 86400) + 1
        days[day]["messages"] += 1
        country = m["sender"]["country"]
        countries[country]["messages"] += 1
        units[country].add(m["sender"]["unit"])
        for to in _recipients(m, by_id, scenario.ocu):
            talk[(m["sender"]["unit"], to)] += 1
        if m["type"] == "rfi_response" and m["refers_to"] in by_id:
            asked = _seconds(scenario, by_id[m["refers_to"]]["sent_at"])
            waits[m["sender"]["unit"]].append((_seconds(scenario, m["sent_at"]) - asked) / 60)
    for r in tally.live_reports():
        day = int(_seconds(scenario, r["sent_at"]) // 86400) + 1
        days[day]["reports"] += 1
        days[day]["items"] += len(r["items"])
        c = r["sender"]["country"]
        countries[c]["reports"] += 1
        countries[c]["items"] += len(r["items"])
        countries[c]["arrests"] += r.get("outcome", {}).get("arrests", 0)
        for item in r["items"]:
            _add_item(commodities, item)
    all_waits = [w for ws in waits.values() for w in ws]
    report: dict[str, Any] = {
        "operation": scenario.code, "name": scenario.name,
        "start": scenario.start.isoformat(), "end": scenario.end.isoformat(),
        "ocu": scenario.ocu, "scenario": _shown(scenario.path), "seed": seed, "speed": speed,
        "messages": int(totals.get("messages", 0)),
        "checks": checks,
        "cases": check_cases(scenario.cases, tally.live_reports()),
        "totals": totals,
        "sources": sources,
        "by_day": [{"day": d, "date": (scenario.start + dt.timedelta(days=d - 1)).isoformat(),
                    "messages": c["messages"], "reports": c["reports"], "items": c["items"]}
                   for d, c in sorted(days.items())],
        "by_country": sorted(({"country": c, "units": sorted(units[c]),
                               "messages": v["messages"], "reports": v["reports"],
                               "items": v["items"], "arrests": v["arrests"]}
                              for c, v in countries.items()),
                             key=lambda r: (-r["reports"], -r["messages"], r["country"])),
        "by_commodity": sorted(commodities.values(),
                               key=lambda r: (-r["items"], r["commodity"])),
        "by_type": dict(sorted(tally.by_type.items(), key=lambda kv: -kv[1])),
        "response_times": {
            "count": len(all_waits),
            "p50_minutes": round(statistics.median(all_waits), 1) if all_waits else None,
            "p90_minutes": round(_pct(all_waits, 90), 1) if all_waits else None,
            "max_minutes": round(max(all_waits), 1) if all_waits else None,
            "by_desk": {d: {"count": len(w), "p50_minutes": round(statistics.median(w), 1),
                            "p90_minutes": round(_pct(w, 90), 1),
                            "max_minutes": round(max(w), 1)}
                        for d, w in sorted(waits.items())}},
        "talk": [{"from": a, "to": b, "messages": n}
                 for (a, b), n in sorted(talk.items(), key=lambda kv: (-kv[1], kv[0]))],
        "storylines": _timelines(scenario, by_id, words),
    }
    report.update(extra or {})
    return report


def figure_sources(scenario: Scenario, totals: dict[str, float]) -> dict[str, str]:
    """Where each figure of ``totals`` comes from: ``published`` (a result checks it),
    ``storylines`` (the documented cases alone give it), or ``generated`` (the traffic the
    generator made up to reach the published figures moved it, and no source gives it)."""
    story = Tally(scenario.participants)
    for step in scenario.steps:
        story.add(step.message, at=step.at)
    from_stories = story.totals()
    published = {r["metric"] for r in scenario.results}
    out = {}
    for metric, value in totals.items():
        if metric in published:
            out[metric] = "published"
        elif abs(value - from_stories.get(metric, 0.0)) <= 1e-6 * max(1.0, abs(value)):
            out[metric] = "storylines"
        else:
            out[metric] = "generated"
    return out


def _shown(path: Any) -> str:
    """The scenario's path, relative to the working directory when it is below it."""
    from pathlib import Path

    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _recipients(m: dict[str, Any], by_id: dict[str, dict[str, Any]], ocu: str) -> list[str]:
    kind = m["type"]
    if kind == "request_for_information":
        return [t["unit"] for t in m["to"]]
    if kind == "warning":
        return [a for a in m["addressees"]]
    if "refers_to" in m and m["refers_to"] in by_id:
        return [by_id[m["refers_to"]]["sender"]["unit"]]
    if m["sender"]["unit"] == ocu:
        return ["all members"]
    return [ocu]


def _add_item(commodities: dict[str, dict[str, Any]], item: dict[str, Any]) -> None:
    """Count a seized item under its commodity: the finest one the tally counts
    (``drug.cocaine``, ``firearm.pistol``; ``ammunition`` for a category without kinds)."""
    keys = _item_keys(item)
    # the tally counts an item under its category and, when it has one, its kind
    key = commodity_key(item)
    category, _, kind = key.partition(".")
    row = commodities.setdefault(key, {"commodity": key, "category": category,
                                       "kind": kind or None, "items": 0, "count": 0,
                                       "kg": 0.0, "quantities": {}})
    row["items"] += 1
    for metric, amount in keys:
        head, _, unit = metric.rpartition(".")
        if head != key:
            continue
        if unit == "count":
            row["count"] += int(amount)
        else:
            row["quantities"][unit] = round(row["quantities"].get(unit, 0.0) + amount, 6)
    row["kg"] = round(row["quantities"].get("kg", 0.0), 3)


def _timelines(scenario: Scenario, by_id: dict[str, dict[str, Any]],
               words: frozenset[str]) -> list[dict[str, Any]]:
    out = []
    steps_by_story: dict[str, list[Any]] = defaultdict(list)
    for st in scenario.steps:
        steps_by_story[st.storyline].append(st)
    for story in scenario.storylines:
        timeline = []
        for st in steps_by_story[story["id"]]:
            m = by_id.get(st.message["id"])
            if m is None:
                continue  # not read by the OCU: a failure the checks show
            timeline.append({"at": m["sent_at"], "from": m["sender"]["unit"],
                             "type": m["type"], "id": m["id"],
                             "summary": summarise(m, words)})
        out.append({"id": story["id"], "title": story["title"],
                    "summary": story["summary"], "timeline": timeline})
    return out


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]
