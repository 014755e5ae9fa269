"""OperationAdmin: the OCU's side of an operation's membership chain.

It builds and signs statements (create, add, remove), keeps the chain state by
applying its own statements with the same rules the hub uses, and sends them.
The ``key_material`` field stays empty until the encryption layer fills it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from client.identity import UnitIdentity
from protocol.credentials import SignedCredential
from protocol.errors import UsageError
from protocol.statements import OperationState, Statement, roster_hash

if TYPE_CHECKING:  # the chain logic stays importable without the I/O layer
    from client.connection import AgentConnection


class OperationAdmin:
    def __init__(self, identity: UnitIdentity, op: str, *, now: Callable[[], float]) -> None:
        self.identity = identity
        self.op = op
        self.now = now
        self.state: OperationState | None = None
        self._proposed: OperationState | None = None

    def create(self, name: str, members: Iterable[SignedCredential],
               key_material: bytes = b"") -> tuple[bytes, bytes]:
        """Sign the epoch-0 statement; members' credentials travel with it."""
        creds = list(members)
        units = frozenset(c.credential.unit for c in creds) | {self.identity.unit}
        stmt = Statement(
            op=self.op, epoch=0, prev=b"", admin=self.identity.unit,
            adds=tuple(sorted(units - {self.identity.unit})), roster=roster_hash(units),
            name=name, at=int(self.now()), key_material=key_material,
            credentials=tuple((c.body, c.signature) for c in [self.identity.signed, *creds]))
        body, sig = self.identity.sign_statement(stmt)
        self._proposed = OperationState.create(
            stmt, body, sig, signer_key=self.identity.credential.identity_key,
            signer_role=self.identity.credential.role)
        return body, sig

    def change(self, *, add: Iterable[SignedCredential] = (), remove: Iterable[str] = (),
               key_material: bytes = b"") -> tuple[bytes, bytes]:
        """Sign the next statement (epoch + 1) adding and/or removing members. Raises
        UsageError before the operation's creation was accepted."""
        if self.state is None:
            raise UsageError(f"operation {self.op!r} has not been created yet")
        adds = list(add)
        removes = tuple(sorted(remove))
        members = (self.state.members | {c.credential.unit for c in adds}) - set(removes)
        stmt = Statement(
            op=self.op, epoch=self.state.epoch + 1, prev=self.state.head,
            admin=self.identity.unit, adds=tuple(sorted(c.credential.unit for c in adds)),
            removes=removes, roster=roster_hash(members), at=int(self.now()),
            key_material=key_material,
            credentials=tuple((c.body, c.signature) for c in adds))
        body, sig = self.identity.sign_statement(stmt)
        self._proposed = self.state.apply(stmt, body, sig)
        return body, sig

    async def send(self, conn: AgentConnection, signed: tuple[bytes, bytes]) -> dict[str, Any]:
        """Send the last signed statement; the chain advances only if the hub accepts it.
        Raises RequestError with the hub's reason otherwise."""
        info = await conn.commit(*signed)
        self.state = self._proposed
        return info
