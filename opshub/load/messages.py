"""What the load processes and the parent tell each other over their pipes: one frozen
dataclass per kind, pickled by multiprocessing.

A run, as the parent drives it::

    worker -> Ready            every unit connected (and subscribed; --e2ee: its agent
                               started, its key packages on the hub)
    parent -> Join             --e2ee only: the OCUs create the channels, all wait for keys
    worker -> Joined           every agent holds its operation's first epoch
    parent -> Start            the clock: warm-up from t0, measured from t_measure
    parent -> Phase ...        publishers: a rate per shape from start to end (a step)
    worker -> Tick ...         every second from t_measure: counts and a latency histogram
    parent -> Finish           publishers: no more phases; wait for every answer
    worker -> Finished         the last seq acknowledged per operation, directed per unit
    parent -> Drain            subscribers: wait for these heads and directed counts
    worker -> Drained
    parent -> Stop             close everything and report
    worker -> Result           totals and the encoded histograms
    worker -> Failed           instead of any of these: the process cannot go on

Pure: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Counter names, shared by ticks and results.
SENT = "sent"  # published messages sent (queued on the connection)
ACKED = "acked"  # published messages the hub acknowledged
DIRECTED_SENT = "directed_sent"
DIRECTED_ACKED = "directed_acked"
#: deliveries the acknowledged messages owe (fan-out of each ack, 1 per directed)
EXPECTED = "expected"
DELIVERED = "delivered"  # log entries (kind 0) received once, in order
DIRECTED_DELIVERED = "directed_delivered"
ERRORS = "errors"
GAPS = "gaps"
DUPLICATES = "duplicates"
CLOSES = "closes"
RESUMES = "resumes"


@dataclass(frozen=True, slots=True)
class Ready:
    worker: int
    pid: int


@dataclass(frozen=True, slots=True)
class Join:
    within: float


@dataclass(frozen=True, slots=True)
class Joined:
    worker: int


@dataclass(frozen=True, slots=True)
class Start:
    t0_ns: int
    t_measure_ns: int


@dataclass(frozen=True, slots=True)
class Phase:
    index: int
    start_ns: int
    end_ns: int
    #: shape name -> messages/s per publisher (None: closed loop with the shape's window)
    rates: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Tick:
    worker: int
    second: int
    counts: dict[str, int]
    #: the latency of the deliveries received in this second (encoded), None if none
    hist: bytes | None
    #: publishers: messages in flight and how far behind schedule, at the tick
    inflight: int = 0
    lag_ms: float = 0.0
    #: since the process started (warm-up included): deliveries owed by the acks it
    #: received, and deliveries it received
    expected_total: int = 0
    delivered_total: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    within: float


@dataclass(frozen=True, slots=True)
class Finished:
    worker: int
    #: op -> the highest seq acknowledged
    heads: dict[str, int]
    #: recipient unit -> directed messages the hub accepted for it
    directed: dict[str, int]
    unanswered: int
    #: op -> publishing unit -> its messages the hub acknowledged (what --e2ee readers
    #: count off, sender by sender)
    senders: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Drain:
    heads: dict[str, int]
    directed: dict[str, int]
    within: float
    senders: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Drained:
    worker: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Result:
    worker: int
    counts: dict[str, int]
    #: encoded HdrHistograms (microseconds): delivery latency from the intended send
    #: time, from the actual send time, and publish-to-ack from the intended time
    latency: bytes
    uncorrected: bytes
    ack_latency: bytes
    closes_by_code: dict[int, int] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    #: seconds each resumed subscriber took from its new subscription to the head
    catchup_s: list[float] = field(default_factory=list)
    #: log entries and directed messages still missing at the end
    missing: int = 0
    missing_directed: int = 0
    #: subscribers that ended short of their heads
    short_subscribers: list[str] = field(default_factory=list)
    #: the process's role ("publishers" or "subscribers"), and its CPU seconds
    #: (time.process_time) from Start until Stop
    role: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0  # from Start until Stop
    #: --e2ee: seconds and messages (or calls) in the agents' crypto, by kind (e2ee.py
    #: CryptoMeter), and op -> the epoch its OCU ended at (0: never rotated)
    crypto: dict[str, tuple[float, int]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failed:
    worker: int
    reason: str


ToWorker = Join | Start | Phase | Finish | Drain | Stop
FromWorker = Ready | Joined | Tick | Finished | Drained | Result | Failed
