"""``opshub teach``: a lesson composed around its runtime (client/teach/runtime.py): a hub
of its own in a child process (the lesson reads that hub's database for the "as the hub
stores it" pane, read-only), the participants' identities, and the lesson page on
``--host``:``--port``. Prints the lesson's link; ``--ready-file`` writes it as JSON once
everything listens (for tests and scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from client.identity import KeyFolder
from client.messages import default_catalog
from client.replay.run import participants
from client.replay.scenario import Scenario, load, resolve
from client.teach import explanations
from client.teach.lesson import lesson_items
from client.teach.runtime import LessonRun
from client.teach.web import make_app
from hub.store.sqlite import LogReader
from opshub.hubprocess import HubProcess
from opshub.identities import cast
from opshub.loops import run
from opshub.webapp import listening, run_until_stopped, stop_on_signals


async def run_lesson(scenario: Scenario, *, host: str, port: int,
                     explanations_file: Path = explanations.DEFAULT,
                     late: tuple[str, ...] = (), ready_file: Path | None = None,
                     stop: asyncio.Event | None = None, say: Any = print) -> None:
    """Serve the lesson until ``stop`` is set (or forever). Raises UsageError (a bad
    explanations file, a late unit that is not a participant, a port in use)."""
    stop = stop or asyncio.Event()
    texts = explanations.load(explanations_file, list(default_catalog().types))
    items = lesson_items(scenario, late=late)
    chosen = cast(participants(scenario), now=int(time.time()))
    with tempfile.TemporaryDirectory(prefix="opshub-teach-") as tmp:
        folder = Path(tmp) / "keys"
        KeyFolder(folder).write(chosen.authority, list(chosen.identities.values()))
        db = Path(tmp) / "hub.db"
        hub = HubProcess(folder, db)
        reader = LogReader(db)
        try:
            lesson = LessonRun(scenario, url=hub.url, identities=chosen.identities,
                               authority=chosen.authority, op=scenario.code,
                               stored=lambda op, after: reader.read_log(op, after),
                               explanations=texts, items=items, hub_label=f"{hub.url} ({db.name})")
            await _serve(lesson, db, host=host, port=port, ready_file=ready_file, stop=stop,
                         say=say)
        finally:
            reader.close()
            hub.stop()


async def _serve(lesson: LessonRun, db: Path, *, host: str, port: int, ready_file: Path | None,
                 stop: asyncio.Event, say: Any) -> None:
    async with listening(make_app(lesson), host, port) as base:
        link = f"{base}/lesson/{lesson.token}"
        s = lesson.scenario
        say(f"lesson {s.code}: {s.name}, {len(s.storylines)} storylines, "
            f"{len(s.steps)} messages, {len(s.participants)} participants, hub {lesson.url}")
        say(f"  open {link}")
        await run_until_stopped(lesson.run(), lesson.stop, stop, ready_file, {
            "url": base, "link": link, "hub": lesson.url, "token": lesson.token,
            "db": str(db), "operation": lesson.op})


def cmd_teach(args: argparse.Namespace) -> int:
    scenario = load(resolve(args.scenario))
    stop = asyncio.Event()

    async def main() -> None:
        stop_on_signals(stop)
        await run_lesson(scenario, host=args.host, port=args.port,
                         explanations_file=args.explanations or explanations.DEFAULT,
                         late=tuple(args.late or ()),
                         ready_file=args.ready_file, stop=stop)

    run(main())
    return 0
