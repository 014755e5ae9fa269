"""The end-to-end state machines in memory (no hub): commits, welcomes, messages, attacks.

The hub's part is played by plain function calls here; tests/test_e2ee.py runs the
same flows through a real hub."""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.e2ee.admin import Admin, Proposal
from client.e2ee.channel import Member
from client.e2ee.suite import CLASSIC, HYBRID, CipherSuite, KeyPackageKeys
from client.identity import Authority, UnitSpec
from protocol.credentials import AuthorityRing
from protocol.errors import Code, CryptoError
from protocol.statements import Statement, sign

NOW = 1_800_000_000.0


class Group:
    """An authority, an admin and members, passing commits and welcomes by hand."""

    def __init__(self, units: list[str], suite: CipherSuite = CLASSIC) -> None:
        self.authority = Authority.generate()
        self.ring = AuthorityRing([self.authority.public_key])
        self.suite = suite
        self.ids = {u: self.authority.enroll(UnitSpec(u, "BE", "test", "ocu" if u == "OCU"
                                                      else "unit"), now=int(NOW))
                    for u in ["OCU", *units]}
        keys = KeyPackageKeys("OCU", self.ids["OCU"].key, suite, os.urandom)
        self.admin = Admin(self.ids["OCU"], ring=self.ring, keys=keys, rand=os.urandom,
                           suite=suite)
        self.members: dict[str, Member] = {}
        self.published: dict[str, list[bytes]] = {}  # the hub's directory of packages
        self.log: list[tuple[bytes, bytes]] = []
        for u in units:
            self.member(u)

    def member(self, unit: str) -> Member:
        if unit not in self.ids:
            self.ids[unit] = self.authority.enroll(UnitSpec(unit, "FR", "test"), now=int(NOW))
        keys = KeyPackageKeys(unit, self.ids[unit].key, self.suite, os.urandom)
        self.published[unit] = keys.generate(4, now=int(NOW), last_resort=True)
        m = self.members[unit] = Member(self.ids[unit], ring=self.ring, keys=keys,
                                        rand=os.urandom)
        return m

    def claim(self, units: list[str]) -> dict[str, bytes]:
        # one-time first; the last-resort package (last in the list) is never removed
        return {u: (self.published[u].pop(0) if len(self.published[u]) > 1
                    else self.published[u][0]) for u in units}

    def commit(self, p: Proposal, now: float = NOW, to: list[str] | None = None) -> None:
        self.admin.accepted(p, now=now)
        self.log.append((p.body, p.signature))
        for u in (to if to is not None else list(self.members)):
            m = self.members[u]
            if u in p.welcomes:
                m.on_welcome(p.welcomes[u], now=now)
            m.on_commit(p.op, p.body, p.signature, now=now)

    def create(self, op: str = "OP-E") -> None:
        units = list(self.members)
        p = self.admin.propose_create(op, "test op", [self.ids[u].signed for u in units],
                                      self.claim(units), now=NOW)
        self.commit(p)

    def change(self, op: str = "OP-E", add: Sequence[str] = (), remove: Sequence[str] = (),
               now: float = NOW, to: list[str] | None = None) -> Proposal:
        for u in add:
            self.member(u)
        need = self.admin.packages_needed(op, add=add, remove=remove)
        p = self.admin.propose_change(op, add=[self.ids[u].signed for u in add], remove=remove,
                                      packages=self.claim(need), now=now)
        self.commit(p, now, to)
        return p


@pytest.fixture
def group() -> Group:
    g = Group(["JM", "TT", "NL"])
    g.create()
    return g


def test_channel_members_read_each_other(group: Group) -> None:
    """After the create commit and welcomes, every member reads every other member."""
    header, ct = group.members["JM"].encrypt("OP-E", b"container MSCU123 flagged", now=NOW)
    for u in ("TT", "NL"):
        got = group.members[u].decrypt("OP-E", header, ct, now=NOW)
        assert (got.sender, got.content, got.epoch) == ("JM", b"container MSCU123 flagged", 0)
    header, ct = group.admin.encrypt("OP-E", b"from the OCU", content_type=7, now=NOW)
    got = group.members["JM"].decrypt("OP-E", header, ct, now=NOW)
    assert (got.sender, got.content_type, got.content) == ("OCU", 7, b"from the OCU")


def test_channel_hybrid_suite_works_end_to_end() -> None:
    """The default suite (ML-KEM-768 + X25519) seals and opens the same way."""
    g = Group(["JM"], suite=HYBRID)
    g.create()
    header, ct = g.admin.encrypt("OP-E", b"pq", now=NOW)
    assert g.members["JM"].decrypt("OP-E", header, ct, now=NOW).content == b"pq"


def test_channel_ciphertext_hides_content_and_length(group: Group) -> None:
    """The plaintext appears nowhere in header or ciphertext; sizes come in buckets."""
    marker = b"PLAINTEXT-MARKER-7731"
    header, ct = group.members["JM"].encrypt("OP-E", marker, now=NOW)
    assert marker not in header + ct
    _, ct2 = group.members["JM"].encrypt("OP-E", marker * 3, now=NOW)
    assert len(ct) == len(ct2)  # both padded to the same bucket


def test_channel_out_of_order_within_the_window_decrypts(group: Group) -> None:
    """Messages that arrive in any order within the window all decrypt, once each."""
    sent = [group.members["JM"].encrypt("OP-E", b"m%d" % i, now=NOW) for i in range(6)]
    tt = group.members["TT"]
    order = [4, 0, 5, 2, 1, 3]
    assert [tt.decrypt("OP-E", *sent[i], now=NOW).content for i in order] == [
        b"m%d" % i for i in order]


def test_channel_replay_is_rejected_and_agent_goes_on(group: Group) -> None:
    header, ct = group.members["JM"].encrypt("OP-E", b"once", now=NOW)
    tt = group.members["TT"]
    tt.decrypt("OP-E", header, ct, now=NOW)
    with pytest.raises(CryptoError) as exc:
        tt.decrypt("OP-E", header, ct, now=NOW)
    assert exc.value.code == Code.REPLAYED
    header, ct = group.members["JM"].encrypt("OP-E", b"next", now=NOW)
    assert tt.decrypt("OP-E", header, ct, now=NOW).content == b"next"


def test_channel_generation_too_far_ahead_is_rejected(group: Group) -> None:
    jm = group.members["JM"]
    epoch = jm.channels["OP-E"].current
    assert epoch is not None
    jm.encrypt("OP-E", b"warm", now=NOW)
    assert epoch.send is not None
    epoch.send.generation = 1002  # as if 1001 messages were sent and lost
    header, ct = jm.encrypt("OP-E", b"far", now=NOW)
    with pytest.raises(CryptoError) as exc:
        group.members["TT"].decrypt("OP-E", header, ct, now=NOW)
    assert exc.value.code == Code.TOO_FAR_AHEAD


def test_channel_tampered_ciphertext_or_header_is_rejected(group: Group) -> None:
    """One flipped bit in the ciphertext or the header fails; the ratchet is untouched,
    so the genuine message still decrypts afterwards."""
    header, ct = group.members["JM"].encrypt("OP-E", b"genuine", now=NOW)
    tt = group.members["TT"]
    bad_ct = ct[:-1] + bytes([ct[-1] ^ 1])
    bad_header = header[:1] + bytes([header[1] ^ 1]) + header[2:]  # content type
    for h, c in ((header, bad_ct), (bad_header, ct)):
        with pytest.raises(CryptoError) as exc:
            tt.decrypt("OP-E", h, c, now=NOW)
        assert exc.value.code == Code.DECRYPT_FAILED
    assert tt.decrypt("OP-E", header, ct, now=NOW).content == b"genuine"


def test_channel_member_posing_as_another_is_rejected(group: Group) -> None:
    """NL holds the epoch keys of every leaf, so it can encrypt as JM's leaf; it cannot
    sign as JM, and readers refuse the message."""
    nl = group.members["NL"]
    epoch = nl.channels["OP-E"].current
    assert epoch is not None
    jm_leaf = epoch.index["JM"]
    nl_leaf = epoch.index["NL"]
    epoch.index["NL"] = jm_leaf  # NL's encrypt now claims JM's leaf
    header, ct = nl.encrypt("OP-E", b"forged order", now=NOW)
    epoch.index["NL"] = nl_leaf
    with pytest.raises(CryptoError) as exc:
        group.members["TT"].decrypt("OP-E", header, ct, now=NOW)
    assert exc.value.code == Code.BAD_SENDER


def test_channel_removed_member_cannot_read_the_next_epoch(group: Group) -> None:
    group.change(remove=["NL"])
    assert group.members["NL"].channels["OP-E"].removed
    header, ct = group.members["JM"].encrypt("OP-E", b"after removal", now=NOW)
    assert group.members["TT"].decrypt("OP-E", header, ct, now=NOW).content == b"after removal"
    with pytest.raises(CryptoError) as exc:
        group.members["NL"].decrypt("OP-E", header, ct, now=NOW)
    assert exc.value.code == Code.UNKNOWN_EPOCH


def test_channel_joiner_cannot_read_earlier_epochs(group: Group) -> None:
    before = group.members["JM"].encrypt("OP-E", b"before the join", now=NOW)
    p = group.change(add=["PT"], to=["JM", "TT", "NL"])
    pt = group.members["PT"]
    pt.on_welcome(p.welcomes["PT"], now=NOW)
    for body, sig in group.log:  # the joiner verifies the whole chain from the log
        pt.on_commit("OP-E", body, sig, now=NOW)
    with pytest.raises(CryptoError) as exc:
        pt.decrypt("OP-E", *before, now=NOW)
    assert exc.value.code == Code.UNKNOWN_EPOCH
    after = group.members["JM"].encrypt("OP-E", b"after the join", now=NOW)
    assert pt.decrypt("OP-E", *after, now=NOW).content == b"after the join"


def test_channel_welcome_before_or_after_its_commit_both_work(group: Group) -> None:
    p = group.change(add=["PT"], to=["JM", "TT", "NL"])
    pt = group.members["PT"]
    for body, sig in group.log:
        pt.on_commit("OP-E", body, sig, now=NOW)
    assert pt.channels["OP-E"].current is None  # verified, waiting for the welcome
    pt.on_welcome(p.welcomes["PT"], now=NOW)
    assert pt.channels["OP-E"].current is not None


def test_channel_messages_in_flight_across_a_rotation_decrypt(group: Group) -> None:
    """A message sent in epoch n and read after epoch n+1 is installed still decrypts,
    within the grace period; after it, the old keys are gone."""
    in_flight = group.members["JM"].encrypt("OP-E", b"sent before rotation", now=NOW)
    group.change(now=NOW + 1)  # a rotation: no adds, no removes
    tt = group.members["TT"]
    assert tt.channels["OP-E"].current.number == 1  # type: ignore[union-attr]
    assert tt.decrypt("OP-E", *in_flight, now=NOW + 2).content == b"sent before rotation"
    late = group.members["JM"].channels["OP-E"]
    assert late.previous is not None
    with pytest.raises(CryptoError) as exc:
        group.members["NL"].decrypt("OP-E", *in_flight, now=NOW + 1 + 10_000)
    assert exc.value.code == Code.UNKNOWN_EPOCH


def test_channel_commit_not_signed_by_the_admin_is_rejected(group: Group) -> None:
    """A statement signed by another member (or forged by the hub) changes nothing."""
    jm = group.members["JM"]
    chain = jm.channels["OP-E"].chain
    assert chain is not None
    forged = Statement(op="OP-E", epoch=1, prev=chain.head, admin="OCU", adds=(),
                       removes=("TT",), roster=b"", key_material=b"")
    for signer in (group.ids["NL"].key, Ed25519PrivateKey.generate()):
        body, sig = sign(signer, forged)
        with pytest.raises(CryptoError) as exc:
            jm.on_commit("OP-E", body, sig, now=NOW)
        assert exc.value.code == Code.BAD_SIGNATURE
    assert jm.channels["OP-E"].chain == chain
    header, ct = group.members["TT"].encrypt("OP-E", b"still here", now=NOW)
    assert jm.decrypt("OP-E", header, ct, now=NOW).content == b"still here"


def test_channel_altered_key_material_fails_the_confirmation_tag(group: Group) -> None:
    """A commit whose sealed secrets were swapped (here: re-signed by a careless admin)
    gives keys that fail the tag, and the member stays in its epoch."""
    need = group.admin.packages_needed("OP-E")
    p = group.admin.propose_change("OP-E", packages=group.claim(need), now=NOW)
    stmt = Statement.from_bytes(p.body)
    km = msgpack.unpackb(stmt.key_material)
    km["tag"] = bytes(32)
    body, sig = group.ids["OCU"].sign_statement(
        Statement(**{**{f: getattr(stmt, f) for f in stmt.__slots__},  # type: ignore[attr-defined]
                     "key_material": msgpack.packb(km)}))
    jm = group.members["JM"]
    with pytest.raises(CryptoError) as exc:
        jm.on_commit("OP-E", body, sig, now=NOW)
    assert exc.value.code == Code.BAD_CONFIRMATION
    assert jm.channels["OP-E"].current.number == 0  # type: ignore[union-attr]


def test_channel_used_key_package_is_deleted(group: Group) -> None:
    """A one-time package opens once: its private half is gone after the commit."""
    jm = group.members["JM"]
    held = len(jm.keys)
    group.change()
    assert len(jm.keys) == held - 1


def _resigned(group: Group, p: Proposal, **km_changes: object) -> tuple[bytes, bytes]:
    """The proposal's statement with its key material changed, signed by the admin."""
    stmt = Statement.from_bytes(p.body)
    km = msgpack.unpackb(stmt.key_material)
    km.update(km_changes)
    fields = {f: getattr(stmt, f) for f in stmt.__slots__}  # type: ignore[attr-defined]
    return group.ids["OCU"].sign_statement(Statement(**{**fields,
                                                        "key_material": msgpack.packb(km)}))


def test_channel_removed_member_cannot_post_in_the_grace_period(group: Group) -> None:
    """After NL's removal, readers still hold epoch 0's keys for in-flight messages, but
    a message NL seals in epoch 0 after its removal is refused."""
    group.change(remove=["NL"])
    nl_epoch0 = group.members["NL"].channels["OP-E"]
    assert nl_epoch0.removed
    # NL keeps its epoch-0 keys; sealing with them needs a little help from the test
    nl_epoch0.removed = False
    header, ct = group.members["NL"].encrypt("OP-E", b"late order from NL", now=NOW)
    with pytest.raises(CryptoError) as exc:
        group.members["JM"].decrypt("OP-E", header, ct, now=NOW + 1)
    assert exc.value.code == Code.NOT_MEMBER


def test_channel_a_bogus_welcome_does_not_displace_the_real_one(group: Group) -> None:
    p = group.change(add=["PT"], to=["JM", "TT", "NL"])
    pt = group.members["PT"]
    real = msgpack.unpackb(p.welcomes["PT"])
    bogus = msgpack.packb({**real, "sealed": os.urandom(len(real["sealed"]))})
    pt.on_welcome(p.welcomes["PT"], now=NOW)  # before its commit: kept as a candidate
    pt.on_welcome(bogus, now=NOW)  # anyone may send one; it must not replace the first
    for body, sig in group.log:
        pt.on_commit("OP-E", body, sig, now=NOW)
    assert pt.channels["OP-E"].current is not None
    header, ct = group.members["JM"].encrypt("OP-E", b"hello PT", now=NOW)
    assert pt.decrypt("OP-E", header, ct, now=NOW).content == b"hello PT"


def test_channel_members_refuse_a_suite_change(group: Group) -> None:
    """An admin commit that switches to another suite (e.g. dropping the post-quantum
    KEM) is refused, and the member stays in its epoch."""
    need = group.admin.packages_needed("OP-E")
    p = group.admin.propose_change("OP-E", packages=group.claim(need), now=NOW)
    body, sig = _resigned(group, p, suite=HYBRID.name)
    with pytest.raises(CryptoError) as exc:
        group.members["JM"].on_commit("OP-E", body, sig, now=NOW)
    assert exc.value.code == Code.BAD_STATEMENT
    assert "suite" in exc.value.message


def test_channel_member_without_keys_follows_the_chain_and_rejoins(group: Group) -> None:
    """A member that lost its state replays the chain (through rotations) without keys,
    then a rejoin commit gives it a welcome to a fresh epoch: no generation of an epoch
    it sent in is ever reused."""
    group.change()
    group.change()
    fresh = group.member("TT")  # new key packages, no epochs
    for body, sig in group.log:
        fresh.on_commit("OP-E", body, sig, now=NOW)
    ch = fresh.channels["OP-E"]
    assert ch.chain is not None
    assert ch.chain.epoch == 2
    assert ch.current is None
    need = group.admin.packages_needed("OP-E")
    p = group.admin.propose_change("OP-E", rejoin=["TT"], packages=group.claim(need), now=NOW)
    group.commit(p)
    assert ch.current is not None
    assert ch.current.number == 3
    header, ct = fresh.encrypt("OP-E", b"back", now=NOW)
    assert group.members["JM"].decrypt("OP-E", header, ct, now=NOW).content == b"back"


def _batch_view(results: list) -> list:
    return [(r.code if isinstance(r, CryptoError) else (r.sender, r.generation, r.content))
            for r in results]


def test_channel_batch_decrypt_matches_one_at_a_time(group: Group) -> None:
    """decrypt_batch gives what decrypt gives message by message, for interleaved
    senders, and leaves the ratchets where decrypt would (a replay is then refused)."""
    jm, dm = group.members["JM"], group.members["NL"]
    tt = group.members["TT"]
    tt.decrypt("OP-E", *jm.encrypt("OP-E", b"warm", now=NOW), now=NOW)  # verifier cached
    tt.decrypt("OP-E", *dm.encrypt("OP-E", b"warm", now=NOW), now=NOW)
    sent = [(jm if i % 3 else dm).encrypt("OP-E", b"m%d" % i, now=NOW) for i in range(9)]
    got = tt.decrypt_batch("OP-E", sent, now=NOW)
    assert [r.content for r in got] == [b"m%d" % i for i in range(9)]  # type: ignore[union-attr]
    again = tt.decrypt_batch("OP-E", sent[:2], now=NOW)
    assert _batch_view(again) == [Code.REPLAYED, Code.REPLAYED]


def test_channel_batch_with_a_tampered_or_reordered_message_is_exact(group: Group) -> None:
    """A batch with a tampered message in the middle, or out of order, gives the same
    results as decrypt one by one: the bad one refused, the others read, and the
    genuine copy of the tampered one still readable afterwards."""
    jm = group.members["JM"]
    tt, ir = group.members["TT"], group.members["NL"]
    tt.decrypt("OP-E", *jm.encrypt("OP-E", b"warm", now=NOW), now=NOW)
    ir.decrypt("OP-E", *jm.encrypt("OP-E", b"warm", now=NOW), now=NOW)
    sent = [jm.encrypt("OP-E", b"m%d" % i, now=NOW) for i in range(5)]
    header, ct = sent[2]
    tampered = [*sent[:2], (header, ct[:-1] + bytes([ct[-1] ^ 1])), *sent[3:]]
    batch = tt.decrypt_batch("OP-E", tampered, now=NOW)
    one_by_one = []
    for h, c in tampered:
        try:
            one_by_one.append(ir.decrypt("OP-E", h, c, now=NOW))
        except CryptoError as exc:
            one_by_one.append(exc)
    assert _batch_view(batch) == _batch_view(one_by_one)
    assert _batch_view(batch)[2] == Code.DECRYPT_FAILED
    assert tt.decrypt("OP-E", header, ct, now=NOW).content == b"m2"
    swapped = [jm.encrypt("OP-E", b"x%d" % i, now=NOW) for i in range(3)][::-1]
    assert [r.content for r in tt.decrypt_batch("OP-E", swapped, now=NOW)] == [  # type: ignore[union-attr]
        b"x2", b"x1", b"x0"]


def test_channel_admin_reading_its_commit_before_the_hubs_ok_has_the_keys(
        group: Group) -> None:
    """The admin's own log reader may deliver its commit before the hub's ok reaches the
    admin (the ok and the delivery race). The entry in the log means the hub stored it:
    the admin installs the epoch then, so messages members send in it decrypt; the ok
    that follows changes nothing. (Before, the chain moved on without keys and the OCU
    lost the new epoch's first messages as unknown_epoch: `opshub load --scenario
    cocair-v --e2ee --rate 300` lost 1-4 a run.)"""
    need = group.admin.packages_needed("OP-E")
    p = group.admin.propose_change("OP-E", packages=group.claim(need), now=NOW + 1)
    applied = group.admin.on_commit("OP-E", p.body, p.signature, now=NOW + 1)  # log first
    assert applied.epoch == 1
    assert applied.keys
    jm = group.members["JM"]
    jm.on_commit("OP-E", p.body, p.signature, now=NOW + 1)
    sent = jm.encrypt("OP-E", b"first message of epoch 1", now=NOW + 2)
    assert group.admin.decrypt("OP-E", *sent, now=NOW + 2).content == b"first message of epoch 1"
    group.admin.accepted(p, now=NOW + 3)  # the hub's ok, late
    assert group.admin.channels["OP-E"].current.number == 1  # type: ignore[union-attr]
    again = jm.encrypt("OP-E", b"second", now=NOW + 4)
    assert group.admin.decrypt("OP-E", *again, now=NOW + 4).content == b"second"
