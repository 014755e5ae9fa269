"""An operation's admin (an OCU unit), sans-I/O: it proposes the commits that carry each
epoch's keys (key material sealed to each member's key package, welcomes for joiners) and
installs them once the hub has stored them. Everything a member does, it does too
(client.e2ee.channel.Member); client.secure_admin is its I/O shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from client.e2ee.channel import GRACE_SECONDS, CommitApplied, Epoch, Member
from client.e2ee.commit_format import (
    commit_info,
    confirmation_tag,
    context,
    joiner_secret_for,
    welcome_info,
    welcome_payload,
)
from client.e2ee.schedule import hash_size
from client.e2ee.suite import CipherSuite, KeyPackageKeys, Rand
from client.identity import UnitIdentity
from client.membership import OperationAdmin
from protocol.credentials import AuthorityRing, Credential, SignedCredential
from protocol.errors import Code, CryptoError, RequestError
from protocol.keypackages import SignedKeyPackage
from protocol.signatures import SignatureMemo
from protocol.statements import OperationState, Statement, roster_hash, statement_hash


@dataclass(frozen=True, slots=True)
class Proposal:
    """A signed commit not yet accepted by the hub, with what it will install."""

    op: str
    body: bytes
    signature: bytes
    welcomes: dict[str, bytes]  # joining unit -> directed payload
    state: OperationState
    epoch: Epoch
    credentials: dict[str, Credential]


class Admin(Member):
    """An operation's admin (an OCU unit): signs commits that carry each epoch's keys.

    ``propose_*`` need one key package per member other than the admin, claimed from
    the hub (``packages_needed`` says whose); each is verified against the member's
    credential before anything is sealed to it. After the hub accepts the commit,
    ``accepted`` installs the epoch, and the welcomes go out as directed messages."""

    def __init__(self, identity: UnitIdentity, *, ring: AuthorityRing, keys: KeyPackageKeys,
                 rand: Rand, suite: CipherSuite, grace: float = GRACE_SECONDS,
                 signatures: SignatureMemo | None = None) -> None:
        super().__init__(identity, ring=ring, keys=keys, rand=rand, grace=grace,
                         signatures=signatures)
        self.suite = suite
        self._admins: dict[str, OperationAdmin] = {}
        #: op -> the proposal sent to the hub and not yet installed (``accepted``)
        self._in_flight: dict[str, Proposal] = {}

    def packages_needed(self, op: str, *, add: Sequence[str] = (),
                        remove: Sequence[str] = ()) -> list[str]:
        ch = self.channels.get(op)
        members = set(add) if ch is None or ch.chain is None else (
            (ch.chain.members | set(add)) - set(remove))
        return sorted(members - {self.unit})

    def propose_create(self, op: str, name: str, members: list[SignedCredential],
                       packages: dict[str, bytes], *, now: float) -> Proposal:
        admin = self._admins[op] = OperationAdmin(self.identity, op, now=lambda: now)
        creds = {c.credential.unit: c.credential for c in members}
        creds[self.unit] = self.identity.credential
        roster = tuple(sorted(creds))
        stmt_ctx = Statement(op=op, epoch=0, prev=b"", admin=self.unit,
                             roster=roster_hash(set(roster)))
        commit_secret = self.rand(hash_size(self.suite.hash_name))
        init = bytes(hash_size(self.suite.hash_name))
        km, epoch, welcomes = self._key_material(op, stmt_ctx, roster, joiners=set(roster),
                                                 stayers=set(), init=init,
                                                 commit_secret=commit_secret,
                                                 packages=packages, creds=creds)
        body, sig = admin.create(name, members, key_material=km)
        assert admin._proposed is not None
        p = self._in_flight[op] = Proposal(op, body, sig, welcomes, admin._proposed, epoch,
                                           creds)
        return p

    def propose_change(self, op: str, *, add: Sequence[SignedCredential] = (),
                       remove: Sequence[str] = (), rejoin: Sequence[str] = (),
                       packages: dict[str, bytes], now: float) -> Proposal:
        """Add and/or remove members, or with neither just rotate the keys. Members in
        ``rejoin`` (ones that lost their keys) get a welcome to the new epoch instead of
        a sealed commit secret: they lack the previous epoch's init secret."""
        ch = self.channels.get(op)
        admin = self._admins.get(op)
        if ch is None or ch.chain is None or ch.current is None or admin is None:
            raise CryptoError(f"{self.unit!r} is not the admin of a live {op!r}",
                              code=Code.NOT_ADMIN)
        admin.now = lambda: now
        creds = dict(ch.credentials)
        creds.update({c.credential.unit: c.credential for c in add})
        added = {c.credential.unit for c in add}
        members = (ch.chain.members | added) - set(remove)
        joiners = added | (set(rejoin) & members)
        roster = tuple(sorted(members))
        stmt_ctx = Statement(op=op, epoch=ch.chain.epoch + 1, prev=ch.chain.head,
                             admin=self.unit, roster=roster_hash(members))
        km, epoch, welcomes = self._key_material(
            op, stmt_ctx, roster, joiners=joiners, stayers=set(members - joiners),
            init=ch.current.init_secret, commit_secret=self.rand(hash_size(self.suite.hash_name)),
            packages=packages, creds=creds)
        body, sig = admin.change(add=add, remove=remove, key_material=km)
        assert admin._proposed is not None
        p = self._in_flight[op] = Proposal(op, body, sig, welcomes, admin._proposed, epoch,
                                           {u: c for u, c in creds.items() if u in members})
        return p

    def on_commit(self, op: str, body: bytes, signature: bytes, *, now: float) -> CommitApplied:
        """As a member's; and the admin's own proposal, read from the log before the
        hub's ok arrived (the two race), is accepted there: the log has it, so the hub
        stored it, and members may already send in its epoch."""
        p = self._in_flight.get(op)
        if p is not None and p.body == body:
            self.accepted(p, now=now)
        return super().on_commit(op, body, signature, now=now)

    def accepted(self, p: Proposal, *, now: float) -> None:
        """The hub stored the commit: move to its epoch (once: the ok and the log entry
        may each say so, in either order)."""
        if self._in_flight.get(p.op) is not p:
            return
        del self._in_flight[p.op]
        ch = self.channel(p.op)
        self._admins[p.op].state = p.state
        ch.chain = p.state
        ch.credentials.update(p.credentials)
        self._install(ch, p.epoch, now)

    def resume(self, proposals: Sequence[Proposal]) -> None:
        """After a restart from a saved state (``client.e2ee.snapshot``): administer again
        the operations whose chain names this unit as admin, and wait for the hub to accept
        the ``proposals`` the chain has not installed (signed and maybe sent before the
        restart; ``accepted`` or the log installs them)."""
        for op, ch in self.channels.items():
            if ch.chain is not None and ch.chain.admin == self.unit:
                self._admin_of(op).state = ch.chain
        for p in proposals:
            chain = self.channels[p.op].chain if p.op in self.channels else None
            if chain is None or chain.head != statement_hash(p.body):
                self._admin_of(p.op)
                self._in_flight[p.op] = p

    def _admin_of(self, op: str) -> OperationAdmin:
        admin = self._admins.get(op)
        if admin is None:
            # its clock is set by propose_change before it signs anything
            admin = self._admins[op] = OperationAdmin(self.identity, op, now=lambda: 0.0)
        return admin

    def needs_rotation(self, op: str, *, now: float, max_messages: int,
                       max_seconds: float) -> bool:
        ch = self.channels.get(op)
        if ch is None or ch.current is None:
            return False
        return (ch.current.messages >= max_messages
                or now - ch.epoch_started >= max_seconds)

    def _package(self, unit: str, package: bytes,
                 creds: dict[str, Credential]) -> tuple[bytes, bytes]:
        cred = creds.get(unit)
        if cred is None:
            raise CryptoError(f"no credential for {unit!r}", code=Code.BAD_CREDENTIAL)
        try:
            pkg = SignedKeyPackage.from_bytes(package).verify(cred.identity_key, unit)
        except RequestError as exc:
            raise CryptoError(f"key package of {unit!r} refused: {exc.message}",
                              code=exc.code) from None
        if pkg.kem != self.suite.kem:
            raise CryptoError(f"key package of {unit!r} is for {pkg.kem}, the operation uses "
                              f"{self.suite.kem}", code=Code.BAD_KEY_PACKAGE)
        return pkg.id, pkg.public_key

    def _key_material(self, op: str, stmt: Statement, roster: tuple[str, ...], *,
                      joiners: set[str], stayers: set[str], init: bytes, commit_secret: bytes,
                      packages: dict[str, bytes], creds: dict[str, Credential],
                      ) -> tuple[bytes, Epoch, dict[str, bytes]]:
        suite = self.suite
        missing = sorted((joiners | stayers) - {self.unit} - set(packages))
        if missing:
            raise CryptoError(f"no key package for {', '.join(missing)}", code=Code.NO_KEY)
        ctx = context(stmt, suite)
        joiner = joiner_secret_for(init, commit_secret, ctx, suite)
        sealed: list[list[Any]] = []
        for unit in sorted(stayers - {self.unit}):
            kp_id, public = self._package(unit, packages[unit], creds)
            sealed.append([unit, kp_id, suite.seal(public, commit_secret,
                                                   commit_info(op, stmt.epoch))])
        welcomes = {}
        for unit in sorted(joiners - {self.unit}):
            kp_id, public = self._package(unit, packages[unit], creds)
            welcomes[unit] = welcome_payload(op, stmt.epoch, kp_id,
                                      suite.seal(public, joiner, welcome_info(op, stmt.epoch)))
        epoch = Epoch(op=op, number=stmt.epoch, roster=roster, joiner_secret=joiner, ctx=ctx,
                      suite=suite)
        km = msgpack.packb({"v": 1, "suite": suite.name, "sealed": sealed,
                            "tag": confirmation_tag(epoch.confirmation_key, ctx, sealed)},
                           use_bin_type=True)
        return km, epoch, welcomes
