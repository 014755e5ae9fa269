"""What the Router reports to the audit trail (protocol/router_audit.py), driven in memory
with the harness of tests/protocol/test_router.py: enrollments, statements once stored,
key-package claims, and the admin requests its rules refuse, each with metadata only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import frames as f
from protocol.errors import Code
from protocol.router_audit import Audited, Kind
from protocol.statements import statement_hash
from tests.protocol.router_harness import ISSUED, Hub, Keys

OP = "OP-A"


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def hub(tmp_path: Path, keys: Keys) -> Iterator[Hub]:
    hub = Hub(tmp_path / "hub.db", keys)
    yield hub
    hub.close()


def _kinds(hub: Hub) -> list[str]:
    return [e.kind for e in hub.router.audit.drain()]


def test_router_audit_enroll_reports_the_credential_and_who_uploaded_it(hub, keys):
    """A directory upload is reported with its uploader and the credential's hash; the
    same credential again enrolls nothing and reports nothing."""
    signed = keys["JM-CUSTOMS"].signed
    hub.router.enroll(signed, by="OCU-BB")
    assert list(hub.router.audit.drain()) == [Audited(
        kind=Kind.ENROLLMENT, unit="JM-CUSTOMS", detail={
            "via": "directory", "by": "OCU-BB", "country": "JM", "agency": "customs",
            "role": "unit", "issued_at": ISSUED, "expires_at": signed.credential.expires_at,
            "credential_sha256": hashlib.sha256(signed.body).hexdigest()})]
    hub.router.enroll(signed)
    assert hub.router.audit.drain() == ()


def test_router_audit_handshake_and_statement_enrollments_say_how(hub, keys):
    """A credential enrolled at the handshake, or carried in a statement, says so."""
    ocu = hub.connect("OCU-BB")
    hub.create(ocu, OP, ["JM-CUSTOMS"])
    events = [e for e in hub.router.audit.drain() if e.kind == Kind.ENROLLMENT]
    assert [(e.unit, e.detail["via"]) for e in events] == [
        ("OCU-BB", "handshake"), ("JM-CUSTOMS", "statement")]


def test_router_audit_statements_are_reported_once_stored(hub, keys):
    """Creation and a change are reported after the store has them, with epoch, seq,
    hashes and the units added and removed; a retry of the head reports nothing."""
    ocu = hub.connect("OCU-BB")
    admin = hub.admin(OP)
    signed = admin.create("Operation A", [keys[u].signed for u in ("JM-CUSTOMS", "TT-POLICE")])
    hub.handle(ocu, hub.commit_frame(signed))
    assert Kind.OPERATION_CREATED not in _kinds(hub)
    hub.settle()
    [created] = [e for e in hub.router.audit.drain() if e.kind == Kind.OPERATION_CREATED]
    assert created == Audited(kind=Kind.OPERATION_CREATED, unit="OCU-BB", op=OP, detail={
        "epoch": 0, "seq": 1, "statement_sha256": statement_hash(signed[0]).hex(),
        "prev_sha256": "", "added": ["JM-CUSTOMS", "TT-POLICE"], "removed": []})
    admin.state = admin._proposed
    change = admin.change(add=[keys["DM-CUSTOMS"].signed], remove=["TT-POLICE"])
    hub.accept(ocu, admin, change)
    [stmt] = [e for e in hub.router.audit.drain() if e.kind == Kind.STATEMENT]
    assert (stmt.detail["epoch"], stmt.detail["seq"]) == (1, 2)
    assert (stmt.detail["added"], stmt.detail["removed"]) == (["DM-CUSTOMS"], ["TT-POLICE"])
    assert stmt.detail["prev_sha256"] == statement_hash(signed[0]).hex()
    hub.handle(ocu, hub.commit_frame(change))
    hub.settle()
    assert _kinds(hub) == []


def test_router_audit_refused_statement_is_reported_with_its_code(hub, keys):
    """A statement the rules refuse (here: a second creation of the operation) is
    reported as statement_refused with the code the admin was answered."""
    ocu = hub.connect("OCU-BB")
    hub.create(ocu, OP, ["JM-CUSTOMS"])
    hub.router.audit.drain()
    frame = hub.commit_frame(hub.admin(OP).create("Again", []))
    hub.handle(ocu, frame)
    code = ocu.error(frame.rid).code
    assert list(hub.router.audit.drain()) == [Audited(
        kind=Kind.STATEMENT_REFUSED, unit="OCU-BB", op=OP, detail={"code": code})]


def test_router_audit_statement_that_does_not_parse_is_refused_without_operation(hub):
    """Bytes that are no statement are reported refused, with no operation named."""
    ocu = hub.connect("OCU-BB")
    hub.router.audit.drain()
    hub.handle(ocu, f.Commit(rid=1, statement=b"\x01", signature=b"s" * 64))
    assert list(hub.router.audit.drain()) == [Audited(
        kind=Kind.STATEMENT_REFUSED, unit="OCU-BB", op=None,
        detail={"code": Code.BAD_STATEMENT})]


def test_router_audit_kp_claims_are_reported_and_refusals_too(hub, keys):
    """The admin's claim is reported once stored (units asked, units missing; no package);
    a claim by a unit that is not the admin is reported refused with not_admin."""
    ocu = hub.connect("OCU-BB")
    hub.create(ocu, OP, ["JM-CUSTOMS"])
    hub.router.audit.drain()
    hub.handle(ocu, f.ClaimKeyPackages(rid=5, op=OP, cid=1, units=("JM-CUSTOMS",)))
    assert hub.router.audit.drain() == ()
    hub.settle()
    assert list(hub.router.audit.drain()) == [Audited(
        kind=Kind.KP_CLAIM, unit="OCU-BB", op=OP,
        detail={"claimed": [], "missing": ["JM-CUSTOMS"]})]
    jm = hub.connect("JM-CUSTOMS")
    hub.router.audit.drain()
    hub.handle(jm, f.ClaimKeyPackages(rid=6, op=OP, cid=2, units=("TT-POLICE",)))
    assert list(hub.router.audit.drain()) == [Audited(
        kind=Kind.KP_CLAIM_REFUSED, unit="JM-CUSTOMS", op=OP,
        detail={"code": Code.NOT_ADMIN})]
