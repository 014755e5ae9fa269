"""``opshub replay``: load a scenario, replay it over a hub, write the OCU's after-action
report. The composition of the replay's parts; I/O lives here.

By default the hub is started for the replay as its own ``opshub serve`` process on
127.0.0.1 with a SQLite file, so that the hub and the agents each have a core; with
``hub_url`` the replay uses a running hub whose authority key folder is ``keys``
(the participants are enrolled over its HTTP API).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.bench import HubProcess, enroll_over_http
from client.identity import KeyFolder
from client.replay import aar
from client.replay.engine import Replay, identities_for
from client.replay.scenario import Scenario, load, resolve
from protocol.errors import ScenarioError


async def run_replay(operation: str, *, seed: int = 1, speed: float | None = None,
                     out: Path, db: Path | None = None, hub_url: str | None = None,
                     keys: Path | None = None, progress: Callable[[str], None] = print,
                     hook: Callable[[Replay], None] | None = None) -> dict[str, Any]:
    """Replay ``operation`` (a seeds/ name or a scenario path); returns the report dict
    after writing report.json, report.md and report.html into ``out``. Raises
    ScenarioError (before anything runs) for a scenario that cannot be replayed.
    ``hook`` sees the Replay before it starts (tests use it to inject faults)."""
    from client.replay.report import write_reports

    scenario: Scenario = load(resolve(operation))  # small files, read before anything runs
    with tempfile.TemporaryDirectory(prefix="opshub-replay-") as tmp:
        try:
            replay = Replay(scenario, seed=seed, speed=speed, progress=progress)
        except ValueError as exc:
            raise ScenarioError(f"{scenario.path}: cannot generate the traffic: {exc}"
                                ) from None
        now = int(time.time())
        if hub_url is None:
            authority, ids = identities_for(scenario, now=now)
            KeyFolder(Path(tmp) / "keys").write(authority, list(ids.values()))
            started = HubProcess(Path(tmp) / "keys", db or Path(tmp) / "hub.db")
            hub: HubProcess | None = started
            url = started.url
        else:
            if keys is None:
                raise ScenarioError("--hub needs --keys: the key folder of that hub's authority")
            authority = KeyFolder(keys).authority()
            ids = {u: authority.enroll(_spec(p), now=now - 60)
                   for u, p in scenario.participants.items()}
            # a blocking HTTP client: off the loop (the hub may share it, as in tests)
            await asyncio.to_thread(enroll_over_http, hub_url, list(ids.values()))
            hub, url = None, hub_url
        progress(f"replay   {scenario.name} ({scenario.code}), {scenario.start} to "
                 f"{scenario.end}: {len(scenario.participants)} participants, "
                 f"{len(scenario.storylines)} storylines, {replay.plan.expected_messages} "
                 f"messages planned, seed {seed}, speed {speed or 'max'}, hub {url}")
        if hook is not None:
            hook(replay)
        try:
            extra = await replay.run(url, ids, authority)
        finally:
            if hub is not None:
                extra_cpu = {"hub_cpu_s": round(hub.cpu_seconds(), 2)}
            hub_rc = hub.stop() if hub is not None else None
        if hub is not None:
            extra.update(extra_cpu)
        report = aar.build(scenario, replay.tally, replay.log, seed=seed,
                           speed="max" if speed is None else str(speed), extra=extra)
        report["hub_exit"] = hub_rc
    write_reports(report, out)  # creates ``out``
    return report


def _spec(p: Any) -> Any:
    from client.identity import UnitSpec

    return UnitSpec(p.unit, p.country, p.agency, p.role)
