"""What the lesson page shows, as JSON: where the lesson is, every item in brief (for the
sequence diagram, the jump lists and the countries), and the shown item in full, in three
panes: as written, as the hub stores it, as the members read it. Reads a Lesson
(client/teach/runtime.py); decides nothing and changes nothing but its caches.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from client.e2ee.message import HEADER_SIZE, Header
from client.messages import content
from client.messages.catalog import Catalog
from client.messages.render import headline, render_html
from client.messages.summary import summarise
from client.replay.names import type_name
from client.replay.scenario import Scenario
from client.teach import lesson as le
from client.teach.explanations import Explanations
from protocol import frames as f
from protocol.errors import CryptoError
from protocol.store import LogEntry


class Lesson(Protocol):
    """What the view reads of a lesson (client/teach/runtime.py's Lesson)."""

    scenario: Scenario
    op: str
    hub_label: str
    engine: le.LessonEngine
    explanations: Explanations
    catalog: Catalog
    words: frozenset[str]
    #: per item carried out, in item order
    records: list[le.Record]
    #: message id -> the message as sent
    sent: dict[str, dict[str, Any]]
    #: log seq -> unit -> (epoch, what it decrypted equals what was sent)
    reads: dict[int, dict[str, tuple[int, bool]]]

    def epoch_of(self, unit: str) -> int | None:
        """The epoch whose keys ``unit``'s agent holds now."""

    def tried(self, seq: int, unit: str, entry: LogEntry) -> str:
        """What ``unit``'s own keys do with the stored ``entry``."""

#: Bytes of ciphertext shown as hex.
EXCERPT = 48


def lesson_state(run: Lesson) -> dict[str, Any]:
    eng = run.engine
    s = run.scenario
    briefs = [_brief(run, i, item) for i, item in enumerate(eng.items)]
    shown = briefs[: eng.cursor + 1]
    countries: dict[str, dict[str, Any]] = {}
    for p in s.participants.values():
        c = countries.setdefault(p.country, {"code": p.country, "units": [], "messages": 0})
        c["units"].append(p.unit)
    for b in shown:
        if b["kind"] == "message":
            for u in {b["sender"], *b["to"]}:
                countries[s.participants[u].country]["messages"] += 1
    return {
        "scenario": {"code": s.code, "name": s.name, "start": s.start.isoformat(),
                     "days": s.days},
        "operation": run.op, "hub": run.hub_label, "language": run.explanations.language,
        "cursor": eng.cursor, "done": eng.done, "total": len(eng.items),
        "playing": eng.playing, "pace": eng.pace, "follow": eng.follow,
        "moving": eng.moving or eng.done == 0,
        "epoch": eng.epoch, "failure": eng.failure,
        "participants": [_participant(run, p.unit) for p in s.participants.values()],
        "storylines": [{"id": st["id"], "title": st.get("title", st["id"]),
                        "summary": st.get("summary", ""),
                        "first": next((b["index"] for b in briefs
                                       if b.get("storyline") == st["id"]), None)}
                       for st in s.storylines],
        "days": _days(briefs),
        "items": briefs,
        "countries": sorted(countries.values(), key=lambda c: (-c["messages"], c["code"])),
        "current": _detail(run, eng.cursor) if 0 <= eng.cursor < eng.done else None,
    }


def _when(run: Lesson, at: float) -> dict[str, Any]:
    t = run.scenario.t0 + dt.timedelta(seconds=at)
    return {"day": int(at // 86400) + 1, "label": f"Day {int(at // 86400) + 1}, "
            f"{t:%a %d %b} {t:%H:%M} UTC"}


def _brief(run: Lesson, index: int, item: le.Item) -> dict[str, Any]:
    s = run.scenario
    carried = index < len(run.records)
    base = {"index": index, "at": item.at, **_when(run, item.at),
            "done": index < run.engine.done,
            "epoch": run.records[index].epoch if carried else None}
    if isinstance(item, le.MessageItem):
        m = item.message
        to, everyone = le.recipients(m, s.participants, s.ocu, _by_id(run))
        return {**base, "kind": "message", "storyline": item.storyline, "sender": item.sender,
                "to": to, "everyone": everyone, "type": m["type"],
                "type_words": _type_words(run, m["type"]), "id": m["id"],
                "summary": summarise(m, run.words) or headline(m)}
    who = ", ".join(item.units)
    summary = {"create": f"{s.ocu} opens the channel: {len(item.units) + 1} members",
               "remove": f"{s.ocu} removes {who}", "add": f"{s.ocu} adds {who}"}[item.action]
    epoch = base["epoch"]
    return {**base, "kind": "membership", "action": item.action, "storyline": None,
            "sender": s.ocu, "to": [] if item.action == "create" else list(item.units),
            "everyone": item.action == "create", "type": "membership",
            "type_words": "Membership", "id": f"epoch {epoch}" if epoch is not None else "",
            "summary": summary}


def _type_words(run: Lesson, kind: str) -> str:
    node = run.explanations.types.get(kind)
    return str(node["title"]) if node else type_name(kind)


def _by_id(run: Lesson) -> dict[str, dict[str, Any]]:
    return {st.message["id"]: st.message for st in run.scenario.steps}


def _days(briefs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    days: dict[int, dict[str, Any]] = {}
    for b in briefs:
        days.setdefault(b["day"], {"day": b["day"], "first": b["index"],
                                   "label": b["label"].rsplit(" ", 2)[0]})
    return list(days.values())


def _participant(run: Lesson, unit: str) -> dict[str, Any]:
    p = run.scenario.participants[unit]
    m = run.engine.membership[unit]
    return {"unit": unit, "name": p.name, "country": p.country, "agency": p.agency,
            "role": p.role, "member": m.member or unit == run.scenario.ocu,
            "spans": [list(span) for span in m.spans],
            "epoch": run.epoch_of(unit)}


# --- the shown item -----------------------------------------------------------------------


def _detail(run: Lesson, index: int) -> dict[str, Any]:
    item = run.engine.items[index]
    record = run.records[index]
    entry = next((e for e in record.entries if e.seq == record.seq), None)
    if isinstance(item, le.MessageItem):
        written = _written(run, index, item)
        readers = _readers(run, item, record, entry)
    else:
        written = _membership_written(run, item, record)
        readers = _holders(run, item, record)
    return {"index": index, "epoch": record.epoch, "written": written,
            "stored": _stored(run, item, record, entry), "readers": readers}


def _written(run: Lesson, index: int, item: le.MessageItem) -> dict[str, Any]:
    m = run.sent.get(item.message["id"], item.message)
    # the step's meaning comes from its own storyline (a unit warned in another story
    # that reports a seizure is not answering that warning)
    earlier = [i.message for i in run.engine.items[:index]
               if isinstance(i, le.MessageItem) and i.storyline == item.storyline]
    key = le.step_key(m, earlier)
    refs = []
    for ref in _references(m):
        at = next((i for i, it in enumerate(run.engine.items)
                   if isinstance(it, le.MessageItem) and it.message["id"] == ref), None)
        target = run.sent.get(ref) or _by_id(run).get(ref)
        refs.append({"id": ref, "index": at,
                     "headline": headline(target) if target else ref})
    story = next((st for st in run.scenario.storylines if st["id"] == item.storyline), {})
    return {"kind": "message", "type": m["type"], "id": m["id"],
            "headline": headline(m), "summary": summarise(m, run.words),
            "html": render_html(run.catalog, m), "refers": refs,
            "storyline": {"id": item.storyline, "title": story.get("title", item.storyline)},
            "explain": {"type": run.explanations.types.get(m["type"], {}),
                        "step": run.explanations.step(key), "step_key": key},
            "size": len(content.encode(m))}  # what the sender encrypted


def _references(m: dict[str, Any]) -> list[str]:
    found = []
    for k in ("refers_to", "related"):
        v = m.get(k)
        if isinstance(v, str):
            found.append(v)
        elif isinstance(v, list):
            found += [x for x in v if isinstance(x, str)]
    return found


def _membership_written(run: Lesson, item: le.MembershipItem,
                        record: le.Record) -> dict[str, Any]:
    key = {"create": "channel_created", "remove": "member_removed",
           "add": "member_added"}[item.action]
    who = ", ".join(item.units)
    text = run.explanations.membership(key, unit=who, epoch=record.epoch)
    title = {"create": f"{run.scenario.ocu} opens {run.op}: epoch 0, {len(item.units) + 1} "
                       f"members",
             "remove": f"{run.scenario.ocu} removes {who}: epoch {record.epoch}",
             "add": f"{run.scenario.ocu} adds {who}: epoch {record.epoch}"}[item.action]
    return {"kind": "membership", "type": "membership", "id": f"epoch {record.epoch}",
            "action": item.action,
            "units": list(item.units), "headline": title, "summary": text, "html": "",
            "refers": [], "storyline": None,
            "explain": {"type": {}, "step": text, "step_key": key}}


def _stored(run: Lesson, item: le.Item, record: le.Record, entry: LogEntry | None
            ) -> dict[str, Any]:
    hub = run.explanations.hub
    out: dict[str, Any] = {"can_learn": hub["can_learn"], "cannot_learn": hub["cannot_learn"],
                           "entries": len(record.entries), "entry": None}
    if entry is None:
        return out
    stored: dict[str, Any] = {
        "seq": entry.seq, "sender": entry.sender,
        "kind": "commit" if entry.kind == f.KIND_COMMIT else "message",
        "at": dt.datetime.fromtimestamp(entry.at_ms / 1000, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC",
        "header_size": len(entry.header), "header_hex": entry.header.hex(" "),
        "payload_size": len(entry.payload),
        "excerpt_hex": entry.payload[:EXCERPT].hex(" "), "header": None}
    if entry.kind != f.KIND_COMMIT and len(entry.header) == HEADER_SIZE:
        try:
            h = Header.from_bytes(entry.header)
        except CryptoError:
            pass  # shown as bytes only
        else:
            stored["header"] = {"version": entry.header[0], "content_type": h.content_type,
                                "epoch": h.epoch, "sender_leaf": h.sender,
                                "generation": h.generation,
                                "reuse_guard": h.reuse_guard.hex()}
    out["entry"] = stored
    return out


def _readers(run: Lesson, item: le.MessageItem, record: le.Record,
             entry: LogEntry | None) -> list[dict[str, Any]]:
    got = run.reads.get(record.seq or -1, {})
    out = []
    for unit in run.scenario.participants:
        r = le.reading(unit, sender=item.sender, epoch=record.epoch, read=unit in got,
                       history=run.engine.membership.get(unit))
        row: dict[str, Any] = {
            "unit": unit, "can": r.can, "reason": r.reason,
            "text": run.explanations.reading(r.reason, unit=unit, epoch=record.epoch,
                                             joined=r.joined, removed=r.removed)}
        if unit in got:
            row["same"] = got[unit][1]
        if not r.can and entry is not None and run.engine.membership[unit].spans:
            row["tried"] = run.tried(entry.seq, unit, entry)
        out.append(row)
    return out


def _holders(run: Lesson, item: le.MembershipItem, record: le.Record
             ) -> list[dict[str, Any]]:
    out = []
    for unit in run.scenario.participants:
        holds = unit in record.holders
        row = {"unit": unit, "can": holds, "reason": "holds" if holds else "no_keys",
               "text": (f"{unit} holds the keys of epoch {record.epoch}" if holds
                        else f"{unit} has no keys for epoch {record.epoch}")}
        out.append(row)
    return out
