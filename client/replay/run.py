"""``opshub replay``: load a scenario, replay it over an embedded hub, write the OCU's
after-action report. The composition of the replay's parts; I/O lives here."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.replay import aar
from client.replay.engine import Replay, identities_for
from client.replay.scenario import Scenario, load, resolve


async def run_replay(operation: str, *, seed: int = 1, speed: float | None = None,
                     out: Path, db: Path | None = None,
                     progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay ``operation`` (a seeds/ name or a scenario path); returns the report dict
    after writing report.json, report.md and report.html into ``out``. Raises
    ScenarioError (before anything runs) for a scenario that cannot be replayed."""
    from client.replay.report import write_reports

    scenario: Scenario = load(resolve(operation))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="opshub-replay-") as tmp:
        db_path = db or Path(tmp) / "hub.db"
        authority, ids = identities_for(scenario, now=int(time.time()))
        replay = Replay(scenario, seed=seed, speed=speed, db=db_path, progress=progress)
        progress(f"replay   {scenario.name} ({scenario.code}), {scenario.start} to "
                 f"{scenario.end}: {len(scenario.participants)} participants, "
                 f"{len(scenario.storylines)} storylines, {replay.plan.expected_messages} "
                 f"messages planned, seed {seed}, speed {speed or 'max'}")
        extra = await replay.run(ids, authority)
        report = aar.build(scenario, replay.tally, replay.log, seed=seed,
                           speed="max" if speed is None else str(speed), extra=extra)
        report["wall_seconds"] = extra["wall_seconds"]
    write_reports(report, out)
    return report
