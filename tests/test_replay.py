"""The replay end to end: a scenario played by agents over a real hub on 127.0.0.1,
checked against its published figures; deterministic; no plaintext at the hub; a unit
that loses its connection mid-replay loses nothing; bad scenarios stop before anything
runs."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from client.identity import KeyFolder, UnitSpec
from client.replay.engine import Replay, identities_for
from client.replay.scenario import SEEDS_DIR, load
from client.secure import SecureAgent
from hub.app import RunningHub
from hub.config import HubConfig
from opshub.cli import main
from opshub.replay import Terminal, run_replay
from protocol.errors import ScenarioError, UsageError

MINI = Path(__file__).parent / "data" / "mini-scenario.yaml"
VOLATILE = ("wall_seconds", "hub_cpu_s", "scenario", "agents_max_rss_mb")  # measures


def _quiet(_line: str) -> None:
    pass


async def _replay(tmp_path: Path, name: str = "out", **kw: Any) -> dict[str, Any]:
    kw.setdefault("progress", _quiet)
    return await run_replay(str(kw.pop("scenario", MINI)), out=tmp_path / name, **kw)


def _read_db(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.glob("hub.db*"))


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in VOLATILE}


async def test_replay_mini_reproduces_every_figure(tmp_path: Path) -> None:
    """Every published figure of the small scenario comes out of the OCU's tally, the
    three report files are written and no agent rejected anything."""
    report = await _replay(tmp_path)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert report["messages"] == 120
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["checks"] == \
        report["checks"]
    assert set(report["rejected"].values()) == {0}
    assert report["hub_exit"] == 0


async def test_replay_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    """Two replays with the same seed write the same report; another seed differs."""
    a = await _replay(tmp_path, "a", seed=3)
    b = await _replay(tmp_path, "b", seed=3)
    c = await _replay(tmp_path, "c", seed=4)
    assert _stable(a) == _stable(b)
    assert _stable(a) != _stable(c)
    assert all(ch["ok"] for ch in c["checks"])


async def test_replay_hub_database_holds_no_plaintext(tmp_path: Path) -> None:
    """Texts of storyline and generated messages are nowhere in the hub's SQLite file
    or WAL after a replay."""
    db = tmp_path / "hub.db"
    await _replay(tmp_path, db=db)
    raw = _read_db(tmp_path)
    assert len(raw) > 100_000
    for marker in ["Matches the courier profile", "Passenger on the morning flight",
                   "Routine check of a subject", "seizure_report", "Lome airport"]:
        assert marker.encode() not in raw, marker


async def test_replay_unit_that_drops_mid_replay_loses_nothing(tmp_path: Path) -> None:
    """A unit whose connection drops half-way reconnects, resumes and still answers its
    warnings: the figures stay exact and equal to an undisturbed replay's."""
    calm = await _replay(tmp_path, "calm", seed=5)
    dropped: list[int] = []

    def inject(replay: Replay) -> None:
        async def drop(window: int) -> None:
            if window in (5, 25):
                await replay.agents["TG-CUSTOMS"].agent.conn.drop()
                dropped.append(window)
        replay.on_window = drop

    stormy = await _replay(tmp_path, "stormy", seed=5, hook=inject)
    assert dropped == [5, 25]
    assert all(c["ok"] for c in stormy["checks"])
    assert stormy["totals"] == calm["totals"]
    assert stormy["rejected"]["TG-CUSTOMS"] == 0


async def test_replay_unit_killed_and_restarted_mid_replay_loses_nothing(
        tmp_path: Path) -> None:
    """A unit agent killed half-way (its keys and state gone) and started again rejoins
    through a new epoch and carries on: every figure is as in an undisturbed replay."""
    calm = await _replay(tmp_path, "calm", seed=6)
    restarted: list[int] = []

    def inject(replay: Replay) -> None:
        async def kill_and_restart(window: int) -> None:
            if window != 20:
                return
            unit = replay.agents["SN-CUSTOMS"]
            old = unit.agent
            assert unit.task is not None
            unit.task.cancel()
            await old.close()
            fresh = SecureAgent(old.conn.url, old.identity, list(old.authority_keys),
                                reads=old.reads, packages=4)
            await fresh.start()
            restarted.append(await fresh.rejoin(replay.op))
            unit.agent = fresh
            unit.start()
        replay.on_window = kill_and_restart

    stormy = await _replay(tmp_path, "stormy", seed=6, hook=inject)
    assert restarted
    assert restarted[0] >= 1
    assert all(c["ok"] for c in stormy["checks"])
    assert stormy["totals"] == calm["totals"]


def _broken(tmp_path: Path, change: Any) -> Path:
    data = yaml.safe_load(MINI.read_text())
    change(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(("change", "where", "says"), [
    (lambda d: d["participants"][2].update(country="XX"), "/participants/2/country",
     "ISO 3166-1"),
    (lambda d: d["storylines"][0]["steps"][1].update({"from": "ZZ-NOBODY"}),
     "/storylines/0/steps/1/from", "not a participant"),
    (lambda d: d["results"].append({"metric": "drug.cocaine.kg", "rule": "exact",
                                    "value": 1, "published": "one kilo"}),
     "/results/7/value", "cannot be reached"),
    (lambda d: d["storylines"][0]["steps"][2]["message"].update(refers_to="@nowhere"),
     "/storylines/0/steps/2/message/refers_to", "earlier step"),
    (lambda d: d["results"].append({"metric": "inspections.count", "rule": "exact",
                                    "value": 40, "published": "40 inspections"}),
     "/results/7/metric", "not a metric"),
])
async def test_replay_invalid_scenario_fails_before_running(tmp_path: Path, change: Any,
                                                            where: str, says: str) -> None:
    """A bad country code, an unknown participant, an unreachable figure or a dangling
    reference is reported with file, line and path, and no hub is started."""
    path = _broken(tmp_path, change)
    db = tmp_path / "never.db"
    with pytest.raises(ScenarioError) as info:
        await _replay(tmp_path, scenario=path, db=db)
    problems = [p for p in info.value.problems if p.path == where]
    assert problems, [str(p) for p in info.value.problems]
    assert says in problems[0].message
    assert problems[0].line is not None
    assert f"broken.yaml:{problems[0].line}" in str(problems[0])
    assert not db.exists()


async def test_replay_figure_the_generator_cannot_fill_fails_before_running(
        tmp_path: Path) -> None:
    """A published figure that neither the storylines nor the generator can produce (a
    count of people with no role) stops the replay before it runs."""
    path = _broken(tmp_path, lambda d: d["results"].append(
        {"metric": "person.count", "rule": "exact", "value": 5, "published": "5 people"}))
    db = tmp_path / "never.db"
    with pytest.raises(ScenarioError, match=r"cannot .*person\.count"):
        await _replay(tmp_path, scenario=path, db=db)
    assert not db.exists()


async def test_replay_vehicle_sweep_example_reproduces_its_figures(tmp_path: Path) -> None:
    """The non-customs example of docs/scenarios.md (a stolen-vehicle sweep) replays
    with every figure reproduced."""
    report = await _replay(tmp_path, scenario=MINI.parent / "vehicle-sweep.yaml")
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []


def test_replay_cli_exits_nonzero_when_a_check_fails(tmp_path: Path, capsys) -> None:
    """`opshub replay` prints each check and exits 1 when a published figure is missed
    (here a message count the scenario's traffic cannot reach)."""
    path = _broken(tmp_path, lambda d: d["results"][0].update(value=500))
    assert main(["replay", str(path), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "FAIL messages" in out
    assert json.loads((tmp_path / "o" / "report.json").read_text())["checks"][0]["ok"] is False


def test_scenario_check_accepts_the_seeds(capsys) -> None:
    """`opshub scenario check` accepts every scenario in seeds/."""
    seeds = sorted(SEEDS_DIR.glob("*.yaml"))
    assert len(seeds) >= 3
    assert main(["scenario", "check", *map(str, seeds)]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(seeds)


@pytest.mark.slow
@pytest.mark.parametrize("operation", [
    "trigger-vii", "calypso-2", "cocair-v", "liberterra-2", "30-days-at-sea-3"])
async def test_replay_seed_operation_reproduces_every_published_figure(
        tmp_path: Path, operation: str) -> None:
    """Each documented operation replays with every published figure reproduced."""
    report = await _replay(tmp_path, scenario=operation)
    assert [(c["metric"], c["observed"]) for c in report["checks"] if not c["ok"]] == []


async def test_replay_iarms_hit_is_answered_and_notified_once(tmp_path: Path) -> None:
    """A desk that finds an iARMS record answers the request and notifies the INTERPOL
    General Secretariat, the WCO and the recording country's NCB; the tally counts each
    such hit once."""
    def iarms(d: dict[str, Any]) -> None:
        d["participants"][1]["databases"] = ["interpol_iarms"]
        d["results"][5] = {"metric": "hits.interpol_iarms", "rule": "exact", "value": 2,
                           "published": "two iARMS hits"}

    report = await _replay(tmp_path, scenario=_broken(tmp_path, iarms))
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert report["by_type"]["hit_notification"] == 2
    assert report["totals"]["hits.interpol_iarms"] == 2
    assert report["messages"] == 120
    assert set(report["rejected"].values()) == {0}


async def test_replay_against_a_running_hub(tmp_path: Path, hub, keys) -> None:
    """With --hub and --keys the replay enrols its participants with a hub that is
    already running (signed by that hub's authority) and replays over it."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    report = await _replay(tmp_path, hub_url=hub.url, keys=folder)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert "hub_cpu_s" not in report


async def test_replay_at_a_speed_factor_follows_the_virtual_clock(tmp_path: Path) -> None:
    """With a speed factor the replay waits for the virtual clock: the two days of the
    small operation at 172,800x real time take at least a second, and every figure is
    still reproduced."""
    report = await _replay(tmp_path, speed=172_800.0)
    assert report["speed"] == "172800.0"
    assert report["wall_seconds"] >= 1.0
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []


async def test_replay_generic_categories_are_filled(tmp_path: Path) -> None:
    """Figures of categories the generator fills generically (vehicles recovered,
    cigarettes in sticks, waste in kg) come out of the tally exactly."""
    def more(d: dict[str, Any]) -> None:
        d["results"] += [
            {"metric": "vehicle.count", "rule": "exact", "value": 7, "published": "7 cars"},
            {"metric": "tobacco.cigarettes.sticks", "rule": "exact", "value": 24000,
             "published": "24,000 cigarettes"},
            {"metric": "waste.kg", "rule": "at_least", "value": 1500.5,
             "published": "over 1.5 t of waste"}]
    report = await _replay(tmp_path, scenario=_broken(tmp_path, more))
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert report["totals"]["vehicle.count"] == 7


async def test_replay_several_hit_figures_are_each_met(tmp_path: Path) -> None:
    """Hit figures per database and their total are met together (each residual is
    planted in its own database)."""
    def hits(d: dict[str, Any]) -> None:
        d["results"][5] = {"metric": "hits.interpol", "rule": "exact", "value": 6,
                           "published": "six INTERPOL hits"}
        d["results"] += [
            {"metric": "hits.interpol_sltd", "rule": "exact", "value": 2,
             "published": "two stolen passports"},
            {"metric": "hits.interpol_smv", "rule": "exact", "value": 4,
             "published": "four stolen cars"}]
    report = await _replay(tmp_path, scenario=_broken(tmp_path, hits))
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []


async def _hub_json(hub: Any, keys: Any, path: str) -> Any:
    """GET an API path signed by OCU-BB, a registrar (sees every operation and unit)."""
    headers = keys["OCU-BB"].sign_request("GET", path, at=int(time.time()))
    async with aiohttp.ClientSession() as http, \
            http.get(f"{hub.http}{path}", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_replay_twice_against_one_running_hub(tmp_path: Path, hub, keys) -> None:
    """Two replays of one scenario against the same running hub both reproduce every
    figure: the second runs as its own operation on the hub, numbered after the first."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    first = await _replay(tmp_path, "first", hub_url=hub.url, keys=folder)
    second = await _replay(tmp_path, "second", hub_url=hub.url, keys=folder)
    for report in (first, second):
        assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    assert (first["operation_id"], second["operation_id"]) == ("MINI-1", "MINI-1-2")
    assert first["totals"] == second["totals"]
    ops = {o["op"] for o in (await _hub_json(hub, keys, "/v1/operations"))["operations"]}
    assert {"MINI-1", "MINI-1-2"} <= ops


async def test_replay_acts_as_the_key_folder_units(tmp_path: Path, hub, keys) -> None:
    """A participant the key folder already holds (enrolled with the hub just now) is
    played with that identity, not re-issued: the hub keeps the folder's credential."""
    folder = tmp_path / "hub-keys"
    own = keys.authority.enroll(UnitSpec("TG-CUSTOMS", "TG", "customs"), now=keys.now)
    KeyFolder(folder).write(keys.authority, [own])
    hub.hub.preload([own.signed])
    report = await _replay(tmp_path, hub_url=hub.url, keys=folder)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    on_file = await _hub_json(hub, keys, "/v1/directory/TG-CUSTOMS")
    assert on_file == own.signed.to_json()


async def test_replay_operation_id_names_the_run(tmp_path: Path, hub, keys) -> None:
    """`operation_id` names the run's operation on the hub and in every message; an id
    the hub already has is refused before anything is sent."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    report = await _replay(tmp_path, hub_url=hub.url, keys=folder, operation_id="DRILL-7")
    assert report["operation_id"] == "DRILL-7"
    assert report["operation"] == "MINI-1"
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    with pytest.raises(UsageError, match="already has an operation 'DRILL-7'"):
        await _replay(tmp_path, "again", hub_url=hub.url, keys=folder, operation_id="DRILL-7")
    assert not (tmp_path / "again").exists()


class AgentBug(Exception):
    """A bug planted in one agent's message handling."""


async def test_replay_agent_that_fails_stops_the_replay_at_once(tmp_path: Path) -> None:
    """A bug in one agent's handling of a message ends the replay with that error at
    once (its task has an owner), instead of leaving the others waiting for it."""
    def inject(replay: Replay) -> None:
        async def plant(window: int) -> None:
            if window == 3:
                def broken(m: Any, body: dict[str, Any]) -> None:
                    raise AgentBug(body["id"])
                replay.agents["TG-CUSTOMS"].on_message = broken  # type: ignore[method-assign]
        replay.on_window = plant

    async with asyncio.timeout(30):
        with pytest.raises((AgentBug, ExceptionGroup)) as info:
            await _replay(tmp_path, hook=inject)
    if isinstance(info.value, ExceptionGroup):
        assert info.value.subgroup(AgentBug) is not None, info.value


async def test_replay_held_units_send_nothing_planned_and_read_the_room(
        tmp_path: Path) -> None:
    """Units held by people (exercise seats) send none of their planned messages and read
    what the operation carries through ``on_held``; a ``pace`` hook is asked for every
    window's end, in order, instead of the speed factor."""
    scenario = load(MINI)
    authority, ids = identities_for(scenario, now=int(time.time()))
    running = RunningHub(HubConfig(host="127.0.0.1", port=0, db=tmp_path / "hub.db",
                                   authorities=(authority.public_key,)))
    running.hub.preload([i.signed for i in ids.values()])
    paced: list[float] = []

    async def pace(t: float) -> None:
        paced.append(t)

    replay = Replay(scenario, pace=pace, held=frozenset({"TG-CUSTOMS"}))
    read: list[tuple[str, str]] = []
    replay.on_held = lambda unit, _m, body: read.append((unit, body["sender"]["unit"]))
    async with running:
        await replay.run(running.url, ids, authority)
    assert replay.not_sent > 0
    assert paced == sorted(paced)
    assert len(paced) > 1
    assert {u for u, _ in read} == {"TG-CUSTOMS"}
    assert "OCU-MINI" in {sender for _, sender in read}
    assert all(m["sender"]["unit"] != "TG-CUSTOMS" for m in replay.log)


MESSAGE_LINE = re.compile(r"day (\d+) +(\d\d:\d\d)  (\S+) +(\S.*)$")


async def test_replay_at_a_speed_factor_prints_each_message_with_its_virtual_time(
        tmp_path: Path) -> None:
    """At a speed factor a person can follow, each message the OCU reads or sends gets a
    line with its virtual day and time, in order, instead of one batch per virtual day
    (the small operation is too fast to follow at 172,800x, so the test raises the
    view's limit), and the progress ends at 100 %."""
    lines: list[str] = []

    def follow(replay: Replay) -> None:
        replay.view.max_rate = 1_000.0

    report = await _replay(tmp_path, speed=172_800.0, progress=lines.append, hook=follow)
    shown = [m.groups() for line in lines if (m := MESSAGE_LINE.match(line))]
    assert len(shown) == report["messages"] == 120
    times = [(int(day), hhmm) for day, hhmm, _, _ in shown]
    assert times == sorted(times)
    assert ("1", "08:00", "OCU-MINI") in {(d, t, s) for d, t, s, _ in shown}
    assert not [line for line in lines if line.startswith(" " * 9)]  # no day batches
    assert lines[-2].startswith("progress 100 %  120 of 120 messages")


def test_replay_cli_at_max_speed_prints_day_summaries_and_progress(tmp_path: Path,
                                                                   capsys) -> None:
    """At max speed `opshub replay` keeps one summary per virtual day with its
    documented cases, no line per message, and (not on a terminal) progress lines
    ending at 100 %."""
    assert main(["replay", str(MINI), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    days = [line[:18] for line in out if line.startswith("day ")]
    assert days[0] == "day 1   2024-03-04"
    assert days == sorted(set(days))  # once per day, in order (how many: the traffic's)
    assert any(line.startswith("end ") for line in out)
    assert any(line.startswith(" " * 9) and "warning" in line for line in out)
    assert not [line for line in out if MESSAGE_LINE.match(line)]
    progress = [line for line in out if line.startswith("progress")]
    assert progress[-1].startswith("progress 100 %  120 of 120 messages")
    assert "\r" not in "".join(out)


def test_replay_terminal_keeps_the_progress_line_under_the_messages() -> None:
    """On a terminal the progress line is rewritten in place: a message line clears it,
    is printed, and the progress line is drawn again under it; closing ends it."""
    screen = io.StringIO()
    terminal = Terminal(screen, width=80)
    terminal.status("progress  10 %")
    terminal.status("progress  20 %")
    terminal.line("day 1    08:00  OCU-MINI  warning")
    terminal.close()
    assert screen.getvalue() == (
        "\r\x1b[Kprogress  10 %" "\r\x1b[Kprogress  20 %"
        "\r\x1b[Kday 1    08:00  OCU-MINI  warning\n" "progress  20 %" "\n")
