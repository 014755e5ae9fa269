"""The agent side of one replay run: the scenario and its plan, the operation's id on the
hub, the agents over a hub's URL until the end or until stopped (``until_stopped(
replay.run(url, ...), stop)``), and the OCU's report of what happened, marked partial
when stopped. It starts no hub and reads no key folder: ``opshub/replay.py`` composes
those around it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from client.identity import UnitSpec
from client.replay import aar
from client.replay.engine import Replay
from client.replay.report import write_reports
from client.replay.scenario import Scenario, load, resolve
from protocol.errors import UsageError

T = TypeVar("T")

#: what a message's ``operation`` may be (schemas/common.schema.json, operation_code)
OPERATION_ID = re.compile(r"[A-Z0-9][A-Z0-9._-]{1,31}")


def prepare(operation: str, *, seed: int = 1, speed: float | None = None,
            progress: Callable[[str], None] = print) -> Replay:
    """Load ``operation`` (a seeds/ name or a scenario path) and plan its traffic. Raises
    ScenarioError, before anything runs, for a scenario that cannot be replayed."""
    scenario: Scenario = load(resolve(operation))
    return Replay(scenario, seed=seed, speed=speed, progress=progress)


def participants(scenario: Scenario) -> list[UnitSpec]:
    """What each participant's credential says: unit, country, agency, role."""
    return [UnitSpec(p.unit, p.country, p.agency, p.role)
            for p in scenario.participants.values()]


def check_operation_id(text: str) -> str:
    """``text`` if messages may carry it as their operation; UsageError otherwise."""
    if not OPERATION_ID.fullmatch(text):
        raise UsageError(f"{text!r} cannot be an operation id: 2 to 32 upper-case letters, "
                         f"digits, '.', '_' or '-', starting with a letter or digit")
    return text


def pick_operation_id(code: str, taken: Collection[str], requested: str | None = None
                      ) -> str:
    """The id of this run's operation on a hub that already has ``taken``: ``requested``
    if given and free; else the scenario's ``code`` if free; else ``CODE-2``, ``CODE-3``
    ... (the first free one: each rerun on one hub gets the next number). Raises
    UsageError for a requested id that is taken or malformed."""
    if requested is not None:
        check_operation_id(requested)
        if requested in taken:
            raise UsageError(f"the hub already has an operation {requested!r}: choose another "
                             f"--operation-id, or leave it out to number this run")
        return requested
    if code not in taken:
        return code
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = code[: 32 - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        n += 1


async def until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event | None
                        ) -> tuple[T | None, bool]:
    """Run ``work`` until it ends or ``stop`` is set, which cancels it: (its result,
    False), or (None, True) once stopped and cancelled. Raises what ``work`` raises."""
    task = asyncio.ensure_future(work)  # owned here: awaited or cancelled below
    if stop is None:
        return await task, False
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait({task, stopped})
    if task.cancelled() and stop.is_set():
        return None, True
    return task.result(), False


def write(replay: Replay, out: Path, *, partial: bool, extra: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """The OCU's report of the replay as far as it went, written into ``out``."""
    measured = {**replay.outcome(), **(extra or {})}
    report = aar.build(replay.scenario, replay.tally, replay.log, seed=replay.seed,
                       speed="max" if replay.speed is None else str(replay.speed),
                       extra=measured)
    report["partial"] = partial
    if partial:
        report["stopped_after"] = {"sent": replay.sent,
                                   "planned": replay.plan.expected_messages}
    write_reports(report, out)  # creates ``out``
    return report
