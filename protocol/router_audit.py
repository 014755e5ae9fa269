"""What the hub's audit trail records, as the Router (protocol/router.py) reports it:
enrollments, accepted membership statements, key-package claims, and the admin requests
its rules refused. Plain data collected in memory, drained by the pump (hub/broker.py)
into hub/audit.py; no I/O here.

Metadata only, by construction: each event is built here from ids, epochs, codes and
hashes. Nothing takes a payload, a statement's sealed key material, a signature or a key
package, so none can reach the trail by accident.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.credentials import SignedCredential
from protocol.statements import Statement

#: One value of an event's detail: what ``AuditTrail.record`` takes as keyword arguments.
Value = str | int | list[str] | None


class Kind:
    """The audit trail's stable kinds (docs/operations.md, "Audit trail")."""

    ENROLLMENT = "enrollment"
    OPERATION_CREATED = "operation_created"
    STATEMENT = "statement"
    STATEMENT_REFUSED = "statement_refused"
    KP_CLAIM = "kp_claim"
    KP_CLAIM_REFUSED = "kp_claim_refused"
    #: a failed handshake (hub/connection.py) or HTTP authentication (hub/api.py)
    AUTH_FAILURE = "auth_failure"


#: Kinds a peer can cause as fast as it sends: the trail bounds their rate per source.
NOISY = frozenset({Kind.AUTH_FAILURE, Kind.STATEMENT_REFUSED, Kind.KP_CLAIM_REFUSED})

#: How an enrollment came: the directory upload or the roster at start, a handshake (open
#: enrollment, or a newer credential than the one on file), a statement carrying it.
VIA_DIRECTORY, VIA_HANDSHAKE, VIA_STATEMENT = "directory", "handshake", "statement"


@dataclass(frozen=True, slots=True, kw_only=True)
class Audited:
    """One event for the audit trail: the acting unit, the operation, and metadata."""

    kind: str
    unit: str | None = None
    op: str | None = None
    detail: dict[str, Value] = field(default_factory=dict)


class AuditEvents:
    """The router's audit events since the last ``drain``, in the order they happened."""

    def __init__(self) -> None:
        self._events: list[Audited] = []

    def drain(self) -> tuple[Audited, ...]:
        """The events so far, oldest first; the pump calls it after every input, so the
        usual answer, none, allocates nothing."""
        if not self._events:
            return ()
        out = tuple(self._events)
        self._events.clear()
        return out

    def enrolled(self, signed: SignedCredential, via: str, by: str | None = None) -> None:
        """``by``: the unit that uploaded it (the HTTP API's registrar), if any."""
        cred = signed.credential
        detail: dict[str, Value] = {
            "via": via, "country": cred.country, "agency": cred.agency, "role": cred.role,
            "issued_at": cred.issued_at, "expires_at": cred.expires_at,
            "credential_sha256": hashlib.sha256(signed.body).hexdigest()}
        if by is not None:
            detail["by"] = by
        self._events.append(Audited(kind=Kind.ENROLLMENT, unit=cred.unit, detail=detail))

    def accepted(self, stmt: Statement, digest: bytes, seq: int) -> None:
        """A statement is stored at ``seq`` of its operation's log (epoch 0: created)."""
        kind = Kind.OPERATION_CREATED if stmt.epoch == 0 else Kind.STATEMENT
        self._events.append(Audited(kind=kind, unit=stmt.admin, op=stmt.op, detail={
            "epoch": stmt.epoch, "seq": seq, "statement_sha256": digest.hex(),
            "prev_sha256": stmt.prev.hex(), "added": sorted(stmt.adds),
            "removed": sorted(stmt.removes)}))

    def claimed(self, unit: str, op: str, claimed: Iterable[str],
                missing: Iterable[str]) -> None:
        """The admin ``unit`` took a package of each unit ``claimed`` (none of ``missing``)."""
        self._events.append(Audited(kind=Kind.KP_CLAIM, unit=unit, op=op, detail={
            "claimed": sorted(set(claimed)), "missing": sorted(set(missing))}))

    def refused(self, kind: str, unit: str, op: str | None, code: str) -> None:
        self._events.append(Audited(kind=kind, unit=unit, op=op, detail={"code": code}))
