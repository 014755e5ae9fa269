"""``opshub replay``: a replay composed around its agents (client/replay/run.py): the hub
(a child process of its own, or a running one at ``--hub`` with its key folder, or the
nodes of a cluster at several URLs, the agents spread over them), the participants'
identities, the operation's id on the hub, Ctrl-C, and the report.

Against a running hub, the participants the key folder holds (``units/<UNIT>.json``)
act with that identity; the others get a credential issued after any the hub has on
file, so a replay never displaces a unit's own keys and can run any number of times.
Each run is an operation of its own: the scenario's code, then ``CODE-2``, ``CODE-3``
... (or ``--operation-id``). A wss:// hub's certificate is checked against ``--tls-ca``
(or the system's CAs); ``--tls`` gives the replay's own hub a certificate of a fresh
local CA.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from ssl import SSLContext
from typing import Any, TextIO

from client.identity import KeyFolder
from client.replay.engine import Replay
from client.replay.run import (
    check_operation_id,
    participants,
    pick_operation_id,
    prepare,
    until_stopped,
    write,
)
from client.tls import client_context
from opshub.hubapi import HubNodes, hub_url_list, registrar
from opshub.hubprocess import HubProcess
from opshub.identities import Cast, cast, open_folder, own_identities
from opshub.loops import run
from opshub.tls import trust, write_tls_folder
from protocol.errors import UsageError

#: exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


async def run_replay(operation: str, *, out: Path, seed: int = 1, speed: float | None = None,
                     db: Path | None = None, hub_url: str | Sequence[str] | None = None,
                     keys: Path | None = None, operation_id: str | None = None,
                     progress: Callable[[str], None] = print,
                     status: Callable[[str], None] | None = None,
                     hook: Callable[[Replay], None] | None = None,
                     stop: asyncio.Event | None = None, tls_ca: Path | None = None,
                     tls: bool = False) -> dict[str, Any]:
    """Replay ``operation`` (a seeds/ name or a scenario path) over a hub of its own, or
    over the running hub at ``hub_url`` whose authority's key folder is ``keys`` (or the
    nodes of one cluster: several URLs, or one comma-separated string; the agents are
    spread over them round robin, see ``Replay.run``); write
    report.json, report.md and report.html into ``out`` and return the report. Setting
    ``stop`` ends the replay early: the report is then of what happened so far and
    ``partial``. ``hook`` sees the Replay before it starts (tests inject faults there).
    ``progress`` prints each line; ``status``, on a terminal, shows the progress line
    in place (without it, progress goes to ``progress`` every few seconds). ``tls_ca``:
    the CA that signed a wss:// hub's certificate (default: the system's CAs); ``tls``:
    the replay's own hub serves TLS with a certificate of a fresh local CA.

    Raises ScenarioError for a scenario that cannot be replayed, UsageError for a bad key
    folder, operation id, hub or CA file, and TlsError for a hub whose certificate does
    not verify, each before any message is sent."""
    replay = prepare(operation, seed=seed, speed=speed, progress=progress)
    replay.status = status
    if operation_id is not None:
        check_operation_id(operation_id)
    now = int(time.time())
    if hub_url is None:
        if keys is not None:
            raise UsageError("--keys goes with --hub (a replay's own hub has its own keys)")
        if tls_ca is not None:
            raise UsageError("--tls-ca goes with --hub wss://... (the replay's own hub over "
                             "TLS: --tls)")
        return await _own_hub(replay, cast(participants(replay.scenario), now=now),
                              db=db, out=out, requested=operation_id, hook=hook, stop=stop,
                              tls=tls)
    if keys is None:
        raise UsageError("--hub needs --keys: the key folder of that hub's authority")
    if tls:
        raise UsageError("--tls starts the replay's own hub over TLS; a running hub's "
                         "wss:// URL goes with --tls-ca FILE (the CA that signed its "
                         "certificate)")
    folder = open_folder(keys, authority_key=True)
    specs = participants(replay.scenario)
    own = own_identities(folder, specs)  # problems with the folder before the network
    ssl = trust(hub_url_list(hub_url), tls_ca)
    async with HubNodes(hub_url, registrar(folder.authority(), now=now), ssl=ssl) as nodes:
        on_file = {u: c.credential.issued_at for u, c in (await nodes.directory()).items()}
        chosen = cast(specs, now=now, folder=folder, own=own, on_file=on_file)
        await nodes.enroll(chosen.identities.values())
        replay.op = pick_operation_id(replay.scenario.code, await nodes.operations(),
                                      operation_id)
    if chosen.own:
        progress(f"keys     {len(chosen.own)} participants act with their own identity "
                 f"from {keys}/units: {', '.join(sorted(chosen.own))}")
    stopped = await _replay(replay, nodes.urls, chosen, hook=hook, stop=stop, ssl=ssl)
    return write(replay, out, partial=stopped)


async def _own_hub(replay: Replay, chosen: Cast, *, db: Path | None, out: Path,
                   requested: str | None, hook: Callable[[Replay], None] | None,
                   stop: asyncio.Event | None, tls: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="opshub-replay-") as tmp:
        keys = Path(tmp) / "keys"
        KeyFolder(keys).write(chosen.authority, list(chosen.identities.values()))
        files = write_tls_folder(Path(tmp) / "tls") if tls else None
        replay.op = pick_operation_id(replay.scenario.code, (), requested)
        # no await between starting the child and entering the try: a Ctrl-C, which
        # cancels this task at its next await, cannot leave the child running
        hub = HubProcess(keys, db or Path(tmp) / "hub.db", tls=files)
        try:
            ssl = None if files is None else client_context(files.ca)
            stopped = await _replay(replay, [hub.url], chosen, hook=hook, stop=stop, ssl=ssl)
            cpu = round(hub.cpu_seconds(), 2)
        finally:
            hub_exit = hub.stop()
    return write(replay, out, partial=stopped, extra={"hub_cpu_s": cpu, "hub_exit": hub_exit})


async def _replay(replay: Replay, urls: list[str], chosen: Cast, *,
                  hook: Callable[[Replay], None] | None, stop: asyncio.Event | None,
                  ssl: SSLContext | None) -> bool:
    """Run the agents until the end (False) or until stopped (True)."""
    s = replay.scenario
    where = (f"hub {urls[0]}" if len(urls) == 1
             else f"{len(urls)} hub nodes (agents spread over them) {', '.join(urls)}")
    replay.progress(
        f"replay   {s.name} ({s.code}), {s.start} to {s.end}: {len(s.participants)} "
        f"participants, {len(s.storylines)} storylines, {replay.plan.expected_messages} "
        f"messages planned, seed {replay.seed}, speed {replay.speed or 'max'}, operation "
        f"{replay.op} on {where}")
    if hook is not None:
        hook(replay)
    _, stopped = await until_stopped(
        replay.run(urls, chosen.identities, chosen.authority, ssl=ssl), stop)
    return stopped


# --- the command ----------------------------------------------------------------------


class Terminal:
    """Replay output on a terminal: lines scroll, and the progress line stays under them,
    rewritten in place (carriage return, then erase to the end of the line)."""

    CLEAR = "\r\x1b[K"

    def __init__(self, stream: TextIO, width: int | None = None) -> None:
        self.stream = stream
        # a progress line wider than the terminal wraps, and \r would rewrite only
        # its last row
        self.width = max(20, (width or shutil.get_terminal_size().columns) - 1)
        self._status = ""

    def line(self, text: str) -> None:
        """Print ``text`` above the progress line."""
        self._write(f"{self.CLEAR}{text}\n{self._status}")

    def status(self, text: str) -> None:
        """Show ``text`` as the progress line, in place of the previous one."""
        self._status = text[: self.width]
        self._write(f"{self.CLEAR}{self._status}")

    def close(self) -> None:
        """End the progress line, which stays on screen as it was last drawn."""
        if self._status:
            self._write("\n")
            self._status = ""

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def cmd_replay(args: argparse.Namespace) -> int:
    stop = asyncio.Event()

    def on_start(replay: Replay) -> None:
        # from here on Ctrl-C stops the replay and writes what happened so far; before,
        # it cancels the command as usual (nothing to report yet)
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)

    speed = None if args.speed == "max" else float(args.speed)
    terminal = Terminal(sys.stdout) if sys.stdout.isatty() else None
    try:
        report = run(run_replay(
            args.operation, seed=args.seed, speed=speed, out=args.out, db=args.db,
            hub_url=args.hub, keys=args.keys, operation_id=args.operation_id,
            progress=print if terminal is None else terminal.line,
            status=None if terminal is None else terminal.status, hook=on_start, stop=stop,
            tls_ca=args.tls_ca, tls=args.tls))
    finally:
        if terminal is not None:
            terminal.close()
    partial = report["partial"]
    failed = [c for c in report["checks"] if not c["ok"]]
    rejected = sum(report.get("rejected", {}).values())
    wall = report["wall_seconds"]
    rate = report["messages"] / wall if wall else 0
    reached = "reached so far" if partial else "reproduced"
    decrypted = report.get("decrypted", 0)
    print(f"\n{report['operation_id']}: {report['messages']} messages in {wall:.1f} s "
          f"({rate:,.0f}/s; read {decrypted:,} times by the agents, "
          f"{decrypted / wall if wall else 0:,.0f}/s; {rejected} rejected by agents); "
          f"{len(report['checks']) - len(failed)} of {len(report['checks'])} published "
          f"figures {reached}")
    for c in report["checks"]:
        mark = "ok " if c["ok"] else "..." if partial else "FAIL"
        print(f"  {mark} {c['metric']:<32} {c['rule']:<9} published {_num(c['published']):>12}"
              f"  observed {_num(c['observed']):>12}")
    cases = report.get("cases") or []
    failed += [c for c in cases if not c["ok"]]
    if cases:
        print(f"{sum(c['ok'] for c in cases)} of {len(cases)} documented cases found")
    for c in cases:
        mark = "ok " if c["ok"] else "..." if partial else "FAIL"
        print(f"  {mark} {c['id']:<32} {c['found']}")
    print(f"report   {args.out}/report.json, report.md, report.html")
    if partial:
        after = report["stopped_after"]
        print(f"opshub replay: interrupted after {after['sent']} of {after['planned']} "
              f"messages; the report in {args.out}/ is partial", file=sys.stderr)
        return INTERRUPTED
    return 0 if not failed else 1


def _num(value: float) -> str:
    """1631000 -> '1,631,000'; 500.2 -> '500.2'."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}".rstrip("0")
