"""What a load shape is made of: message sizes, arrival rates, and the shape itself.

Pure: every parser raises UsageError whose message starts with ``where`` (the option or
the profile field the text came from), names the bad value and says what is accepted.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from opshub.load.thresholds import Threshold
from protocol.errors import UsageError

#: Each payload starts with two 8-byte times (intended and actual send, traffic.STAMP).
MIN_SIZE = 16
#: The hub's default max_payload (protocol.md 14.1).
MAX_SIZE = 262_144
#: A stepped rate or a --find-max ladder has at most this many steps.
MAX_STEPS = 64

SIZE_FORMS = "N (bytes), A-B (uniform) or lognormal:MEDIAN:SIGMA"
RATE_FORMS = ("R (messages/s per publisher) or START:STOP:STEP (stepped, e.g. "
              "100:1000:100)")


@dataclass(frozen=True, slots=True)
class SizeSpec:
    """Payload sizes in bytes: fixed, uniform in [low, high], log-normal, or drawn from
    ``samples`` (kind "sample": the sizes of a scenario's messages)."""

    text: str
    kind: str  # "fixed", "uniform", "lognormal" or "sample"
    low: float
    high: float = 0.0
    samples: tuple[int, ...] = ()

    def sample(self, rng: random.Random) -> int:
        """One size, within MIN_SIZE .. MAX_SIZE."""
        if self.kind == "fixed":
            return int(self.low)
        if self.kind == "sample":
            return min(MAX_SIZE, max(MIN_SIZE, self.samples[rng.randrange(len(self.samples))]))
        if self.kind == "uniform":
            return rng.randint(int(self.low), int(self.high))
        # low: the median, high: sigma of the underlying normal
        size = round(rng.lognormvariate(math.log(self.low), self.high))
        return min(MAX_SIZE, max(MIN_SIZE, size))


def _number(text: str, where: str, what: str, *, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise UsageError(f"{where}: {what} {text!r} is not a{'n integer' if integer else ' number'}"
                         ) from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: {what} {text!r} is not a finite number")
    return value


def _in_size_range(value: float, where: str, text: str) -> None:
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise UsageError(f"{where}: size {text!r} is outside {MIN_SIZE}..{MAX_SIZE} bytes (the "
                         f"first {MIN_SIZE} carry the send times; {MAX_SIZE} is the hub's "
                         f"max_payload)")


def parse_size(text: str, where: str = "--size") -> SizeSpec:
    """``1024``, ``512-4096`` or ``lognormal:1024:0.5``. Raises UsageError."""
    text = str(text).strip()
    if text.startswith("lognormal:"):
        parts = text.split(":")
        if len(parts) != 3:
            raise UsageError(f"{where}: {text!r} is not lognormal:MEDIAN:SIGMA "
                             f"(e.g. lognormal:1024:0.5)")
        median = _number(parts[1], where, "median")
        sigma = _number(parts[2], where, "sigma")
        _in_size_range(median, where, text)
        if not 0 < sigma <= 4:
            raise UsageError(f"{where}: sigma {parts[2]!r} must be above 0 and at most 4")
        return SizeSpec(text, "lognormal", median, sigma)
    if "-" in text:
        lo, _, hi = text.partition("-")
        low = _number(lo, where, "size", integer=True)
        high = _number(hi, where, "size", integer=True)
        for value in (low, high):
            _in_size_range(value, where, text)
        if low > high:
            raise UsageError(f"{where}: {text!r} is an empty range (A-B needs A <= B)")
        return SizeSpec(text, "uniform", low, high)
    if not text.lstrip("+").isdigit():
        raise UsageError(f"{where}: {text!r} is not a size: expected {SIZE_FORMS}")
    size = _number(text, where, "size", integer=True)
    _in_size_range(size, where, text)
    return SizeSpec(text, "fixed", size)


@dataclass(frozen=True, slots=True)
class RateSpec:
    """Messages per second per publisher, one value per step (one for a constant rate)."""

    text: str
    rates: tuple[float, ...]

    @property
    def stepped(self) -> bool:
        return len(self.rates) > 1

    def ladder(self) -> tuple[float, ...]:
        """The rates --find-max climbs: the steps, or R, 2R, 3R ... for a constant R."""
        if self.stepped:
            return self.rates
        return tuple(self.rates[0] * k for k in range(1, MAX_STEPS + 1))


def parse_rate(text: str, where: str = "--rate") -> RateSpec:
    """``500`` or ``100:1000:100`` (start, stop included, step). Raises UsageError."""
    text = str(text).strip()
    parts = text.split(":")
    if len(parts) not in (1, 3):
        raise UsageError(f"{where}: {text!r} is not a rate: expected {RATE_FORMS}")
    values = [_number(p, where, "rate") for p in parts]
    if any(v <= 0 for v in values):
        raise UsageError(f"{where}: every part of {text!r} must be above 0")
    if len(values) == 1:
        return RateSpec(text, (values[0],))
    start, stop, step = values
    if stop < start:
        raise UsageError(f"{where}: {text!r} stops below its start (START:STOP:STEP climbs)")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_STEPS:
        raise UsageError(f"{where}: {text!r} has {count} steps; at most {MAX_STEPS}")
    return RateSpec(text, tuple(round(start + k * step, 6) for k in range(count)))


DEFAULT_RATE = parse_rate("1000")
DEFAULT_SIZE = parse_size("1024")


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """One kind of traffic: ``operations`` operations, each with ``publishers`` publishing
    and ``subscribers`` subscribed units; open loop at ``rate`` per publisher, or closed
    loop with ``window`` messages in flight per publisher. Raises UsageError (naming the
    field, prefixed by ``where``) for values out of range."""

    name: str = "load"
    operations: int = 1
    publishers: int = 1
    subscribers: int = 30
    rate: RateSpec | None = field(default=DEFAULT_RATE)
    window: int | None = None
    directed: float = 0.0
    size: SizeSpec = field(default=DEFAULT_SIZE)
    where: str = field(default="", compare=False, repr=False)
    #: the scenario shape (scenario_shape.py): its participants are the publishers (each
    #: at its share of ``rate``, which is then the operation's total) and the subscribers
    scenario: ScenarioMix | None = None

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> UsageError:
            return UsageError(f"{self.where}{name}: {why}")

        for name, low in (("operations", 1), ("publishers", 1), ("subscribers", 0)):
            value = getattr(self, name)
            if type(value) is not int or value < low:
                raise bad(name, f"expected an integer >= {low}, got {value!r}")
        if (self.rate is None) == (self.window is None):
            raise bad("rate", "give a rate (open loop) or a window (closed loop), not both")
        if self.window is not None and (type(self.window) is not int or self.window < 1):
            raise bad("window", f"expected an integer >= 1, got {self.window!r}")
        if (not isinstance(self.directed, int | float) or isinstance(self.directed, bool)
                or not 0 <= self.directed <= 1):
            raise bad("directed", f"expected a share between 0 and 1, got {self.directed!r}")
        if self.directed > 0 and self.subscribers == 0:
            raise bad("directed", "directed messages go to a subscriber: needs subscribers >= 1")

    @property
    def steps(self) -> int:
        return len(self.rate.rates) if self.rate is not None else 1

    def rate_at(self, step: int) -> float | None:
        """The rate per publisher in step ``step`` (the last one held), None if closed."""
        if self.rate is None:
            return None
        return self.rate.rates[min(step, len(self.rate.rates) - 1)]

    def offered(self, rate: float) -> float:
        """Messages/s this shape offers at ``rate`` (per publisher; a scenario's total)."""
        if self.scenario is not None:
            return rate * self.operations
        return rate * self.publishers * self.operations

    def describe(self) -> str:
        if self.scenario is not None:
            return self.scenario.describe(self)
        load = (f"window {self.window}" if self.rate is None
                else f"{self.rate.text} msg/s per publisher")
        extra = f", {self.directed:.0%} directed" if self.directed else ""
        return (f"{self.name}: {self.operations} op x {self.publishers} pub x "
                f"{self.subscribers} sub, {load}, size {self.size.text}{extra}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """One run of ``opshub load``: the shapes, how long, what to check, where."""

    shapes: tuple[Shape, ...]
    duration: float = 10.0
    warmup: float = 1.0
    step_seconds: int = 5
    find_max: bool = False
    #: the objective --find-max keeps (Threshold objects, see thresholds.py)
    slo: tuple[Threshold, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    #: a running hub's URL, or the URLs of the nodes of one cluster (None: start a hub)
    hub_url: str | tuple[str, ...] | None = None
    #: the base URLs of those nodes' /metrics listeners, one per hub URL in order (None:
    #: each hub URL's host at its port + 1, target.metrics_urls)
    metrics: tuple[str, ...] | None = None
    keys: Path | None = None
    #: the CA that signed a wss:// hub's certificate (None: the system's CAs)
    tls_ca: Path | None = None
    #: the started hub serves TLS with a certificate of a fresh local CA
    tls: bool = False
    keep: bool = False
    pub_procs: int = 1
    sub_procs: int = 2
    max_inflight: int = 10_000
    drain_timeout: float = 60.0
    seed: int = 1
    #: real SecureAgents publish and read (e2ee.py); the OCU of each operation rotates
    #: its keys every ``rotate_messages`` messages (None: SecureAgent's default)
    e2ee: bool = False
    rotate_messages: int | None = None

    @property
    def steps(self) -> int:
        """Phases of the run: the longest stepped rate, or the --find-max ladder."""
        if self.find_max:
            return max(len(s.rate.ladder()) if s.rate else 1 for s in self.shapes)
        return max(s.steps for s in self.shapes)

    @property
    def stepped(self) -> bool:
        return self.find_max or self.steps > 1

    @property
    def planned_seconds(self) -> float:
        """Measured seconds planned (for --find-max: if every step passes, drains aside)."""
        return self.steps * self.step_seconds if self.stepped else self.duration

    def rates_at(self, step: int) -> dict[str, float | None]:
        """Shape name -> rate per publisher in ``step`` (None: closed loop)."""
        out: dict[str, float | None] = {}
        for s in self.shapes:
            if s.rate is None:
                out[s.name] = None
            elif self.find_max:
                ladder = s.rate.ladder()
                out[s.name] = ladder[min(step, len(ladder) - 1)]
            else:
                out[s.name] = s.rate_at(step)
        return out


# --- the scenario shape's participants (built by scenario_shape.py) ---------------------


@dataclass(frozen=True, slots=True)
class MixUnit:
    unit: str  # its name on the hub: PREFIX + the scenario's
    role: str  # "ocu", "unit" or "liaison"
    #: messages it sends in a replay of the seed
    messages: int


@dataclass(frozen=True, slots=True)
class ScenarioMix:
    """Who takes part in a scenario's operation, what share of its messages each sends,
    and how large those messages are."""

    code: str
    source: str
    seed: int
    units: tuple[MixUnit, ...]  # the OCU first
    #: role -> encoded sizes of the planned messages it draws from
    sizes: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def ocu(self) -> MixUnit:
        return self.units[0]

    @property
    def total(self) -> int:
        return sum(u.messages for u in self.units)

    @property
    def publishers(self) -> list[MixUnit]:
        return [u for u in self.units if u.messages]

    def share(self, unit: MixUnit) -> float:
        return unit.messages / self.total

    def size_for(self, role: str | None) -> SizeSpec:
        """The sizes ``role`` draws from (None: every planned message's)."""
        chosen = dict(self.sizes).get(role or "", ()) or dict(self.sizes)[""]
        return SizeSpec(f"{self.code} {role or 'all'} messages", "sample", min(chosen),
                        max(chosen), chosen)

    def describe(self, shape: Shape) -> str:
        rate = (f"{shape.rate.text} msg/s in all" if shape.rate is not None
                else f"window {shape.window}")
        every = self.size_for(None).samples
        return (f"{shape.name}: scenario {self.code} (seed {self.seed}), 1 op x "
                f"{len(self.units)} participants ({len(self.publishers)} publish, the OCU "
                f"{self.share(self.ocu):.1%}; all read), {rate}, sizes of its "
                f"{len(every):,} planned messages (median {statistics.median(every):,.0f} B, "
                f"{min(every):,}-{max(every):,} B)")
