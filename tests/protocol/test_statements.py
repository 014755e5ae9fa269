"""Tests of protocol.statements: the rules of an operation's membership chain."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgpack
import pytest

from client.identity import Authority, UnitIdentity, UnitSpec
from client.membership import OperationAdmin
from protocol.errors import Code, RequestError
from protocol.statements import (
    OperationState,
    Statement,
    roster_hash,
    sign,
    statement_hash,
)

NOW = 1_700_000_000
OP = "OP-TIDE"
SPECS = [
    UnitSpec("OCU-BB", "BB", "customs", "ocu"),
    UnitSpec("JM-CUSTOMS", "JM", "customs"),
    UnitSpec("TT-POLICE", "TT", "police"),
    UnitSpec("DM-CUSTOMS", "DM", "customs"),
]


@pytest.fixture(scope="module")
def units() -> dict[str, UnitIdentity]:
    authority = Authority.generate()
    return {s.unit: authority.enroll(s, now=NOW) for s in SPECS}


def _create(admin: OperationAdmin, members: list[UnitIdentity]) -> OperationState:
    """Run the admin's create through the hub's check and adopt the state it establishes."""
    body, sig = admin.create("Operation Tide", [m.signed for m in members])
    cred = admin.identity.credential
    state = OperationState.create(Statement.from_bytes(body), body, sig,
                                  signer_key=cred.identity_key, signer_role=cred.role)
    admin.state = state
    return state


@pytest.fixture
def admin(units: dict[str, UnitIdentity]) -> OperationAdmin:
    return OperationAdmin(units["OCU-BB"], OP, now=lambda: NOW)


@pytest.fixture
def state(admin: OperationAdmin, units: dict[str, UnitIdentity]) -> OperationState:
    """OP-TIDE at epoch 0 with OCU-BB (admin), JM-CUSTOMS and TT-POLICE."""
    return _create(admin, [units["JM-CUSTOMS"], units["TT-POLICE"]])


def _next(state: OperationState, **overrides: Any) -> Statement:
    """The statement the admin would sign next, with some fields overridden."""
    adds = tuple(overrides.pop("adds", ()))
    removes = tuple(overrides.pop("removes", ()))
    members = (state.members | set(adds)) - set(removes)
    fields: dict[str, Any] = {
        "op": state.op, "epoch": state.epoch + 1, "prev": state.head, "admin": state.admin,
        "adds": adds, "removes": removes, "roster": roster_hash(members), "at": NOW,
    }
    fields.update(overrides)
    return Statement(**fields)


def _apply_error(state: OperationState, stmt: Statement, signer: UnitIdentity) -> RequestError:
    body, sig = sign(signer.key, stmt)
    with pytest.raises(RequestError) as info:
        state.apply(Statement.from_bytes(body), body, sig)
    return info.value


def test_statements_create_establishes_epoch_zero(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """An ocu's epoch-0 statement creates the operation with the admin among the members."""
    assert state.op == OP
    assert state.name == "Operation Tide"
    assert state.admin == "OCU-BB"
    assert state.admin_key == units["OCU-BB"].credential.identity_key
    assert state.epoch == 0
    assert state.members == {"OCU-BB", "JM-CUSTOMS", "TT-POLICE"}


def test_statements_valid_chain_applies_in_order(
        admin: OperationAdmin, state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """Adds and removes signed by the admin advance epoch, head and members statement by
    statement."""
    body1, sig1 = admin.change(add=[units["DM-CUSTOMS"].signed])
    s1 = state.apply(Statement.from_bytes(body1), body1, sig1)
    assert (s1.epoch, s1.head) == (1, statement_hash(body1))
    assert s1.members == {"OCU-BB", "JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"}

    admin.state = s1
    body2, sig2 = admin.change(remove=["TT-POLICE"])
    s2 = s1.apply(Statement.from_bytes(body2), body2, sig2)
    assert (s2.epoch, s2.head) == (2, statement_hash(body2))
    assert s2.members == {"OCU-BB", "JM-CUSTOMS", "DM-CUSTOMS"}
    assert (s2.op, s2.admin, s2.admin_key) == (state.op, state.admin, state.admin_key)


def test_statements_statement_round_trips_through_bytes(state: OperationState) -> None:
    """Statement.from_bytes(to_bytes()) gives back an equal statement."""
    stmt = _next(state, adds=["DM-CUSTOMS"], key_material=b"km",
                 credentials=((b"body", b"sig"),))
    assert Statement.from_bytes(stmt.to_bytes()) == stmt


def test_statements_apply_rejects_a_signature_by_another_unit(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """A statement naming the admin but signed by another member's key is bad_signature."""
    stmt = _next(state, adds=["DM-CUSTOMS"])
    err = _apply_error(state, stmt, units["JM-CUSTOMS"])
    assert err.code == Code.BAD_SIGNATURE
    assert "not signed by the admin" in err.message


def test_statements_apply_rejects_another_admin_name(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """A statement naming someone else as admin is not_admin, whoever signed it."""
    stmt = _next(state, admin="JM-CUSTOMS", adds=["DM-CUSTOMS"])
    assert _apply_error(state, stmt, units["JM-CUSTOMS"]).code == Code.NOT_ADMIN


def test_statements_apply_rejects_a_second_epoch_zero_as_operation_exists(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """An epoch-0 statement for an operation that exists is operation_exists, naming it."""
    stmt = _next(state, epoch=0, adds=["DM-CUSTOMS"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.OPERATION_EXISTS
    assert repr(state.op) in err.message


@pytest.mark.parametrize("epoch", [2, 5])
def test_statements_apply_rejects_a_wrong_epoch(
        state: OperationState, units: dict[str, UnitIdentity], epoch: int) -> None:
    """A statement whose epoch is not the current epoch + 1 is wrong_epoch."""
    stmt = _next(state, epoch=epoch, adds=["DM-CUSTOMS"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.WRONG_EPOCH
    assert f"got {epoch}" in err.message


def test_statements_apply_rejects_a_broken_prev_hash(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """A statement that does not chain to the current head is bad_statement."""
    stmt = _next(state, prev=b"\x00" * 32, adds=["DM-CUSTOMS"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.BAD_STATEMENT
    assert "prev hash" in err.message


def test_statements_apply_rejects_a_roster_hash_mismatch(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """A roster hash that is not the hash of the resulting members is bad_statement."""
    stmt = _next(state, adds=["DM-CUSTOMS"], roster=roster_hash(state.members))
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.BAD_STATEMENT
    assert "roster hash" in err.message


def test_statements_apply_rejects_adding_an_existing_member(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """Adding a unit that is already a member is bad_statement."""
    stmt = _next(state, adds=["JM-CUSTOMS"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.BAD_STATEMENT
    assert "'JM-CUSTOMS' is already a member" in err.message


def test_statements_apply_rejects_removing_a_non_member(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """Removing a unit that is not a member is bad_statement."""
    stmt = _next(state, removes=["DM-CUSTOMS"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.BAD_STATEMENT
    assert "'DM-CUSTOMS' is not a member" in err.message


def test_statements_apply_rejects_the_admin_removing_itself(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """The admin cannot remove itself from its operation."""
    stmt = _next(state, removes=["OCU-BB"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.BAD_STATEMENT
    assert "cannot remove itself" in err.message


def test_statements_apply_rejects_a_statement_for_another_operation(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """A statement for a different operation is bad_statement."""
    stmt = _next(state, op="OP-OTHER", adds=["DM-CUSTOMS"])
    err = _apply_error(state, stmt, units["OCU-BB"])
    assert err.code == Code.BAD_STATEMENT
    assert "not 'OP-TIDE'" in err.message


def test_statements_admin_change_refuses_removing_itself(admin: OperationAdmin,
                                                         state: OperationState) -> None:
    """OperationAdmin runs the hub's rules locally, so it refuses to sign a self-removal."""
    with pytest.raises(RequestError) as info:
        admin.change(remove=["OCU-BB"])
    assert info.value.code == Code.BAD_STATEMENT


def test_statements_create_by_a_non_ocu_is_not_admin(units: dict[str, UnitIdentity]) -> None:
    """A unit whose credential role is not ocu cannot create an operation."""
    admin = OperationAdmin(units["JM-CUSTOMS"], OP, now=lambda: NOW)
    with pytest.raises(RequestError) as info:
        admin.create("Operation Tide", [units["TT-POLICE"].signed])
    assert info.value.code == Code.NOT_ADMIN


def _created(units: dict[str, UnitIdentity], **overrides: Any) -> tuple[Statement, bytes, bytes]:
    members = frozenset({"OCU-BB", "JM-CUSTOMS"})
    fields: dict[str, Any] = {"op": OP, "epoch": 0, "prev": b"", "admin": "OCU-BB",
                              "adds": ("JM-CUSTOMS",), "roster": roster_hash(members)}
    fields.update(overrides)
    body, sig = sign(units["OCU-BB"].key, Statement(**fields))
    return Statement.from_bytes(body), body, sig


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"epoch": 1}, Code.UNKNOWN_OPERATION),
        ({"prev": b"\x01" * 32}, Code.BAD_STATEMENT),
        ({"removes": ("TT-POLICE",)}, Code.BAD_STATEMENT),
        ({"roster": roster_hash({"JM-CUSTOMS"})}, Code.BAD_STATEMENT),
    ],
    ids=["epoch-1", "prev", "removes", "roster"],
)
def test_statements_create_rejects_a_malformed_first_statement(
        units: dict[str, UnitIdentity], overrides: dict[str, Any], code: str) -> None:
    """An epoch-0 statement with a non-zero epoch, a prev, removes or a bad roster is refused."""
    stmt, body, sig = _created(units, **overrides)
    cred = units["OCU-BB"].credential
    with pytest.raises(RequestError) as info:
        OperationState.create(stmt, body, sig, signer_key=cred.identity_key, signer_role="ocu")
    assert info.value.code == code


def test_statements_create_rejects_a_signature_by_another_key(
        units: dict[str, UnitIdentity]) -> None:
    """An epoch-0 statement checked against a key that did not sign it is bad_signature."""
    stmt, body, sig = _created(units)
    with pytest.raises(RequestError) as info:
        OperationState.create(stmt, body, sig,
                              signer_key=units["JM-CUSTOMS"].credential.identity_key,
                              signer_role="ocu")
    assert info.value.code == Code.BAD_SIGNATURE


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(Statement(op=OP, epoch=0, prev=b"", admin="bad id!").to_bytes(),
                     id="bad-admin-id"),
        pytest.param(Statement(op=OP, epoch=0, prev=b"", admin="A", adds=("x y",)).to_bytes(),
                     id="bad-member-id"),
    ],
)
def test_statements_from_bytes_rejects_malformed_statements(body: bytes) -> None:
    """Unparseable statements or invalid identifiers raise RequestError(bad_statement)."""
    with pytest.raises(RequestError) as info:
        Statement.from_bytes(body)
    assert info.value.code == Code.BAD_STATEMENT


def test_statements_from_bytes_rejects_a_malformed_credential_entry() -> None:
    """A creds entry that is not [credential, signature] is refused, not silently dropped."""
    wire = msgpack.unpackb(Statement(op=OP, epoch=0, prev=b"", admin="A").to_bytes())
    wire["creds"] = [[b"cred", b"sig"], [b"only-one"]]
    with pytest.raises(RequestError, match=r"'creds'\[1\]") as info:
        Statement.from_bytes(msgpack.packb(wire))
    assert info.value.code == Code.BAD_STATEMENT


def test_statements_from_bytes_rejects_a_mistyped_field(state: OperationState) -> None:
    """A statement field of the wrong type raises bad_statement naming the field."""
    wire = msgpack.unpackb(_next(state).to_bytes())
    wire["epoch"] = True
    with pytest.raises(RequestError, match="'epoch'") as info:
        Statement.from_bytes(msgpack.packb(wire))
    assert info.value.code == Code.BAD_STATEMENT


def test_statements_roster_hash_ignores_order() -> None:
    """The roster hash depends on the set of members, not the order they were given in."""
    assert roster_hash({"A", "B", "C"}) == roster_hash(frozenset(["C", "A", "B"]))
    assert roster_hash({"A", "B"}) != roster_hash({"A", "B", "C"})


def test_statements_apply_does_not_mutate_the_state(
        state: OperationState, units: dict[str, UnitIdentity]) -> None:
    """apply returns a new state and leaves the old one as it was."""
    before = replace(state)
    stmt = _next(state, adds=["DM-CUSTOMS"])
    body, sig = sign(units["OCU-BB"].key, stmt)
    state.apply(Statement.from_bytes(body), body, sig)
    assert state == before
