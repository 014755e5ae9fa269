"""A Member's (or Admin's) end-to-end state as plain values for msgpack, and back.

For an agent's state file (``client.secure_state``): what a restarted agent needs to go
on in the epochs it holds, with no new epoch. Only what the member still holds goes in.
Keys it deleted (consumed or skipped-and-evicted generations, tree nodes already split,
one-time key packages it opened, a previous epoch past its grace) are not in memory, so
they are not here either; ``restore_member`` gives nothing back that was deleted.

One thing may be written ahead of memory: this unit's own send ratchet. A restarted agent
must never send twice under one generation (the same key and nonce), yet sending must not
wait for a write per message. So the state holds the send ratchet at a *lease*
(``SendLease``), a generation no message sent so far has reached: the agent sends only below
the lease on disk, moves it ``SEND_LEASE`` past the generation in use when it needs room,
and a restarted agent starts at it. The other members then see a gap in its generations,
which they skip (``MAX_AHEAD`` is larger). A lease moves only for sending, so restarts
alone never push the sender further away. Pure: no I/O; ``now`` is passed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from client.e2ee.admin import Admin, Proposal
from client.e2ee.channel import (
    MAX_AHEAD,
    Channel,
    Epoch,
    Member,
    PendingEpoch,
    SenderRatchet,
)
from client.e2ee.schedule import PREFIX, SecretTree
from client.e2ee.suite import suite_named
from protocol.credentials import Credential
from protocol.statements import OperationState, statement_hash

#: How far past the generation in use the saved send ratchet is (see the module's doc).
SEND_LEASE = 256
assert SEND_LEASE < MAX_AHEAD  # a restarted sender's first message must not be refused


@dataclass(frozen=True, slots=True)
class SendLease:
    """Where a saved state restarts this unit's send ratchet in one epoch: at
    ``generation``, whose ratchet secret is ``secret``. Every generation below it may have
    been used before the restart."""

    epoch: int
    generation: int
    secret: bytes


def send_position(member: Member, op: str) -> tuple[int, int] | None:
    """(epoch, generation) of this unit's next message on ``op``; None if it cannot send
    there (``Member.encrypt`` says why)."""
    ch = member.channels.get(op)
    if ch is None or ch.current is None or ch.removed:
        return None
    send = ch.current.send
    return ch.current.number, 0 if send is None else send.generation


def send_leases(member: Member, held: Mapping[str, SendLease], *,
                extend: Collection[str] = (), exact: bool = False) -> dict[str, SendLease]:
    """The lease to save for every operation this unit can send on: ``held`` (the last ones
    given) while it is for the current epoch; the generation in use where there is none (a
    new epoch, a restored agent: nothing was sent at or past it) or with ``exact`` (the
    agent is closing: nothing more will be sent); for the operations in ``extend`` (a send
    waits for room), ``SEND_LEASE`` past the generation in use. Takes the send ratchet out of
    the tree where it still was (as the first ``encrypt`` would)."""
    out = {}
    for op, ch in member.channels.items():
        epoch = ch.current
        if epoch is None or ch.removed or member.unit not in epoch.index:
            continue
        if epoch.send is None:
            epoch.send = SenderRatchet(*epoch.tree.take_ratchet(epoch.index[member.unit]))
        at = epoch.send.generation
        lease = held.get(op)
        if exact or lease is None or lease.epoch != epoch.number or lease.generation < at:
            lease = SendLease(epoch.number, at, epoch.send.secret)
        if op in extend and not exact:
            secret, generation = lease.secret, lease.generation
            while generation < at + SEND_LEASE:
                _, _, secret = epoch.tree.ratchet_step(secret, generation)
                generation += 1
            lease = SendLease(epoch.number, generation, secret)
        out[op] = lease
    return out


# --- to plain values -----------------------------------------------------------------------

def member_state(member: Member, leases: Mapping[str, SendLease], *, now: float
                 ) -> dict[str, Any]:
    """Everything of ``member`` a restart needs; its send ratchets at ``leases``."""
    return {"keys": member.keys.to_state(),
            "channels": [_channel(ch, leases.get(op), now) for op, ch in
                         member.channels.items()]}


def _channel(ch: Channel, lease: SendLease | None, now: float) -> dict[str, Any]:
    previous = None
    if ch.previous is not None and now <= ch.previous[1]:  # past its grace: gone
        previous = [_epoch(ch.previous[0], None), ch.previous[1]]
    p = ch.pending
    return {
        "op": ch.op,
        "chain": None if ch.chain is None else _chain(ch.chain),
        "credentials": [c.to_bytes() for c in ch.credentials.values()],
        "current": None if ch.current is None else _epoch(ch.current, lease),
        "previous": previous,
        "pending": None if p is None else [p.epoch, p.ctx, p.tag, p.sealed, list(p.roster),
                                           p.suite.name],
        "welcomes": [[e, [list(w) for w in ws]] for e, ws in ch.welcomes.items()],
        "suite": ch.suite,
        "joined_epoch": ch.joined_epoch,
        "removed": ch.removed,
        "removed_at": ch.removed_at,
        "ever_removed": ch.ever_removed,
        "epoch_started": ch.epoch_started,
    }


def _chain(s: OperationState) -> list[Any]:
    return [s.op, s.name, s.admin, s.admin_key, s.epoch, s.head, sorted(s.members)]


def _epoch(epoch: Epoch, lease: SendLease | None) -> dict[str, Any]:
    """``lease``: the send ratchet to save; None for an epoch this unit no longer sends
    in (the previous one, or the current one after its removal)."""
    return {
        "number": epoch.number,
        "roster": list(epoch.roster),
        "suite": epoch.suite.name,
        "confirmation_key": epoch.confirmation_key,
        "init_secret": epoch.init_secret,
        "tree": epoch.tree.to_state(),
        "receivers": [[leaf, r.secret, r.generation, [[g, k, n] for g, (k, n) in
                                                      r.skipped.items()]]
                      for leaf, r in epoch.receivers.items()],
        "send": None if lease is None else [lease.secret, lease.generation],
        "messages": epoch.messages,
    }


def proposal_state(p: Proposal, member: Admin) -> dict[str, Any]:
    """A proposal whose commit or welcomes may not have reached the hub. Its epoch's keys
    go in only while the chain has not installed it (then the channel holds them)."""
    ch = member.channels.get(p.op)
    installed = ch is not None and ch.chain is not None and ch.chain.head == statement_hash(
        p.body)
    return {"op": p.op, "body": p.body, "signature": p.signature,
            "welcomes": [[u, w] for u, w in p.welcomes.items()], "chain": _chain(p.state),
            "epoch": None if installed else _epoch(p.epoch, None),
            "credentials": [c.to_bytes() for c in p.credentials.values()]}


# --- and back ------------------------------------------------------------------------------

def restore_member(member: Member, state: dict[str, Any]) -> None:
    """Put ``member_state``'s values back into a new ``member`` of the same unit and suite
    (the caller checks both). Raises KeyError, TypeError, ValueError, IndexError or
    OpshubError for a ``state`` of another shape."""
    member.keys.restore(state["keys"])
    member.channels = {c["op"]: _restore_channel(c) for c in state["channels"]}


def _restore_channel(c: dict[str, Any]) -> Channel:
    ch = Channel(c["op"])
    ch.chain = None if c["chain"] is None else _restore_chain(c["chain"])
    ch.credentials = _credentials(c["credentials"])
    ch.current = None if c["current"] is None else _restore_epoch(c["op"], c["current"])
    if c["previous"] is not None:
        ch.previous = (_restore_epoch(c["op"], c["previous"][0]), float(c["previous"][1]))
    if c["pending"] is not None:
        number, ctx, tag, sealed, roster, suite = c["pending"]
        ch.pending = PendingEpoch(number, ctx, tag, sealed, tuple(roster), suite_named(suite))
    ch.welcomes = {int(e): [(bytes(k), bytes(s)) for k, s in ws] for e, ws in c["welcomes"]}
    ch.suite = c["suite"]
    ch.joined_epoch = c["joined_epoch"]
    ch.removed, ch.removed_at = bool(c["removed"]), c["removed_at"]
    ch.ever_removed = bool(c["ever_removed"])
    ch.epoch_started = float(c["epoch_started"])
    return ch


def _restore_chain(v: list[Any]) -> OperationState:
    op, name, admin, admin_key, epoch, head, members = v
    return OperationState(op=op, name=name, admin=admin, admin_key=admin_key, epoch=epoch,
                          head=head, members=frozenset(members))


def _credentials(values: list[bytes]) -> dict[str, Credential]:
    creds = (Credential.from_bytes(b) for b in values)
    return {c.unit: c for c in creds}


def _restore_epoch(op: str, e: dict[str, Any]) -> Epoch:
    suite = suite_named(e["suite"])
    tree = SecretTree.from_state(e["tree"], prefix=PREFIX, key_size=suite.key_size,
                                 nonce_size=suite.nonce_size, hash_name=suite.hash_name)
    epoch = Epoch.restored(op=op, number=e["number"], roster=tuple(e["roster"]), suite=suite,
                           confirmation_key=e["confirmation_key"],
                           init_secret=e["init_secret"], tree=tree)
    for leaf, secret, generation, skipped in e["receivers"]:
        epoch.receivers[int(leaf)] = SenderRatchet(bytes(secret), int(generation), OrderedDict(
            (int(g), (bytes(k), bytes(n))) for g, k, n in skipped))
    if e["send"] is not None:
        epoch.send = SenderRatchet(bytes(e["send"][0]), int(e["send"][1]))
    epoch.messages = int(e["messages"])
    return epoch


def restore_proposal(p: dict[str, Any], member: Admin) -> Proposal:
    """A proposal of ``proposal_state``, once ``restore_member`` has run. Raises what
    ``restore_member`` raises."""
    op = p["op"]
    if p["epoch"] is not None:
        epoch = _restore_epoch(op, p["epoch"])
    else:  # installed: the channel's current epoch is the proposal's
        current = member.channels[op].current
        if current is None:
            raise ValueError(f"a proposal for {op!r} is installed, but no epoch is held")
        epoch = current
    return Proposal(op, p["body"], p["signature"], {u: w for u, w in p["welcomes"]},
                    _restore_chain(p["chain"]), epoch, _credentials(p["credentials"]))
