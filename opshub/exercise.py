"""``opshub exercise``: a tabletop exercise composed around its runtime
(client/exercise/runtime.py): the hub (a child process of its own, or a running one at
``--hub`` with its key folder, or the nodes of a cluster at several URLs, the agents
spread over them), the participants' identities, the operation id of each run, and the
web app on ``--host``:``--port``. Prints the director's link and each seat's;
``--ready-file`` writes them as JSON once everything listens (for tests and scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from ssl import SSLContext
from typing import Any

from client.exercise import exercise_file
from client.exercise.exercise_file import Exercise
from client.exercise.runtime import ExerciseRun, links
from client.exercise.web import make_app
from client.identity import KeyFolder
from client.replay.run import participants, pick_operation_id
from opshub.hubapi import HubNodes, hub_url_list, registrar
from opshub.hubprocess import HubProcess
from opshub.identities import Cast, cast, open_folder, own_identities
from opshub.loops import run
from opshub.tls import trust
from opshub.webapp import listening, run_until_stopped, stop_on_signals
from protocol.errors import UsageError


def load(name: str, seats: list[str] | None) -> Exercise:
    """The exercise file (a seeds/exercises name or a path), with ``seats`` instead of its
    own when given. Raises ScenarioError or UsageError."""
    path = Path(name)
    if not path.exists():
        path = exercise_file.EXERCISES_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in exercise_file.EXERCISES_DIR.glob("*.yaml")))
        raise UsageError(f"no exercise {name!r} (known: {known})")
    ex = exercise_file.load(path)
    if seats:
        unknown = [u for u in seats if u not in ex.scenario.participants]
        if unknown:
            raise UsageError(f"no participant {', '.join(unknown)} in {ex.scenario.code}")
        ex = dataclasses.replace(ex, seats=tuple(seats))
    return ex


async def run_exercise(ex: Exercise, *, host: str, port: int, speed: float, seed: int = 1,
                       out: Path | None = None,
                       hub_url: str | Sequence[str] | None = None,
                       keys: Path | None = None,
                       ready_file: Path | None = None,
                       stop: asyncio.Event | None = None,
                       say: Any = print, tls_ca: Path | None = None) -> None:
    """Serve the exercise until ``stop`` is set (or forever); over a hub of its own, or
    the one at ``hub_url`` (or the nodes of one cluster: several URLs, or one
    comma-separated string; ``tls_ca``: the CA that signed a wss:// hub's certificate).
    Raises UsageError for a bad key folder, hub or CA file, TlsError for a hub whose
    certificate does not verify, before anything listens."""
    stop = stop or asyncio.Event()
    now = int(time.time())
    specs = participants(ex.scenario)
    if hub_url is None:
        if keys is not None or tls_ca is not None:
            raise UsageError("--keys and --tls-ca go with --hub (an exercise's own hub has "
                             "its own keys)")
        chosen = cast(specs, now=now)
        with tempfile.TemporaryDirectory(prefix="opshub-exercise-") as tmp:
            folder = Path(tmp) / "keys"
            KeyFolder(folder).write(chosen.authority, list(chosen.identities.values()))
            hub = HubProcess(folder, Path(tmp) / "hub.db")
            try:
                base = pick_operation_id(ex.scenario.code, (), None)
                await _serve(ex, [hub.url], chosen, base, host=host, port=port, speed=speed,
                             seed=seed, out=out, ready_file=ready_file, stop=stop, say=say,
                             ssl=None)
            finally:
                hub.stop()
        return
    if keys is None:
        raise UsageError("--hub needs --keys: the key folder of that hub's authority")
    kf = open_folder(keys, authority_key=True)
    own = own_identities(kf, specs)
    ssl = trust(hub_url_list(hub_url), tls_ca)
    async with HubNodes(hub_url, registrar(kf.authority(), now=now), ssl=ssl) as nodes:
        on_file = {u: c.credential.issued_at for u, c in (await nodes.directory()).items()}
        chosen = cast(specs, now=now, folder=kf, own=own, on_file=on_file)
        await nodes.enroll(chosen.identities.values())
        base = pick_operation_id(ex.scenario.code, await nodes.operations(), None)
    await _serve(ex, nodes.urls, chosen, base, host=host, port=port, speed=speed, seed=seed,
                 out=out, ready_file=ready_file, stop=stop, say=say, ssl=ssl)


async def _serve(ex: Exercise, urls: list[str], chosen: Cast, base: str, *, host: str,
                 port: int, speed: float, seed: int, out: Path | None,
                 ready_file: Path | None, stop: asyncio.Event, say: Any,
                 ssl: SSLContext | None) -> None:
    def operation_id(n: int) -> str:
        return base if n == 1 else f"{base}.R{n}"

    runtime = ExerciseRun(ex, url=urls, identities=chosen.identities,
                          authority=chosen.authority, operation_id=operation_id, seed=seed,
                          speed=speed, out=out, ssl=ssl)
    async with listening(make_app(runtime), host, port) as base_url:
        runtime.base_url = base_url
        found = links(runtime, base_url)
        say(f"exercise {ex.name}: {ex.scenario.name}, seats {', '.join(ex.seats)}, "
            f"{len(ex.injects)} injects, hub {', '.join(urls)}")
        for who, link in found.items():
            say(f"  {who:<16} {link}")
        await run_until_stopped(runtime.run(), runtime.stop, stop, ready_file,
                                {"url": base_url, "links": found, "hub": urls[0],
                                 "hubs": urls})


def cmd_exercise(args: argparse.Namespace) -> int:
    ex = load(args.exercise, args.seat)
    stop = asyncio.Event()

    async def main() -> None:
        stop_on_signals(stop)
        await run_exercise(ex, host=args.host, port=args.port, speed=args.speed,
                           seed=args.seed, out=args.out, hub_url=args.hub, keys=args.keys,
                           tls_ca=args.tls_ca,
                           ready_file=args.ready_file, stop=stop)

    run(main())
    return 0
