"""Who takes part in a load run and where each one runs: the units, the run's operations,
and the split of publishers and subscribers over the load processes.

Pure. Units are named by role and number (LOAD-OCU creates every operation; LOAD-PUB-0001
...; LOAD-SUB-00001 ...), so runs against one hub reuse the names (with new credentials)
and the hub's directory does not grow with every run; operations are the run's own,
``LOAD-<run>-<i>``, with a run number no operation on the hub uses yet.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

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

    def unit_specs(self) -> list[UnitSpec]:
        """ADMIN (an OCU: it creates the operations) first, then every other unit."""
        return [UnitSpec(ADMIN, "BE", "load", "ocu"),
                *(UnitSpec(p.unit, "BE", "load") for p in self.publishers),
                *(UnitSpec(s.unit, "BE", "load") for s in self.subscribers)]

    def split(self, pub_procs: int, sub_procs: int) -> list[Assignment]:
        """Publishers over ``pub_procs`` processes and subscribers over ``sub_procs``
        (round robin, so each operation's subscribers are spread), never an empty one."""
        out: list[Assignment] = []
        pubs = max(1, min(pub_procs, len(self.publishers)))
        for k in range(pubs):
            out.append(Assignment(len(out), "publishers", publishers=self.publishers[k::pubs]))
        subs = min(sub_procs, len(self.subscribers))
        for k in range(subs):
            out.append(Assignment(len(out), "subscribers",
                                  subscribers=self.subscribers[k::subs]))
        return out


def run_operations(taken: Collection[str], count: int, prefix: str = "LOAD") -> list[str]:
    """``count`` operation ids ``<prefix>-<run>-<i>`` with a run number that no operation in
    ``taken`` uses."""
    run_no = 1
    while any(op.startswith(f"{prefix}-{run_no}-") for op in taken):
        run_no += 1
    return [f"{prefix}-{run_no}-{i + 1}" for i in range(count)]


def make_plan(shapes: Sequence[Shape], ops: Sequence[str], seed: int = 1) -> Plan:
    """The plan for ``shapes`` over the operation ids ``ops`` (one per operation of the
    shapes, in order)."""
    need = sum(s.operations for s in shapes)
    assert len(ops) == need, f"{len(ops)} operation ids for {need} operations"
    operations: dict[str, tuple[str, ...]] = {}
    pubs: list[PublisherSpec] = []
    subs: list[SubscriberSpec] = []
    ids = iter(ops)
    for shape in shapes:
        for _ in range(shape.operations):
            op = next(ids)
            readers = [f"LOAD-SUB-{len(subs) + k + 1:05d}" for k in range(shape.subscribers)]
            writers = [f"LOAD-PUB-{len(pubs) + k + 1:04d}" for k in range(shape.publishers)]
            subs += [SubscriberSpec(u, op) for u in readers]
            pubs += [PublisherSpec(unit=u, op=op, shape=shape.name, fanout=len(readers),
                                   recipients=tuple(readers), window=shape.window,
                                   directed=shape.directed, size=shape.size,
                                   seed=seed * 1_000_003 + len(pubs) + k)
                     for k, u in enumerate(writers)]
            operations[op] = (*writers, *readers)
    return Plan(tuple(shapes), operations, tuple(pubs), tuple(subs))
