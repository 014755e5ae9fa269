"""Members and admins through their saved form (client/e2ee/snapshot.py), in memory: a
restored member reads on where it stopped and no further back, a restored sender starts
at its lease, a restored admin goes on committing."""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest

from client.e2ee.admin import Admin
from client.e2ee.channel import Member
from client.e2ee.snapshot import (
    SEND_LEASE,
    member_state,
    proposal_state,
    restore_member,
    restore_proposal,
    send_leases,
)
from client.e2ee.suite import HYBRID, KeyPackageKeys
from protocol.errors import Code, CryptoError
from tests.client.e2ee.test_channel import NOW, Group

OP = "OP-E"


def _saved(m: Member, now: float = NOW, extend: tuple[str, ...] = ()) -> dict[str, Any]:
    """``m``'s state as it comes back out of a state file (msgpack both ways), its send
    leases moved for the operations in ``extend``."""
    state = member_state(m, send_leases(m, {}, extend=extend), now=now)
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False)  # type: ignore[no-any-return]


def _reborn(g: Group, unit: str, state: dict[str, Any]) -> Member:
    """A new Member (Admin for the OCU) of ``unit`` with ``state`` restored into it."""
    keys = KeyPackageKeys(unit, g.ids[unit].key, g.suite, os.urandom)
    m = (Admin(g.ids[unit], ring=g.ring, keys=keys, rand=os.urandom, suite=g.suite)
         if unit == "OCU" else Member(g.ids[unit], ring=g.ring, keys=keys, rand=os.urandom))
    restore_member(m, state)
    return m


@pytest.fixture
def group() -> Group:
    g = Group(["JM", "TT"])
    g.create()
    return g


def test_snapshot_restored_member_reads_on_and_not_back(group: Group) -> None:
    """Restored after reading the first of three messages, a member decrypts the other two
    and refuses the first as replayed (its key is not in the state)."""
    sent = [group.members["JM"].encrypt(OP, b"m%d" % i, now=NOW) for i in range(3)]
    assert group.members["TT"].decrypt(OP, *sent[0], now=NOW).content == b"m0"
    tt = _reborn(group, "TT", _saved(group.members["TT"]))
    assert [tt.decrypt(OP, *s, now=NOW).content for s in sent[1:]] == [b"m1", b"m2"]
    with pytest.raises(CryptoError) as err:
        tt.decrypt(OP, *sent[0], now=NOW)
    assert err.value.code == Code.REPLAYED


def test_snapshot_restored_member_opens_the_next_commit(group: Group) -> None:
    """The key packages' private halves and the init secret come back: a rotation after
    the restore is opened with the sealed commit secret, no welcome needed."""
    group.members["TT"] = _reborn(group, "TT", _saved(group.members["TT"]))
    p = group.change()
    assert "TT" not in p.welcomes
    assert group.members["TT"].channels[OP].current.number == 1  # type: ignore[union-attr]
    header, ct = group.admin.encrypt(OP, b"epoch 1", now=NOW)
    assert group.members["TT"].decrypt(OP, header, ct, now=NOW).content == b"epoch 1"


def test_snapshot_restored_sender_starts_at_its_lease(group: Group) -> None:
    """A sender restored from a state saved at generation 2 with a lease moved for sending
    sends next at 2 + SEND_LEASE (it may have used any generation below), and the others
    accept the skip; with no lease moved (nothing sent past 2), it goes on at 2."""
    jm = group.members["JM"]
    for i in range(2):
        group.members["TT"].decrypt(OP, *jm.encrypt(OP, b"m%d" % i, now=NOW), now=NOW)
    tt = group.members["TT"]
    leased = _reborn(group, "JM", _saved(jm, extend=(OP,)))
    assert tt.decrypt(OP, *leased.encrypt(OP, b"a", now=NOW), now=NOW).generation == \
        2 + SEND_LEASE
    exact = _reborn(group, "JM", _saved(jm))
    header, ct = exact.encrypt(OP, b"b", now=NOW)
    assert tt.decrypt(OP, header, ct, now=NOW).generation == 2


def test_snapshot_lease_moves_only_for_sending(group: Group) -> None:
    """send_leases keeps the lease it was given, however little is left, until a send asks
    for room (``extend``): then SEND_LEASE past the generation in use, derived from the
    ratchet; ``exact`` (closing) gives the generation in use."""
    jm = group.members["JM"]
    first = send_leases(jm, {}, extend=[OP])[OP]
    assert first.generation == SEND_LEASE
    for _ in range(SEND_LEASE - 1):
        jm.encrypt(OP, b"x", now=NOW)
    assert send_leases(jm, {OP: first})[OP] is first
    moved = send_leases(jm, {OP: first}, extend=[OP])[OP]
    assert moved.generation == 2 * SEND_LEASE - 1
    assert send_leases(jm, {OP: moved}, exact=True)[OP].generation == SEND_LEASE - 1
    restored = _reborn(group, "JM", msgpack.unpackb(msgpack.packb(
        member_state(jm, {OP: moved}, now=NOW), use_bin_type=True), raw=False))
    header, ct = restored.encrypt(OP, b"after", now=NOW)
    got = group.members["TT"].decrypt(OP, header, ct, now=NOW)  # the secret was derived right
    assert (got.content, got.generation) == (b"after", moved.generation)


def test_snapshot_previous_epoch_past_its_grace_is_not_saved(group: Group) -> None:
    """The previous epoch is saved during its grace period and left out after it: its
    keys are gone as they are from memory."""
    group.change()
    tt = group.members["TT"]
    ends = tt.channels[OP].previous[1]  # type: ignore[index]
    assert _saved(tt, now=ends)["channels"][0]["previous"] is not None
    assert _saved(tt, now=ends + 1)["channels"][0]["previous"] is None


def test_snapshot_waiting_welcome_survives(group: Group) -> None:
    """A joiner restored with its welcome kept (the commit not read yet) installs the epoch
    when the commit comes."""
    p = group.change(add=["NL"], to=["JM", "TT"])
    nl = group.members["NL"]
    nl.on_welcome(p.welcomes["NL"], now=NOW)
    nl = group.members["NL"] = _reborn(group, "NL", _saved(nl))
    for body, sig in group.log:
        nl.on_commit(OP, body, sig, now=NOW)
    assert nl.channels[OP].current.number == 1  # type: ignore[union-attr]


def test_snapshot_restored_admin_commits_the_next_epoch(group: Group) -> None:
    """An admin restored (and resumed) proposes the next epoch from its saved chain and
    init secret, and the members open it."""
    admin = _reborn(group, "OCU", _saved(group.admin))
    assert isinstance(admin, Admin)
    admin.resume([])
    group.admin = admin
    group.change()
    header, ct = admin.encrypt(OP, b"epoch 1", now=NOW)
    for u in ("JM", "TT"):
        assert group.members[u].decrypt(OP, header, ct, now=NOW).epoch == 1


def test_snapshot_admin_proposal_in_flight_is_installed_when_accepted(group: Group) -> None:
    """A proposal saved before the hub accepted it is taken back by the restored admin,
    which installs its epoch on acceptance: the members' keys and the admin's agree."""
    need = group.admin.packages_needed(OP)
    p = group.admin.propose_change(OP, packages=group.claim(need), now=NOW)
    state = _saved(group.admin)
    saved_p = msgpack.unpackb(msgpack.packb(proposal_state(p, group.admin),
                                            use_bin_type=True), raw=False)
    admin = _reborn(group, "OCU", state)
    assert isinstance(admin, Admin)
    restored = restore_proposal(saved_p, admin)
    admin.resume([restored])
    group.admin = admin
    group.commit(restored)
    assert admin.channels[OP].current.number == 1  # type: ignore[union-attr]
    header, ct = group.members["JM"].encrypt(OP, b"to the admin", now=NOW)
    assert admin.decrypt(OP, header, ct, now=NOW).content == b"to the admin"


def test_snapshot_hybrid_suite_round_trip() -> None:
    """With the default suite (ML-KEM-768 + X25519 key packages), a restored member opens
    the next commit with a private half it kept, and reads on."""
    g = Group(["JM"], suite=HYBRID)
    g.create()
    g.members["JM"] = _reborn(g, "JM", _saved(g.members["JM"]))
    g.change()
    header, ct = g.admin.encrypt(OP, b"pq", now=NOW)
    assert g.members["JM"].decrypt(OP, header, ct, now=NOW).epoch == 1
