"""Scenario: the steps of the router target (tests/fuzz/routing.py), and the strategy
that draws them. Plain data: what a step does is ``routing.World.run``'s part."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.fuzz import wire
from tests.protocol.router_harness import SPECS

OCU = "OCU-BB"
#: Operations the steps may create; OP-Z never exists.
OPS = ("OP-A", "OP-B", "OP-C")
ALL_OPS = (*OPS, "OP-Z")
UNITS = sorted(SPECS)
UINT_MAX = 2**63 - 1

# --- steps ------------------------------------------------------------------------------
# ``conn`` picks one of the open connections (modulo their number); a step for a
# connection when none is open does nothing.


@dataclass(frozen=True, slots=True)
class Connect:
    unit: str
    newer: bool = False  # JM-CUSTOMS only: with its newer credential


@dataclass(frozen=True, slots=True)
class Disconnect:
    conn: int


@dataclass(frozen=True, slots=True)
class Pub:
    conn: int
    items: tuple[tuple[str, int], ...]  # (op, cid)


@dataclass(frozen=True, slots=True)
class Sub:
    conn: int
    op: str
    after: int | None
    senders: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Unsub:
    conn: int
    op: str


@dataclass(frozen=True, slots=True)
class AckTo:
    conn: int
    op: str
    seq: int


@dataclass(frozen=True, slots=True)
class Dack:
    conn: int
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SendTo:
    conn: int
    op: str
    to: str
    cid: int | None


#: How a statement is made: create (by the OCU, or by a unit without role ocu), the next
#: epoch on the last accepted state, on the last one proposed (maybe still in flight), on
#: the first (stale), with a wrong epoch, signed by another key, an earlier one sent
#: again, or bytes that are no statement.
HOWS = ("create", "not_ocu", "change", "chain", "stale", "wrong_epoch", "forged", "replay",
        "garbage")


@dataclass(frozen=True, slots=True)
class Commit:
    conn: int
    op: str
    how: str
    adds: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    carry: bool = True  # carry the added units' credentials
    roster_ok: bool = True
    garbage: bytes = b""


#: valid packages, or packages of another unit, signed by another key, not a package at
#: all, or a package body with an odd created_at / last_resort (validly signed)
KP_HOWS = ("valid", "other_unit", "bad_sig", "garbage", "odd")


@dataclass(frozen=True, slots=True)
class KpPut:
    conn: int
    how: str
    first: int  # the packages' public keys are bytes([first + i]) * 32: repeats happen
    n: int
    last_resort: bool = False
    replace: bool = False
    odd: Any = None


@dataclass(frozen=True, slots=True)
class KpClaim:
    conn: int | None  # None: the OCU's first open connection (the admin claims)
    units: tuple[str, ...]
    op: str | None = None
    cid: int | None = None


@dataclass(frozen=True, slots=True)
class Hostile:
    """Bytes that close the session (most of the time): random or mutated, a second
    hello, a hub-to-agent frame."""

    conn: int
    kind: str
    data: bytes = b""


#: apply: run the pending writes in a transaction (results held); fail: the same, failing;
#: finish: hand the held results to the router; commit: both; execute / deliver: run the
#: pending reads / hand their rows over; fail_reads; flush_cursors; settle: run everything.
STORE_STEPS = ("apply", "fail", "finish", "commit", "execute", "deliver", "fail_reads",
               "flush_cursors", "settle")


@dataclass(frozen=True, slots=True)
class Store:
    what: str


@dataclass(frozen=True, slots=True)
class Fill:
    conn: int


@dataclass(frozen=True, slots=True)
class Writable:
    conn: int


@dataclass(frozen=True, slots=True)
class Tick:
    seconds: int


Step = (Connect | Disconnect | Pub | Sub | Unsub | AckTo | Dack | SendTo | Commit | KpPut
        | KpClaim | Hostile | Store | Fill | Writable | Tick)


@dataclass(frozen=True, slots=True)
class Scenario:
    steps: tuple[Step, ...]


conns = st.integers(0, 5)
ops = st.sampled_from(ALL_OPS)
units = st.sampled_from(UNITS)
seqs = st.integers(0, 12) | st.just(UINT_MAX)
cids = st.integers(1, 6) | st.just(UINT_MAX)
unit_sets = st.lists(units, max_size=3, unique=True).map(tuple)

_store = st.builds(Store, st.sampled_from(STORE_STEPS))
_commit = st.builds(Commit, conns, st.sampled_from(OPS), st.sampled_from(HOWS), unit_sets,
                    unit_sets, st.booleans(), st.sampled_from([True, True, True, False]),
                    st.binary(max_size=48))
#: Every kind of step. A scenario draws from a subset of them ("swarm testing": leaving
#: some kinds out lets the others pile up, e.g. publishes with no transaction run).
STEP_KINDS: tuple[st.SearchStrategy[Step], ...] = (
    _store, _store,
    st.builds(Pub, conns, st.lists(st.tuples(ops, cids), min_size=1, max_size=4).map(tuple)),
    st.builds(Sub, conns, ops, st.none() | seqs, st.none() | unit_sets),
    _commit, _commit,
    st.builds(Connect, units, st.booleans()),
    st.builds(Disconnect, conns),
    st.builds(Unsub, conns, ops),
    st.builds(AckTo, conns, ops, seqs),
    st.builds(Dack, conns, st.lists(st.integers(1, 8) | st.just(UINT_MAX), max_size=3)
              .map(tuple)),
    st.builds(SendTo, conns, ops, units, st.none() | st.integers(1, 3)),
    st.builds(KpPut, conns, st.sampled_from(("valid", "valid", *KP_HOWS)), st.integers(0, 3),
              st.integers(0, 3),
              st.booleans(), st.booleans(),
              st.tuples(st.sampled_from(wire.EDGE_INTS), st.sampled_from([True, 0, 1, None]))),
    st.builds(KpClaim, st.none() | conns,
              st.lists(units | st.just("XX-NOBODY"), max_size=3).map(tuple),
              st.none() | ops, st.none() | st.integers(1, 3)),
    st.builds(Hostile, conns, st.sampled_from(["bytes", "hello", "server_frame"]),
              wire.arbitrary_bytes.map(lambda s: s[1])),
    st.builds(Fill, conns),
    st.builds(Writable, conns),
    st.builds(Tick, st.integers(1, 120)),
)


@functools.cache
def _steps(kinds: frozenset[int]) -> st.SearchStrategy[Step]:
    return st.one_of([STEP_KINDS[i] for i in sorted(kinds)])


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """0-50 steps (drawn as a number first, so that a failure shrinks to few), of the
    kinds of a drawn subset; the store steps are always in it."""
    kinds = draw(st.sets(st.integers(2, len(STEP_KINDS) - 1), min_size=3)) | {0, 1}
    n = draw(st.integers(0, 50))
    return Scenario(tuple(draw(st.lists(_steps(frozenset(kinds)), min_size=n, max_size=n))))
