"""Signed membership statements of an operation (closed user group), and their rules.

Membership is decided by the operation's admin, never by the hub: epoch 0 creates
the operation (signed by a unit whose credential has role ``ocu``), every later
epoch adds and/or removes members, chained by the hash of the previous statement
and signed by the admin's identity key. The hub applies ``OperationState.apply``
before it stores and relays a statement; members can apply the same function to
check the hub. ``key_material`` is opaque here (the encryption layer fills it).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import frames
from protocol.credentials import SignedCredential
from protocol.errors import Code, RequestError

STATEMENT_CONTEXT = b"opshub/statement/v1\x00"


def roster_hash(members: frozenset[str] | set[str]) -> bytes:
    return hashlib.sha256("\n".join(sorted(members)).encode()).digest()


def statement_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """One membership change. Epoch 0 creates the operation with ``adds`` as members."""

    op: str
    epoch: int
    prev: bytes
    admin: str
    adds: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    roster: bytes = b""
    name: str = ""
    at: int = 0
    key_material: bytes = b""
    credentials: tuple[tuple[bytes, bytes], ...] = ()

    def to_bytes(self) -> bytes:
        return msgpack.packb(  # type: ignore[no-any-return]
            {
                "op": self.op,
                "epoch": self.epoch,
                "prev": self.prev,
                "admin": self.admin,
                "adds": list(self.adds),
                "removes": list(self.removes),
                "roster": self.roster,
                "name": self.name,
                "at": self.at,
                "km": self.key_material,
                "creds": [list(c) for c in self.credentials],
            },
            use_bin_type=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Statement:
        """Raises RequestError(bad_statement) naming the first malformed field."""
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=True)
            if not isinstance(m, dict):
                raise TypeError("statement is not a map")
            stmt = cls(
                op=_expect(m, "op", str),
                epoch=_expect(m, "epoch", int),
                prev=_expect(m, "prev", bytes),
                admin=_expect(m, "admin", str),
                adds=tuple(_expect(m, "adds", list)),
                removes=tuple(_expect(m, "removes", list)),
                roster=_expect(m, "roster", bytes),
                name=_expect(m, "name", str),
                at=_expect(m, "at", int),
                key_material=_expect(m, "km", bytes),
                credentials=tuple(_credential_pair(c, i)
                                  for i, c in enumerate(_expect(m, "creds", list))),
            )
        except RequestError:
            raise
        except Exception as exc:  # msgpack and unpacking raise unrelated types for bad bytes
            raise RequestError(f"malformed statement: {exc}", code=Code.BAD_STATEMENT) from None
        for unit in (stmt.op, stmt.admin, *stmt.adds, *stmt.removes):
            if not isinstance(unit, str) or not frames.valid_id(unit):
                raise RequestError(f"invalid identifier {unit!r} in statement",
                                   code=Code.BAD_STATEMENT)
        return stmt


def _credential_pair(c: Any, i: int) -> tuple[bytes, bytes]:
    if not (isinstance(c, list) and len(c) == 2
            and isinstance(c[0], bytes) and isinstance(c[1], bytes)):
        raise RequestError(f"statement field 'creds'[{i}] is not [credential, signature]",
                           code=Code.BAD_STATEMENT)
    return c[0], c[1]


def _expect(m: dict[str, Any], key: str, t: type) -> Any:
    if key not in m:
        raise RequestError(f"statement lacks field {key!r}", code=Code.BAD_STATEMENT)
    v = m[key]
    if not isinstance(v, t) or (t is int and isinstance(v, bool)):
        raise RequestError(
            f"statement field {key!r} is {type(v).__name__}, expected {t.__name__}",
            code=Code.BAD_STATEMENT,
        )
    return v


def log_payload(body: bytes, signature: bytes) -> bytes:
    """How an accepted statement appears in the operation's log: the payload of a
    KIND_COMMIT entry is the msgpack array [statement, signature]."""
    return msgpack.packb([body, signature], use_bin_type=True)  # type: ignore[no-any-return]


def from_log(payload: bytes) -> tuple[bytes, bytes]:
    """(statement, signature) from a KIND_COMMIT entry's payload (``log_payload``)."""
    body, signature = msgpack.unpackb(payload)
    return bytes(body), bytes(signature)


def fold(state: OperationState | None, body: bytes, signature: bytes,
         directory: Callable[[str], SignedCredential | None]) -> OperationState:
    """The state after a statement read back from a log (a hub node replaying what it or
    another node stored): the same checks as when it was accepted. The creating
    statement's signer is its admin, whose credential it carries or ``directory`` has.
    Raises RequestError."""
    stmt = Statement.from_bytes(body)
    if state is not None:
        return state.apply(stmt, body, signature)
    carried = {c.credential.unit: c for c in (SignedCredential(b, s) for b, s in
                                                  stmt.credentials)}
    admin = carried.get(stmt.admin) or directory(stmt.admin)
    if admin is None:
        raise RequestError(f"statement creating {stmt.op!r}: its admin {stmt.admin!r} is "
                           f"neither carried nor enrolled", code=Code.UNKNOWN_UNIT)
    cred = admin.credential
    return OperationState.create(stmt, body, signature, signer_key=cred.identity_key,
                                 signer_role=cred.role)


def sign(key: Ed25519PrivateKey, stmt: Statement) -> tuple[bytes, bytes]:
    """Return (statement bytes, signature) ready for a ``Commit`` frame."""
    body = stmt.to_bytes()
    return body, key.sign(STATEMENT_CONTEXT + body)


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationState:
    """What the chain of statements has established so far."""

    op: str
    name: str
    admin: str
    admin_key: bytes
    epoch: int
    head: bytes
    members: frozenset[str] = field(default_factory=frozenset)

    @staticmethod
    def create(stmt: Statement, body: bytes, signature: bytes, *, signer_key: bytes,
               signer_role: str) -> OperationState:
        """Check an epoch-0 statement signed by ``signer_key``. Raises RequestError."""
        if stmt.epoch != 0:
            raise RequestError(
                f"operation {stmt.op!r} does not exist; its first statement must have epoch 0,"
                f" got {stmt.epoch}", code=Code.UNKNOWN_OPERATION)
        if signer_role != "ocu":
            raise RequestError(
                f"only a unit with role 'ocu' may create an operation; {stmt.admin!r} has"
                f" role {signer_role!r}", code=Code.NOT_ADMIN)
        if stmt.removes or stmt.prev:
            raise RequestError("an epoch-0 statement has no removes and no prev",
                               code=Code.BAD_STATEMENT)
        _verify(signer_key, body, signature, stmt)
        members = frozenset(stmt.adds) | {stmt.admin}
        _check_roster(stmt, members)
        return OperationState(op=stmt.op, name=stmt.name, admin=stmt.admin, admin_key=signer_key,
                              epoch=0, head=statement_hash(body), members=members)

    def apply(self, stmt: Statement, body: bytes, signature: bytes) -> OperationState:
        """Check the next statement against this state; return the new state or raise."""
        if stmt.epoch == 0:
            raise RequestError(
                f"operation {self.op!r} already exists on this hub (at epoch {self.epoch});"
                f" a new operation needs an id of its own", code=Code.OPERATION_EXISTS)
        if stmt.op != self.op:
            raise RequestError(f"statement is for {stmt.op!r}, not {self.op!r}",
                               code=Code.BAD_STATEMENT)
        if stmt.admin != self.admin:
            raise RequestError(
                f"statement names admin {stmt.admin!r}; the admin of {self.op!r} is"
                f" {self.admin!r}", code=Code.NOT_ADMIN)
        _verify(self.admin_key, body, signature, stmt)
        if stmt.epoch != self.epoch + 1:
            raise RequestError(
                f"operation {self.op!r} is at epoch {self.epoch}; expected epoch"
                f" {self.epoch + 1}, got {stmt.epoch}", code=Code.WRONG_EPOCH)
        if stmt.prev != self.head:
            raise RequestError("statement does not chain to the previous one (prev hash)",
                               code=Code.BAD_STATEMENT)
        for unit in stmt.adds:
            if unit in self.members:
                raise RequestError(f"{unit!r} is already a member of {self.op!r}",
                                   code=Code.BAD_STATEMENT)
        for unit in stmt.removes:
            if unit not in self.members:
                raise RequestError(f"{unit!r} is not a member of {self.op!r}",
                                   code=Code.BAD_STATEMENT)
            if unit == self.admin:
                raise RequestError("the admin cannot remove itself", code=Code.BAD_STATEMENT)
        members = (self.members | set(stmt.adds)) - set(stmt.removes)
        _check_roster(stmt, members)
        return replace(self, epoch=stmt.epoch, head=statement_hash(body), members=members)


def _verify(key: bytes, body: bytes, signature: bytes, stmt: Statement) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, STATEMENT_CONTEXT + body)
    except (InvalidSignature, ValueError):
        raise RequestError(
            f"statement for {stmt.op!r} epoch {stmt.epoch} is not signed by the admin"
            f" {stmt.admin!r}", code=Code.BAD_SIGNATURE) from None


def _check_roster(stmt: Statement, members: frozenset[str]) -> None:
    if stmt.roster != roster_hash(members):
        raise RequestError(
            f"roster hash of {stmt.op!r} epoch {stmt.epoch} does not match the resulting"
            f" {len(members)} members", code=Code.BAD_STATEMENT)
