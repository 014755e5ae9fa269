"""The parent of a load run: sets up the hub and the operations, starts the load processes,
drives the phases (the --find-max climb included), samples the hub, then finishes,
drains, collects and builds the result (results.py). An Observer sees it happen (the
live progress line; tests use it to pause a process).

Every wait is bounded: processes ready within READY_WITHIN (+ a little per unit), answers
within FINISH_WITHIN, deliveries within the drain timeout. A load process that fails or
exits stops the run with an OpshubError naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from opshub.load import histograms
from opshub.load import messages as m
from opshub.load.e2ee import E2eeConfig, channels
from opshub.load.plan import ADMIN, Assignment, Plan, make_plan
from opshub.load.processes import Workers
from opshub.load.results import Merged, StepOutcome, build, lookup
from opshub.load.series import Series, Window
from opshub.load.spec import LoadOptions
from opshub.load.target import MetricsSampler, Target, create_operations, open_target
from opshub.load.thresholds import evaluate
from opshub.loops import run

log = logging.getLogger("opshub.load")

READY_WITHIN = 60.0
READY_PER_UNIT = 0.02
FINISH_WITHIN = 30.0
#: Seconds from Start to the first intended send (every process has the message by then).
LEAD = 0.3


@dataclass(frozen=True, slots=True)
class RunInfo:
    urls: list[str]
    operations: list[str]
    hub_pid: int | None
    publisher_pids: list[int]
    subscriber_pids: list[int]
    planned_s: float


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed_s: float
    planned_s: float
    stage: str  # "warm-up", "step 2/5 (300/s)", "running", "draining"
    acked_per_s: int
    delivered_per_s: int
    p99_ms: float
    errors: int
    closes: int
    resumes: int


class Observer(Protocol):
    def started(self, info: RunInfo) -> None: ...
    def progress(self, p: Progress) -> None: ...
    def note(self, text: str) -> None: ...


def units_of(opts: LoadOptions) -> Plan:
    """The plan with placeholder operation ids: who takes part, before the hub names the
    operations."""
    count = sum(s.operations for s in opts.shapes)
    return make_plan(opts.shapes, [f"PLAN-{i}" for i in range(count)], opts.seed,
                     e2ee=opts.e2ee)


def run_load(opts: LoadOptions, observer: Observer | None = None) -> dict[str, Any]:
    """Run one load test; returns the result (results.build). Raises UsageError for a
    bad key folder or a hub that is not there, OpshubError if a load process fails."""
    return run(LoadRun(opts, observer or _Quiet()).run())


class _Quiet:
    def started(self, info: RunInfo) -> None:
        pass

    def progress(self, p: Progress) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class LoadRun:
    def __init__(self, opts: LoadOptions, observer: Observer) -> None:
        self.opts = opts
        self.observer = observer
        self.stage = "starting"
        self.steps: list[StepOutcome] = []
        self.best: StepOutcome | None = None
        self.broke: StepOutcome | None = None
        self.hub_rows: list[dict[str, float]] = []

    async def run(self) -> dict[str, Any]:
        opts = self.opts
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        specs = units_of(opts).unit_specs()
        async with open_target(specs, sum(s.operations for s in opts.shapes),
                               hub_url=opts.hub_url, keys=opts.keys, keep=opts.keep,
                               tls_ca=opts.tls_ca, tls=opts.tls,
                               metrics=opts.metrics) as target:
            plan = make_plan(opts.shapes, target.operations, opts.seed, e2ee=opts.e2ee)
            e2ee = channels(plan, target.cast, opts.rotate_messages) if opts.e2ee else None
            if e2ee is None:  # with --e2ee, each operation's OCU creates its channel
                await create_operations(target, ADMIN, plan.operations)
            assignments = plan.split(opts.pub_procs, opts.sub_procs, together=opts.e2ee)
            with self._workers(target, assignments, e2ee) as workers:
                result = await self._load(target, plan, workers)
            if target.hub is not None:
                result["hub"]["peak_rss_mb"] = round(target.hub.peak_rss_mb(), 1)
        if target.hub is not None:
            result["hub"]["exit_status"] = target.hub.proc.returncode
            result["ok"] = result["ok"] and target.hub.proc.returncode == 0
        if opts.keep:
            result["kept"] = str(target.folder)
        result["started_at"] = started_at  # the report dates the run by it
        return result

    @contextlib.contextmanager
    def _workers(self, target: Target, assignments: list[Assignment],
                 e2ee: E2eeConfig | None) -> Iterator[Workers]:
        workers = Workers(target.urls, assignments, target, self.opts.max_inflight, e2ee)
        try:
            yield workers
        finally:
            workers.close()

    async def _load(self, target: Target, plan: Plan, workers: Workers) -> dict[str, Any]:
        series = Series(len(workers.assignments))
        sampler = MetricsSampler(target.metrics, target.ssl())
        try:
            async with asyncio.TaskGroup() as tg:
                pumps = [tg.create_task(workers.pump(i, series))
                         for i in range(len(workers.chans))]
                main = tg.create_task(self._drive(target, plan, workers, series, sampler))
                await asyncio.wait({main})
                for task in pumps:
                    task.cancel()
            return main.result()
        finally:
            await sampler.close()

    async def _drive(self, target: Target, plan: Plan, workers: Workers, series: Series,
                     sampler: MetricsSampler) -> dict[str, Any]:
        opts = self.opts
        units = len(plan.publishers) + len(plan.subscribers)
        await workers.collect(m.Ready, list(range(len(workers.chans))),
                              READY_WITHIN + READY_PER_UNIT * units, "connect")
        pubs, subs = workers.indexes("publishers"), workers.indexes("subscribers")
        self.observer.started(RunInfo(
            target.urls, target.operations, target.hub.pid if target.hub else None,
            [workers.pids[i] for i in pubs], [workers.pids[i] for i in subs],
            opts.planned_seconds))
        if opts.e2ee:  # every agent's key packages are up: the OCUs create the channels
            within = READY_WITHIN + READY_PER_UNIT * units
            workers.send(m.Join(within))
            await workers.collect(m.Joined, list(range(len(workers.chans))), within + 10,
                                  "join the operations' channels")
        t0 = time.monotonic_ns() + int(LEAD * 1e9)
        self.t_measure = t0 + int(opts.warmup * 1e9)
        workers.send(m.Start(t0, self.t_measure))
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(self._watch(series, sampler))
            if opts.find_max:
                await self._climb(workers, pubs, series)
            else:
                await self._phases(workers, pubs, series, t0)
            self.stage = "draining"
            finished = await workers.collect(m.Finished, pubs, FINISH_WITHIN + 10, "finish")
            heads: dict[str, int] = {op: 1 for op in plan.operations}
            directed: Counter[str] = Counter()
            senders: dict[str, dict[str, int]] = {}
            for f in finished:
                for op, seq in f.heads.items():
                    heads[op] = max(heads[op], seq)
                directed.update(f.directed)
                for op, acked in f.senders.items():
                    senders.setdefault(op, {}).update(acked)
            workers.send(m.Drain(heads, dict(directed), opts.drain_timeout, senders), subs)
            await workers.collect(m.Drained, subs, opts.drain_timeout + 10, "drain")
            watcher.cancel()
        workers.send(m.Stop())
        results = await workers.collect(m.Result, list(range(len(workers.chans))),
                                        FINISH_WITHIN, "report")
        workers.stopping = True
        measured_s = opts.planned_seconds
        if opts.find_max:
            measured_s = max(1.0, sum(s.seconds for s in self.steps))
        measured: Counter[str] = Counter()
        for row in series.seconds.values():
            if opts.find_max or row.second < opts.planned_seconds:
                measured.update(row.counts)
        subscribers_of = Counter(s.op for s in plan.subscribers)
        return build(opts, Merged.of(results), heads=heads, subscribers_of=dict(subscribers_of),
                     directed_owed=sum(directed.values()), measured_s=measured_s,
                     measured=measured, rows=series.rows(),
                     hub=self._hub_summary(sampler, started=target.started),
                     steps=self.steps, best=self.best, broke=self.broke,
                     unanswered=sum(f.unanswered for f in finished),
                     operations=target.operations)

    async def _phases(self, workers: Workers, pubs: list[int], series: Series,
                      t0: int) -> None:
        """Every phase at once (they follow each other), then Finish at the end."""
        opts = self.opts
        step_ns = opts.step_seconds * 1_000_000_000
        windows: list[Window] = []
        for k in range(opts.steps):
            start = t0 if k == 0 else self.t_measure + k * step_ns
            end = (self.t_measure + (k + 1) * step_ns if opts.stepped
                   else self.t_measure + int(opts.duration * 1e9))
            workers.send(m.Phase(k, start, end, opts.rates_at(k)), pubs)
            if opts.stepped:
                w = series.open_window(k, k * opts.step_seconds)
                w.last = None if k == opts.steps - 1 else (k + 1) * opts.step_seconds - 1
                windows.append(w)
        end_s = opts.planned_seconds
        await asyncio.sleep(max(0.0, (self.t_measure - time.monotonic_ns()) / 1e9 + end_s))
        workers.send(m.Finish(FINISH_WITHIN), pubs)
        if opts.stepped:
            # the last window stays open through the drain: late deliveries of its step
            await self._wait_settled(workers, series, FINISH_WITHIN)
            self.steps = [self._outcome(w, opts.step_seconds, judge=False) for w in windows]

    async def _climb(self, workers: Workers, pubs: list[int], series: Series) -> None:
        """--find-max: one step at a time, each drained before it is judged."""
        opts = self.opts
        first = 0
        grace = max(2.0, float(opts.step_seconds))
        for k in range(opts.steps):
            start = self.t_measure + first * 1_000_000_000
            end = start + opts.step_seconds * 1_000_000_000
            if k == 0:
                start -= int(opts.warmup * 1e9)
            window = series.open_window(k, first)
            rates = opts.rates_at(k)
            self.stage = f"step {k + 1}/{opts.steps} ({_rates(rates)})"
            workers.send(m.Phase(k, start, end, rates), pubs)
            await asyncio.sleep(max(0.0, (end - time.monotonic_ns()) / 1e9))
            settled = await self._wait_settled(workers, series, grace, after=end)
            window.last = series.newest
            outcome = self._outcome(window, opts.step_seconds, settled=settled, judge=True)
            self.steps.append(outcome)
            self.observer.note(_step_line(outcome))
            if not outcome.passed:
                self.broke = outcome
                break
            self.best = outcome
            now_s = (time.monotonic_ns() - self.t_measure) // 1_000_000_000
            first = max(series.newest + 2, now_s + 1)
        workers.send(m.Finish(FINISH_WITHIN), pubs)

    async def _wait_settled(self, workers: Workers, series: Series, within: float,
                            after: int = 0) -> bool:
        """Wait until the processes' ticks say every delivery owed has arrived (ticks
        from after ``after`` only); False if not ``within`` seconds."""
        after_s = (after - self.t_measure) // 1_000_000_000
        try:
            async with asyncio.timeout(within):
                while not (series.settled() and series.complete_through() >= after_s):
                    workers.ticked.clear()
                    await workers.ticked.wait()
        except TimeoutError:
            return False
        return True

    def _outcome(self, w: Window, seconds: float, *, settled: bool = True,
                 judge: bool) -> StepOutcome:
        """A step's figures, judged against the --find-max objective if ``judge``."""
        opts = self.opts
        rates = opts.rates_at(w.index)
        offered = sum(s.offered(rates[s.name] or 0) for s in opts.shapes)
        figures = {"errors": float(w.counts[m.ERRORS]), "lost": 0.0, "gaps": 0.0,
                   "duplicates": 0.0, "closes": float(w.counts[m.CLOSES]),
                   "resumes": float(w.counts[m.RESUMES]),
                   "rate": (w.counts[m.ACKED] + w.counts[m.DIRECTED_ACKED]) / seconds,
                   "deliveries": (w.counts[m.DELIVERED] + w.counts[m.DIRECTED_DELIVERED])
                   / seconds}
        verdicts = evaluate(opts.slo if judge else (), lambda t: lookup(
            t, latency=w.hist, ack=w.hist, figures=figures))
        return StepOutcome(
            w.index, rates, offered, seconds, w.counts[m.ACKED] + w.counts[m.DIRECTED_ACKED],
            w.counts[m.DELIVERED] + w.counts[m.DIRECTED_DELIVERED], w.counts[m.ERRORS],
            histograms.summary_ms(w.hist), settled, tuple(verdicts))

    async def _watch(self, series: Series, sampler: MetricsSampler) -> None:
        """Every second: sample the hub, tell the observer."""
        opts = self.opts
        second = -1
        while True:
            second += 1
            at = self.t_measure + second * 1_000_000_000
            await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
            sample = await sampler.sample()
            if sample:
                series.hub_sample(second, sample)
                self.hub_rows.append(sample)
            if not opts.find_max and self.stage != "draining":
                k = min(second // opts.step_seconds, opts.steps - 1)
                self.stage = (f"step {k + 1}/{opts.steps} ({_rates(opts.rates_at(k))})"
                              if opts.stepped else "running")
            acked, delivered = series.last_rate()
            c = series.counts
            self.observer.progress(Progress(
                elapsed_s=float(second), planned_s=opts.planned_seconds, stage=self.stage,
                acked_per_s=acked, delivered_per_s=delivered,
                p99_ms=histograms.percentile_ms(series.total, 99), errors=c[m.ERRORS],
                closes=c[m.CLOSES], resumes=c[m.RESUMES]))

    def _hub_summary(self, sampler: MetricsSampler, *, started: bool) -> dict[str, Any]:
        rows = self.hub_rows
        out: dict[str, Any] = {"started": started, "metrics_failures": sampler.failures}

        def peak(key: str) -> float | None:
            values = [r[key] for r in rows if key in r]
            return max(values) if values else None

        cpu = [r["cpu_s"] for r in rows if "cpu_s" in r]
        out["cpu_per_s"] = (round((cpu[-1] - cpu[0]) / max(1, len(cpu) - 1), 3)
                            if len(cpu) > 1 else None)
        out["cpu_s"] = round(cpu[-1] - cpu[0], 3) if len(cpu) > 1 else None
        for key in ("rss_mb", "connections", "queue_bytes", "queue_bytes_max",
                    "store_pending"):
            out[f"{key}_peak"] = peak(key)
        # counters: what moved between the first and the last sample of the run
        for key, name in (("slow_consumers", "slow_consumer_closes"),
                          ("fell_behind", "fell_behind"), ("caught_up", "caught_up")):
            seen = [r[key] for r in rows if key in r]
            out[name] = int(seen[-1] - seen[0]) if len(seen) > 1 else 0
        return out


def _rates(rates: dict[str, float | None]) -> str:
    shown = {f"{r:g}/s" if r is not None else "window" for r in rates.values()}
    return ", ".join(sorted(shown))


def _step_line(s: StepOutcome) -> str:
    lat = s.latency_ms
    verdict = "passed" if s.passed else ("FAILED" if s.settled else "FAILED (fell behind)")
    return (f"step {s.index + 1}: {_rates(s.rates)} per publisher, offered "
            f"{s.offered_per_s:,.0f}/s, in {s.acked / s.seconds:,.0f}/s, p99 "
            f"{lat['p99']:,.1f} ms, max {lat['max']:,.1f} ms: {verdict}")
