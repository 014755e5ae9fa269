"""A member written from the text of docs/protocol.md 17.3 to 17.5, fed a real rejoin commit.

``TextMember`` does what the documents say a member does, step by step, with the project's
primitives (HPKE seal and open, the schedule functions, the secret tree, message framing)
but none of the decisions of ``client.e2ee.channel.Member``. The commit and the welcome
come from the project's ``Admin.propose_change(rejoin=[unit])``, which is what
``SecureAgent`` runs when a ``welcome_request`` arrives. Both ends of a rejoin are played
by the text in turn, the other end by the project's own Member, and each reads the other.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from client.e2ee import message
from client.e2ee.admin import Admin, Proposal
from client.e2ee.channel import Member
from client.e2ee.schedule import PREFIX, SecretTree, derive_secret, expand_with_label
from client.e2ee.suite import HYBRID, KeyPackageKeys
from client.identity import Authority, UnitIdentity, UnitSpec
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.keypackages import KeyPackage, SignedKeyPackage
from protocol.statements import STATEMENT_CONTEXT, Statement, roster_hash

NOW = 1_800_000_000.0
OP = "COCAIR-V"
SUITE = HYBRID


class Refused(Exception):
    """The text says a member refuses this statement or welcome."""


@dataclass
class _Keys:
    """What 17.3 lets a member derive for an epoch."""

    number: int
    init_secret: bytes
    tree: SecretTree


class TextMember:
    """One unit following docs/protocol.md 17.3 (commits), 17.4 (welcomes), 17.2 (messages)."""

    def __init__(self, identity: UnitIdentity, ring: AuthorityRing) -> None:
        self.identity, self.unit, self.ring = identity, identity.unit, ring
        self.private: dict[bytes, bytes] = {}  # kp_id -> private half (12.1)
        self.admin: tuple[str, bytes] | None = None  # (unit, identity key), from epoch 0
        self.epoch, self.head, self.members = -1, b"", frozenset[str]()
        self.identity_keys: dict[str, bytes] = {}
        self.keys: _Keys | None = None
        self.waiting: tuple[Statement, dict[str, Any]] | None = None  # for a welcome
        self.welcomes: dict[int, dict[str, Any]] = {}
        self.sent = 0

    def packages(self, n: int) -> list[bytes]:
        """n signed one-time key packages (12.1), private halves kept."""
        out = []
        for _ in range(n):
            private, public = SUITE.generate_kem(os.urandom)
            pkg = KeyPackage(unit=self.unit, kem=SUITE.kem, public_key=public,
                             created_at=int(NOW))
            self.private[pkg.id] = private
            out.append(SignedKeyPackage.sign(self.identity.key, pkg).to_bytes())
        return out

    # 10.4 and 17.3: the statement, then its key material
    def on_commit(self, body: bytes, signature: bytes) -> None:
        stmt = Statement.from_bytes(body)
        for cred_body, cred_sig in stmt.credentials:
            cred = self.ring.verify(SignedCredential(cred_body, cred_sig), now=int(NOW))
            self.identity_keys[cred.unit] = cred.identity_key
        if self.admin is None:  # epoch 0 names the admin and carries its credential
            self.admin = (stmt.admin, self.identity_keys[stmt.admin])
        if stmt.admin != self.admin[0]:
            raise Refused("not_admin")
        Ed25519PublicKey.from_public_bytes(self.admin[1]).verify(
            signature, STATEMENT_CONTEXT + body)
        if stmt.epoch != self.epoch + 1 or stmt.prev != self.head:
            raise Refused("wrong_epoch or broken chain")
        members = (self.members | set(stmt.adds) | ({stmt.admin} if stmt.epoch == 0 else set())
                   ) - set(stmt.removes)
        if stmt.roster != roster_hash(set(members)):
            raise Refused("roster mismatch")
        km = msgpack.unpackb(stmt.key_material, raw=False)
        if km["v"] != 1 or km["suite"] != SUITE.name:
            raise Refused("bad_statement")
        mine = [e for e in km["sealed"] if e[0] == self.unit]
        keys = None
        if (self.unit in members and mine and self.keys is not None
                and self.keys.number == stmt.epoch - 1 and mine[0][1] in self.private):
            # "a member that stays ... opens it and derives the epoch from the previous
            # init secret" (a failure here refuses the statement: nothing has changed)
            commit_secret = SUITE.open(self.private[mine[0][1]], mine[0][2],
                                       _info(b"opshub/commit-secret/v1\x00", stmt))
            extracted = hmac.digest(self.keys.init_secret, commit_secret, "sha256")
            joiner = expand_with_label(extracted, b"joiner", _ctx(stmt), 32, prefix=PREFIX)
            keys = _epoch(stmt, km, joiner, len(members))
            del self.private[mine[0][1]]
        # the statement is accepted: the chain moves on, whatever comes of the keys
        self.epoch, self.head, self.members = stmt.epoch, hashlib.sha256(body).digest(), members
        self.keys, self.waiting = keys, None
        if self.unit in members and keys is None:
            # "no entry for it ... it still accepts the statement, and its keys for the new
            # epoch come from a welcome for that epoch" (a removed member gets nothing)
            self.waiting = (stmt, km)
            self._try_welcome()

    # 17.4: kept until the statement of its epoch is verified, then opened and checked
    def on_welcome(self, payload: bytes) -> None:
        w = msgpack.unpackb(payload, raw=False)
        assert w["t"] == "welcome"
        assert w["op"] == OP
        self.welcomes[w["epoch"]] = w
        self._try_welcome()

    def _try_welcome(self) -> None:
        if self.waiting is None or self.waiting[0].epoch not in self.welcomes:
            return
        stmt, km = self.waiting
        w = self.welcomes.pop(stmt.epoch)
        joiner = SUITE.open(self.private.pop(w["kp"]), w["sealed"],
                            _info(b"opshub/welcome/v1\x00", stmt))
        self.keys = _epoch(stmt, km, joiner, len(self.members))
        self.waiting = None

    # 17.2: application messages
    def read(self, header_bytes: bytes, ciphertext: bytes) -> bytes:
        header = message.Header.from_bytes(header_bytes)
        assert self.keys is not None
        assert header.epoch == self.keys.number
        roster = sorted(self.members)
        key, nonce = self.keys.tree.application_key_nonce(header.sender, header.generation)
        aad = header_bytes + OP.encode()
        content, signature = message.open_unverified(aad, header, ciphertext, key, nonce)
        sender = roster[header.sender]
        message.verify(aad, content, signature,
                       Ed25519PublicKey.from_public_bytes(self.identity_keys[sender]), sender)
        return content

    def write(self, content: bytes) -> tuple[bytes, bytes]:
        assert self.keys is not None
        leaf = sorted(self.members).index(self.unit)
        key, nonce = self.keys.tree.application_key_nonce(leaf, self.sent)
        header = message.Header(1, self.keys.number, leaf, self.sent, os.urandom(4))
        self.sent += 1
        return header.to_bytes(), message.seal(op=OP, header=header, content=content, key=key,
                                               nonce=nonce, signer=self.identity.key)


def _epoch(stmt: Statement, km: dict[str, Any], joiner: bytes, n_leaves: int) -> _Keys:
    """The epoch's keys from its joiner secret, once its confirmation tag checks (17.3)."""
    ctx = _ctx(stmt)
    epoch_secret = expand_with_label(joiner, b"epoch", ctx, 32, prefix=PREFIX)
    confirmation_key = derive_secret(epoch_secret, b"confirm", prefix=PREFIX)
    sealed_hash = hashlib.sha256(msgpack.packb(km["sealed"], use_bin_type=True)).digest()
    tag = hmac.digest(confirmation_key, b"opshub/confirm/v1\x00" + ctx + sealed_hash,
                      "sha256")
    if not hmac.compare_digest(tag, km["tag"]):
        raise Refused("bad_confirmation_tag")
    return _Keys(stmt.epoch, derive_secret(epoch_secret, b"init", prefix=PREFIX),
                 SecretTree(derive_secret(epoch_secret, b"encryption", prefix=PREFIX),
                            n_leaves, prefix=PREFIX, key_size=32))


def _ctx(stmt: Statement) -> bytes:
    return bytes(msgpack.packb([stmt.op, stmt.epoch, stmt.prev, stmt.roster, SUITE.name],
                               use_bin_type=True))


def _info(context: bytes, stmt: Statement) -> bytes:
    return context + bytes(msgpack.packb([stmt.op, stmt.epoch]))


class World:
    """An authority, the admin OCU-BE, and the members FR-DGDDI-CDG and NL-FIOD."""

    def __init__(self) -> None:
        authority = Authority.generate()
        self.ring = AuthorityRing([authority.public_key])
        self.ids = {u: authority.enroll(UnitSpec(u, c, "test", role), now=int(NOW))
                    for u, c, role in [("OCU-BE", "BE", "ocu"), ("FR-DGDDI-CDG", "FR", "unit"),
                                       ("NL-FIOD", "NL", "unit")]}
        self.admin = Admin(self.ids["OCU-BE"], ring=self.ring, rand=os.urandom, suite=SUITE,
                           keys=KeyPackageKeys("OCU-BE", self.ids["OCU-BE"].key, SUITE,
                                               os.urandom))

    def text_member(self, unit: str) -> TextMember:
        return TextMember(self.ids[unit], self.ring)

    def code_member(self, unit: str) -> tuple[Member, KeyPackageKeys]:
        keys = KeyPackageKeys(unit, self.ids[unit].key, SUITE, os.urandom)
        return Member(self.ids[unit], ring=self.ring, keys=keys, rand=os.urandom), keys

    def create(self, packages: dict[str, bytes]) -> Proposal:
        p = self.admin.propose_create(OP, "COCAIR V", [self.ids["FR-DGDDI-CDG"].signed,
                                                       self.ids["NL-FIOD"].signed],
                                      packages, now=NOW)
        self.admin.accepted(p, now=NOW)
        return p

    def rejoin(self, unit: str, packages: dict[str, bytes]) -> Proposal:
        """What the admin's SecureAgent does for a welcome_request from ``unit``."""
        assert sorted(packages) == self.admin.packages_needed(OP)
        p = self.admin.propose_change(OP, rejoin=[unit], packages=packages, now=NOW)
        self.admin.accepted(p, now=NOW)
        return p


def _documented_shape(p: Proposal, rejoiner: str, stayer: str) -> None:
    """17.5: a new epoch, no adds or removes, a sealed entry for every other staying member
    but none for the requester, and a welcome to the new epoch for the requester alone."""
    stmt = Statement.from_bytes(p.body)
    km = msgpack.unpackb(stmt.key_material, raw=False)
    assert (stmt.epoch, stmt.adds, stmt.removes) == (1, (), ())
    assert [e[0] for e in km["sealed"]] == [stayer]
    assert list(p.welcomes) == [rejoiner]
    welcome = msgpack.unpackb(p.welcomes[rejoiner], raw=False)
    assert (welcome["t"], welcome["op"], welcome["epoch"]) == ("welcome", OP, 1)


def test_rejoin_staying_member_following_the_text_accepts_the_commit() -> None:
    """A staying member written from 17.3 opens its entry in a real rejoin commit, derives
    the new epoch, and reads and is read by the rejoined member (the project's Member)."""
    world = World()
    fr = world.text_member("FR-DGDDI-CDG")
    nl, nl_keys = world.code_member("NL-FIOD")
    p0 = world.create({"FR-DGDDI-CDG": fr.packages(1)[0],
                       "NL-FIOD": nl_keys.generate(1, now=int(NOW))[0]})
    fr.on_commit(p0.body, p0.signature)
    fr.on_welcome(p0.welcomes["FR-DGDDI-CDG"])
    assert fr.keys is not None
    assert fr.keys.number == 0
    nl, nl_keys = world.code_member("NL-FIOD")  # restarted: no epochs, new packages
    nl.on_commit(OP, p0.body, p0.signature, now=NOW)
    assert nl.channels[OP].current is None

    p1 = world.rejoin("NL-FIOD", {"FR-DGDDI-CDG": fr.packages(1)[0],
                                  "NL-FIOD": nl_keys.generate(1, now=int(NOW))[0]})
    _documented_shape(p1, rejoiner="NL-FIOD", stayer="FR-DGDDI-CDG")
    fr.on_commit(p1.body, p1.signature)
    assert fr.keys is not None
    assert fr.keys.number == 1
    assert fr.waiting is None
    nl.on_commit(OP, p1.body, p1.signature, now=NOW)
    nl.on_welcome(p1.welcomes["NL-FIOD"], now=NOW)

    assert fr.read(*nl.encrypt(OP, b"back after a restart", now=NOW)) == b"back after a restart"
    assert nl.decrypt(OP, *fr.write(b"welcome back"), now=NOW).content == b"welcome back"


def test_rejoin_rejoining_member_following_the_text_installs_the_new_epoch() -> None:
    """A restarted member written from 17.3 to 17.5 finds no entry for itself in a real
    rejoin commit, accepts it, and installs the new epoch (not the one it asked in) from
    the welcome, which here arrives first; then it reads and is read."""
    world = World()
    fr, fr_keys = world.code_member("FR-DGDDI-CDG")
    nl = world.text_member("NL-FIOD")
    p0 = world.create({"FR-DGDDI-CDG": fr_keys.generate(1, now=int(NOW))[0],
                       "NL-FIOD": nl.packages(1)[0]})
    fr.on_welcome(p0.welcomes["FR-DGDDI-CDG"], now=NOW)
    fr.on_commit(OP, p0.body, p0.signature, now=NOW)
    nl = world.text_member("NL-FIOD")  # restarted: no epochs, new packages
    nl.on_commit(p0.body, p0.signature)  # follows the chain without keys
    assert nl.keys is None
    assert nl.epoch == 0

    p1 = world.rejoin("NL-FIOD", {"FR-DGDDI-CDG": fr_keys.generate(1, now=int(NOW))[0],
                                  "NL-FIOD": nl.packages(1)[0]})
    _documented_shape(p1, rejoiner="NL-FIOD", stayer="FR-DGDDI-CDG")
    nl.on_welcome(p1.welcomes["NL-FIOD"])  # before its commit: kept
    assert nl.keys is None
    nl.on_commit(p1.body, p1.signature)
    assert nl.keys is not None
    assert nl.keys.number == 1
    fr.on_commit(OP, p1.body, p1.signature, now=NOW)

    assert nl.read(*fr.encrypt(OP, b"welcome back", now=NOW)) == b"welcome back"
    assert fr.decrypt(OP, *nl.write(b"back after a restart"), now=NOW).content == (
        b"back after a restart")
