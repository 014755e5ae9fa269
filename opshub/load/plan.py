"""Who takes part in a load run and where each one runs: the units, the run's operations,
and the split of publishers and subscribers over the load processes.

Pure. Units are named by role and number (LOAD-OCU creates every operation; LOAD-PUB-0001
...; LOAD-SUB-00001 ...), so runs against one hub reuse the names (with new credentials)
and the hub's directory does not grow with every run; operations are the run's own,
``LOAD-<run>-<i>``, with a run number no operation on the hub uses yet.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from client.identity import UnitSpec
from opshub.load.spec import Shape, SizeSpec

ADMIN = "LOAD-OCU"


@dataclass(frozen=True, slots=True)
class PublisherSpec:
    unit: str
    op: str
    shape: str
    #: deliveries one published message makes (the operation's subscribers)
    fanout: int
    #: the units a directed message may go to
    recipients: tuple[str, ...]
    window: int | None
    directed: float
    size: SizeSpec
    seed: int
    #: of the shape's rate this publisher sends (a scenario participant's share)
    share: float = 1.0


@dataclass(frozen=True, slots=True)
class SubscriberSpec:
    unit: str
    op: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one load process runs."""

    index: int
    role: str  # "publishers" or "subscribers"
    publishers: tuple[PublisherSpec, ...] = ()
    subscribers: tuple[SubscriberSpec, ...] = ()

    @property
    def units(self) -> list[str]:
        return [p.unit for p in self.publishers] + [s.unit for s in self.subscribers]


@dataclass(frozen=True, slots=True)
class Plan:
    shapes: tuple[Shape, ...]
    #: op -> its members other than ADMIN
    operations: dict[str, tuple[str, ...]]
    publishers: tuple[PublisherSpec, ...]
    subscribers: tuple[SubscriberSpec, ...]
    #: --e2ee: op -> the OCU unit that creates its channel, reads it and rotates its keys
    admins: dict[str, str] = field(default_factory=dict)

    def unit_specs(self) -> list[UnitSpec]:
        """ADMIN (an OCU: it creates the operations) first, then every other unit once
        (the operations' OCUs with --e2ee as OCUs)."""
        admins = set(self.admins.values())
        names = dict.fromkeys([*(p.unit for p in self.publishers),
                               *(s.unit for s in self.subscribers)])
        return [UnitSpec(ADMIN, "BE", "load", "ocu"),
                *(UnitSpec(u, "BE", "load", "ocu" if u in admins else "unit") for u in names)]

    def split(self, pub_procs: int, sub_procs: int, *, together: bool = False
              ) -> list[Assignment]:
        """Publishers over ``pub_procs`` processes and subscribers over ``sub_procs``
        (round robin, so each operation's subscribers are spread), never an empty one.
        ``together`` (--e2ee: a unit is one agent): a publisher that also subscribes runs
        in its subscriber's process, and publisher processes take the others."""
        readers = {s.unit for s in self.subscribers} if together else set()
        alone = tuple(p for p in self.publishers if p.unit not in readers)
        out: list[Assignment] = []
        pubs = max(1, min(pub_procs, len(alone))) if alone or not together else 0
        for k in range(pubs):
            out.append(Assignment(len(out), "publishers", publishers=alone[k::pubs]))
        subs = min(sub_procs, len(self.subscribers))
        for k in range(subs):
            mine = self.subscribers[k::subs]
            units = {s.unit for s in mine} & readers
            out.append(Assignment(len(out), "subscribers", subscribers=mine, publishers=tuple(
                p for p in self.publishers if p.unit in units)))
        return out


def run_operations(taken: Collection[str], count: int, prefix: str = "LOAD") -> list[str]:
    """``count`` operation ids ``<prefix>-<run>-<i>`` with a run number that no operation in
    ``taken`` uses."""
    run_no = 1
    while any(op.startswith(f"{prefix}-{run_no}-") for op in taken):
        run_no += 1
    return [f"{prefix}-{run_no}-{i + 1}" for i in range(count)]


def make_plan(shapes: Sequence[Shape], ops: Sequence[str], seed: int = 1, *,
              e2ee: bool = False) -> Plan:
    """The plan for ``shapes`` over the operation ids ``ops`` (one per operation of the
    shapes, in order). With ``e2ee`` each operation has an OCU of its own that creates its
    channel and reads it (LOAD-OCU-0001 ..., or a scenario's OCU): a reader more, and the
    deliveries a message owes leave out its sender (an agent does not receive its own)."""
    need = sum(s.operations for s in shapes)
    assert len(ops) == need, f"{len(ops)} operation ids for {need} operations"
    operations: dict[str, tuple[str, ...]] = {}
    admins: dict[str, str] = {}
    pubs: list[PublisherSpec] = []
    subs: list[SubscriberSpec] = []
    named = {"PUB": 0, "SUB": 0}  # LOAD-PUB-... and LOAD-SUB-... units so far
    ids = iter(ops)
    for shape in shapes:
        for _ in range(shape.operations):
            op = next(ids)
            if shape.scenario is not None:
                mix = shape.scenario
                members = [u.unit for u in mix.units]
                subs += [SubscriberSpec(u, op) for u in members]
                pubs += [PublisherSpec(unit=u.unit, op=op, shape=shape.name,
                                       fanout=len(members) - (1 if e2ee else 0),
                                       recipients=(), window=shape.window, directed=0.0,
                                       size=mix.size_for(u.role),
                                       seed=seed * 1_000_003 + len(pubs) + k, share=mix.share(u))
                         for k, u in enumerate(mix.publishers)]
                operations[op] = tuple(members)
                if e2ee:
                    admins[op] = mix.ocu.unit
                continue
            readers = [f"LOAD-SUB-{named['SUB'] + k + 1:05d}" for k in range(shape.subscribers)]
            if e2ee:
                admins[op] = f"LOAD-OCU-{len(admins) + 1:04d}"
                subs.append(SubscriberSpec(admins[op], op))
            writers = [f"LOAD-PUB-{named['PUB'] + k + 1:04d}" for k in range(shape.publishers)]
            named["SUB"] += len(readers)
            named["PUB"] += len(writers)
            subs += [SubscriberSpec(u, op) for u in readers]
            pubs += [PublisherSpec(unit=u, op=op, shape=shape.name,
                                   fanout=len(readers) + (op in admins),
                                   recipients=tuple(readers), window=shape.window,
                                   directed=shape.directed, size=shape.size,
                                   seed=seed * 1_000_003 + len(pubs) + k)
                     for k, u in enumerate(writers)]
            operations[op] = (*writers, *([admins[op]] if op in admins else []), *readers)
    return Plan(tuple(shapes), operations, tuple(pubs), tuple(subs), admins)
