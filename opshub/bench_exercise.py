"""``opshub bench exercise``: how late the director's console shows the traffic, and what
the exercise process costs. It starts ``opshub exercise`` in a process of its own (its own
hub), starts the clock, and follows the console as a browser does: server-sent events,
then a fetch of the state. For each message it sees for the first time, the lag is the
time of that fetch's answer minus the time the OCU's agent read the message (both on the
machine's monotonic clock, which processes share). The exercise process's CPU comes from
/proc. The page's own rendering (a few ms) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _follow(base: str, token: str, seconds: float, lags: list[float],
                  cpu_of: Any, cpu: list[float]) -> int:
    """Follow the console for ``seconds`` of running clock (or until the exercise ends);
    returns the messages seen and
    puts the exercise process's cores in use meanwhile into ``cpu``."""
    seen: set[int] = set()
    async with aiohttp.ClientSession() as http:
        # the operation's days before the exercise's start play at once; measure after
        quiet, last = 0, -1
        while quiet < 10:
            async with http.get(f"{base}/api/director/{token}/state") as r:
                total = (await r.json())["tally"]["messages"]
            quiet, last = (quiet + 1, last) if total == last else (0, total)
            await asyncio.sleep(0.2)
        control = f"{base}/api/director/{token}/control"
        async with http.post(control, json={"action": "resume"}) as r:
            r.raise_for_status()
        async with http.get(f"{base}/api/director/{token}/state") as r:
            seen.update(m["seq"] for m in (await r.json())["traffic"])  # read before: not timed
        cpu0, wall0 = cpu_of(), time.monotonic()
        async with http.get(f"{base}/api/events/{token}") as events:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                line = await asyncio.wait_for(events.content.readline(), timeout=20)
                if not line.startswith(b"event: change"):
                    continue
                async with http.get(f"{base}/api/director/{token}/state") as r:
                    state = await r.json()
                now = time.monotonic()
                if state["clock"]["status"] == "ended":
                    break  # after the end the operation's last days play at once
                for m in state["traffic"]:
                    if m["seq"] in seen or m.get("read_at") is None:
                        continue
                    seen.add(m["seq"])
                    lags.append(max(0.0, now - m["read_at"]) * 1000)
                    if os.environ.get("OPSHUB_BENCH_TRACE"):
                        print(f"{now:.3f} {m['read_at']:.3f} {m['sender']} {m['type']}",
                              file=sys.stderr)
        cpu.append((cpu_of() - cpu0) / (time.monotonic() - wall0))
    return len(seen)


def bench_exercise(*, exercise: str, seconds: float, speed: float) -> dict[str, Any]:
    lags: list[float] = []
    with tempfile.TemporaryDirectory(prefix="opshub-bench-exercise-") as tmp:
        ready = Path(tmp) / "ready.json"
        log = Path(tmp) / "exercise.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "opshub", "exercise", exercise, "--port", "0",
                 "--speed", str(speed), "--ready-file", str(ready), "--out",
                 str(Path(tmp) / "out")], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"opshub exercise did not start:\n{log.read_text()}")
                time.sleep(0.1)
            info = json.loads(ready.read_text())
            token = info["links"]["director"].rsplit("/", 1)[1]
            cpu: list[float] = []
            seen = asyncio.run(_follow(info["url"], token, seconds, lags,
                                       lambda: _cpu_seconds(proc.pid), cpu))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    p = _percentiles(lags)
    return {"exercise": exercise, "speed": speed, "seconds": seconds, "messages": seen,
            "lag_ms": p, "exercise_cpu_cores": round(cpu[0], 3),
            "ok": seen > 0 and p["p99"] <= 250 and cpu[0] < 1.0}


def _percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles of every lag (exact: a few thousand values at most)."""
    ordered = sorted(values) or [0.0]

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": ordered[-1]}


def cmd_bench_exercise(args: argparse.Namespace) -> int:
    result = bench_exercise(exercise=args.exercise, seconds=args.duration, speed=args.speed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if result["ok"] else 1
