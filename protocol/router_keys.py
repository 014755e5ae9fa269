"""The Router's key-package rules (protocol.md 12): a unit uploads packages signed with
its identity key; only an operation's admin claims them, never its own, and a retried
claim gets its first answer. A mixin of Router (protocol/router.py), which owns the state
named below; sans-I/O like it.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol import frames as f
from protocol.credentials import SignedCredential
from protocol.errors import Code, RequestError, StoreError
from protocol.keypackages import SignedKeyPackage
from protocol.router_audit import AuditEvents, Kind
from protocol.router_io import ClaimingKeyPackages, Peer, PuttingKeyPackages, Then
from protocol.statements import OperationState
from protocol.store import (
    ClaimKeyPackages,
    Command,
    KeyPackagesClaimed,
    KeyPackagesStored,
    PutKeyPackages,
    Result,
)


class KeyPackageRules:
    # the Router's, declared here for the type checker
    ops: dict[str, OperationState]
    directory: dict[str, SignedCredential]
    audit: AuditEvents
    _write: Callable[[list[Command], Then], None]
    _first: Callable[[Peer, int, list[Result] | StoreError], Result]

    def _put_key_packages(self, peer: Peer, frame: f.PutKeyPackages) -> None:
        """Verify each package against the sender's credential, then keep them."""
        signed = self.directory.get(peer.unit)
        if signed is None:  # cannot happen for an authenticated unit; refuse, do not crash
            raise RequestError(f"unit {peer.unit!r} has no credential on file",
                               code=Code.UNKNOWN_UNIT)
        identity_key = signed.credential.identity_key
        rows = []
        for i, raw in enumerate(frame.packages):
            try:
                pkg = SignedKeyPackage.from_bytes(raw).verify(identity_key, peer.unit)
            except RequestError as exc:
                raise RequestError(f"packages[{i}]: {exc.message}", code=exc.code) from None
            rows.append((pkg.id, raw, pkg.last_resort))
        self._write([PutKeyPackages(peer.unit, tuple(rows), frame.replace)],
                    PuttingKeyPackages(peer, frame.rid))

    def _claim_key_packages(self, peer: Peer, frame: f.ClaimKeyPackages) -> None:
        """Claim if the rules allow it; a refusal goes to the audit trail as well."""
        try:
            op = self._claimable(peer, frame)
        except RequestError as exc:
            self.audit.refused(Kind.KP_CLAIM_REFUSED, peer.unit, frame.op, exc.code)
            raise
        self._write([ClaimKeyPackages(peer.unit, op, frame.units, frame.cid)],
                    ClaimingKeyPackages(peer, frame.rid, op))

    def _claimable(self, peer: Peer, frame: f.ClaimKeyPackages) -> str:
        """protocol.md 12.3: only the admin of ``op`` claims, for the units its next
        statement seals to (whoever else could drain a unit's one-time packages); before
        ``op`` exists, a unit with role 'ocu' (the admin-to-be of its epoch 0). Returns
        ``op``; raises RequestError (not_admin, bad_statement)."""
        op = frame.op
        if op is None:  # an agent older than the field
            raise RequestError("kp_claim must name the operation ('op') the packages are "
                               "for: only its admin may claim them", code=Code.NOT_ADMIN)
        st = self.ops.get(op)
        if st is None:
            signed = self.directory.get(peer.unit)
            role = None if signed is None else signed.credential.role
            if role != "ocu":
                raise RequestError(f"only a unit with role 'ocu' may claim key packages to "
                                   f"create operation {op!r}; {peer.unit!r} has role "
                                   f"{role!r}", code=Code.NOT_ADMIN)
        elif st.admin != peer.unit:
            raise RequestError(f"only the admin of operation {op!r} ({st.admin!r}) may claim "
                               f"key packages for it; {peer.unit!r} may not",
                               code=Code.NOT_ADMIN)
        if peer.unit in frame.units:
            # every other unit may be in the next statement: added, or (a member) re-keyed
            raise RequestError(f"{peer.unit!r} claims its own key package for {op!r}: an "
                               f"admin's statements never seal a secret to the admin",
                               code=Code.BAD_STATEMENT)
        return op

    def _packages_stored(self, then: PuttingKeyPackages,
                         results: list[Result] | StoreError) -> None:
        stored = self._first(then.peer, then.rid, results)
        assert isinstance(stored, KeyPackagesStored)
        then.peer.send(f.Ok(rid=then.rid, info={"available": stored.available}))

    def _packages_claimed(self, then: ClaimingKeyPackages,
                          results: list[Result] | StoreError) -> None:
        claimed = self._first(then.peer, then.rid, results)
        assert isinstance(claimed, KeyPackagesClaimed)
        if not claimed.duplicate:
            self.audit.claimed(then.peer.unit, then.op, claimed.packages, claimed.missing)
        # a retry gets the first answer as it was, also when it names other units
        then.peer.send(f.Ok(rid=then.rid, info={"packages": claimed.packages,
                                                "missing": list(claimed.missing)}))
