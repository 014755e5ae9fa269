"""Hit planting: which databases the generator plants hits in, so that every published
hits figure is met (client/replay/plan.py plants them as records the liaison desks find).

Figures nest: a hit in interpol_sltd counts towards ``hits.interpol_sltd``, towards
``hits.interpol`` (every INTERPOL database) and towards ``hits``. A planted hit must push
no ceiling over at any level: an exact or at-most figure, or the top of an about
figure's tolerance. Pure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from protocol.errors import ScenarioError


def counts_hit(metric: str, db: str) -> bool:
    """Whether a hit in database ``db`` counts towards the hits figure ``metric``."""
    wanted = metric.removeprefix("hits").removeprefix(".")
    return wanted in ("", db) or (wanted == "interpol" and db.startswith("interpol_"))


def hit_level(metric: str) -> int:
    """0 for one database's hits, 1 for all INTERPOL databases', 2 for all hits."""
    return {"hits": 2, "hits.interpol": 1}.get(metric, 0)


def ceiling(result: dict[str, Any], *, tolerance: bool = True) -> float:
    """The most a figure allows: its value, or the top of an about figure's tolerance."""
    if result["rule"] == "about" and tolerance:
        return float(result["value"]) * (1 + float(result.get("tolerance", 0.0)))
    return float(result["value"])


def figure(result: dict[str, Any]) -> str:
    """A published figure as a reader would name it: ``hits.interpol exact 3``."""
    return f"{result['metric']} {result['rule'].replace('_', ' ')} {result['value']:g}"


def needed(results: list[dict[str, Any]], have: Mapping[str, float], desk_dbs: list[str],
           rng: random.Random, *, cannot: Callable[[str], ScenarioError]) -> list[str]:
    """The database of each hit to plant so that every hits figure is met. Figures
    are taken from the most specific up (hits.interpol_sltd, then hits.interpol, then
    hits); each plants exactly its residual (its value less what the storylines and
    the hits planted so far give) in databases of its scope where one more hit
    pushes no ceiling over: an exact or at-most figure, or the top of an about
    figure's tolerance (its value while another database has room), at any level.
    The levels nest, so planting the least each figure needs, most specific first,
    finds an allocation whenever one exists.
    Raises ScenarioError when a figure short of its value has no liaison desk
    answering from its databases, or when every such database is at a ceiling."""
    figures = [r for r in results if r["metric"].split(".")[0] == "hits"]
    ceilings = [r for r in figures if r["rule"] != "at_least"]
    planted: list[str] = []

    def count(metric: str) -> float:
        return have.get(metric, 0.0) + sum(counts_hit(metric, db) for db in planted)

    def over(db: str, *, tolerance: bool = True) -> list[dict[str, Any]]:
        """The ceilings one more hit in ``db`` would push over."""
        return [r for r in ceilings if counts_hit(r["metric"], db)
                and count(r["metric"]) + 1 > ceiling(r, tolerance=tolerance) + 1e-9]

    for r in sorted((r for r in figures if r["rule"] != "at_most"),
                    key=lambda r: hit_level(r["metric"])):
        residual = math.ceil(round(r["value"] - count(r["metric"]), 6))
        if residual <= 0:
            continue
        dbs = [db for db in desk_dbs if counts_hit(r["metric"], db)]
        if not dbs:
            raise cannot(f"{r['metric']} needs a liaison desk answering from that "
                         f"database ({residual} hits beyond the storylines)")
        for done in range(residual):
            free = [db for db in dbs if not over(db)]
            if not free:
                full = dict.fromkeys(figure(f) for db in dbs for f in over(db))
                raise cannot(f"{figure(r)} needs {residual} hits beyond the storylines, "
                             f"but only {done} fit under {' and '.join(full)}")
            # an about figure is aimed at its value; its tolerance is room of last resort
            aimed = [db for db in free if not over(db, tolerance=False)]
            planted.append(rng.choice(aimed or free))
    # iARMS hits first: each costs a third message (its notification)
    return sorted(planted, key=lambda d: d != "interpol_iarms")
