"""Tests of protocol.credentials: issue, verify, fingerprints, proof of possession."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.identity import Authority, UnitIdentity, UnitSpec
from protocol.credentials import (
    CLOCK_SKEW,
    AuthorityRing,
    Credential,
    SignedCredential,
    auth_message,
    fingerprint,
    issue,
    key_id,
    raw_public,
    verify_possession,
)
from protocol.errors import AuthError, CloseCode, Code

NOW = 1_700_000_000
VALIDITY = 3600
SPEC = UnitSpec("JM-CUSTOMS", "JM", "customs")


@pytest.fixture
def authority() -> Authority:
    return Authority.generate()


@pytest.fixture
def ring(authority: Authority) -> AuthorityRing:
    return AuthorityRing([authority.public_key])


@pytest.fixture
def unit(authority: Authority) -> UnitIdentity:
    return authority.enroll(SPEC, now=NOW, validity=VALIDITY)


def _verify_code(ring: AuthorityRing, signed: SignedCredential, now: int = NOW) -> str:
    with pytest.raises(AuthError) as info:
        ring.verify(signed, now=now)
    assert info.value.close_code == CloseCode.AUTH
    return info.value.code


def test_credentials_issue_then_verify_returns_the_credential(
        ring: AuthorityRing, unit: UnitIdentity) -> None:
    """A credential issued by a trusted authority verifies and carries what was issued."""
    cred = ring.verify(unit.signed, now=NOW)
    assert cred == unit.credential
    assert (cred.unit, cred.country, cred.agency, cred.role) == ("JM-CUSTOMS", "JM", "customs",
                                                                 "unit")
    assert (cred.issued_at, cred.expires_at) == (NOW, NOW + VALIDITY)
    assert cred.identity_key == raw_public(unit.key.public_key())


def test_credentials_body_round_trips_through_bytes(unit: UnitIdentity) -> None:
    """Credential.from_bytes(to_bytes()) gives back an equal credential."""
    assert Credential.from_bytes(unit.credential.to_bytes()) == unit.credential


def test_credentials_issue_refuses_a_credential_naming_another_authority(
        authority: Authority, unit: UnitIdentity) -> None:
    """issue raises ValueError when the credential's authority id is not the signing key's."""
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ValueError, match="different authority"):
        issue(other, unit.credential)


def test_credentials_verify_rejects_a_bad_authority_signature(
        ring: AuthorityRing, unit: UnitIdentity) -> None:
    """A credential whose signature does not verify is refused with bad_credential."""
    sig = bytearray(unit.signed.signature)
    sig[0] ^= 1
    assert _verify_code(ring, SignedCredential(unit.signed.body, bytes(sig))) == \
        Code.BAD_CREDENTIAL


def test_credentials_verify_rejects_a_tampered_body(
        authority: Authority, ring: AuthorityRing, unit: UnitIdentity) -> None:
    """A body changed after signing (here: role raised to ocu) is refused with bad_credential."""
    forged = replace(unit.credential, role="ocu").to_bytes()
    assert _verify_code(ring, SignedCredential(forged, unit.signed.signature)) == \
        Code.BAD_CREDENTIAL


def test_credentials_verify_rejects_a_short_signature(
        ring: AuthorityRing, unit: UnitIdentity) -> None:
    """A truncated signature is refused with bad_credential, not a crypto library error."""
    assert _verify_code(ring, SignedCredential(unit.signed.body, b"")) == Code.BAD_CREDENTIAL


def test_credentials_verify_rejects_an_unknown_authority(unit: UnitIdentity) -> None:
    """A credential signed by an authority outside the ring is refused with unknown_authority."""
    other_ring = AuthorityRing([Authority.generate().public_key])
    assert _verify_code(other_ring, unit.signed) == Code.UNKNOWN_AUTHORITY


def test_credentials_verify_rejects_an_expired_credential(
        ring: AuthorityRing, unit: UnitIdentity) -> None:
    """At or after expires_at the credential is refused with expired_credential."""
    assert _verify_code(ring, unit.signed, now=NOW + VALIDITY) == Code.EXPIRED_CREDENTIAL


def test_credentials_verify_accepts_the_last_valid_second(
        ring: AuthorityRing, unit: UnitIdentity) -> None:
    """One second before expires_at the credential still verifies."""
    assert ring.verify(unit.signed, now=NOW + VALIDITY - 1) == unit.credential


def test_credentials_verify_rejects_a_not_yet_valid_credential(
        ring: AuthorityRing, unit: UnitIdentity) -> None:
    """More than CLOCK_SKEW before issued_at the credential is refused (expired_credential)."""
    assert _verify_code(ring, unit.signed, now=NOW - CLOCK_SKEW - 1) == Code.EXPIRED_CREDENTIAL


def test_credentials_verify_tolerates_clock_skew(ring: AuthorityRing, unit: UnitIdentity) -> None:
    """A hub whose clock is a little behind the authority's still accepts a new credential."""
    assert ring.verify(unit.signed, now=NOW - CLOCK_SKEW).unit == unit.unit


_DROP = object()


def _body(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "unit": "JM-CUSTOMS", "country": "JM", "agency": "customs", "role": "unit",
        "ik": b"k" * 32, "iat": NOW, "exp": NOW + 1, "auth": b"a" * 8,
    }
    fields.update(overrides)
    fields = {k: v for k, v in fields.items() if v is not _DROP}
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(msgpack.packb([1, 2]), id="not-a-map"),
        pytest.param(_body(unit=_DROP), id="missing-unit"),
        pytest.param(_body(iat="now"), id="iat-string"),
        pytest.param(_body(exp=True), id="exp-bool"),
        pytest.param(_body(ik="k" * 32), id="ik-string"),
        pytest.param(_body(ik=b"k" * 31), id="ik-short"),
        pytest.param(_body(unit="no spaces"), id="bad-unit-id"),
        pytest.param(_body(country="jm"), id="lowercase-country"),
        pytest.param(_body(role="root"), id="unknown-role"),
        pytest.param(_body(exp=NOW), id="expires-at-issue"),
        pytest.param(b"\x00" * 10, id="several-documents"),
    ],
)
def test_credentials_malformed_bytes_raise_bad_credential(body: bytes) -> None:
    """Malformed credential bytes raise AuthError(bad_credential), never another exception."""
    with pytest.raises(AuthError) as info:
        Credential.from_bytes(body)
    assert info.value.code == Code.BAD_CREDENTIAL


def test_credentials_verify_rejects_malformed_credential_bytes(ring: AuthorityRing) -> None:
    """The ring refuses unparseable credential bytes with bad_credential."""
    assert _verify_code(ring, SignedCredential(b"garbage", b"s" * 64)) == Code.BAD_CREDENTIAL


def test_credentials_country_must_be_ascii_letters() -> None:
    """A country code with non-ASCII capitals is not an ISO 3166-1 alpha-2 code."""
    with pytest.raises(AuthError):
        Credential.from_bytes(_body(country="ÄÖ"))


def test_credentials_fingerprint_is_eight_groups_of_four_hex_digits() -> None:
    """fingerprint gives 8 space-separated groups of 4 lowercase hex digits of SHA-256."""
    fp = fingerprint(b"\x00" * 32)
    assert re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){7}", fp)
    # sha256(32 zero bytes) = 66687aadf862bd776c8fc18b8e9f8e20...
    assert fp == "6668 7aad f862 bd77 6c8f c18b 8e9f 8e20"


def test_credentials_fingerprint_differs_between_keys(unit: UnitIdentity) -> None:
    """Two different identity keys have different fingerprints."""
    other = raw_public(Ed25519PrivateKey.generate().public_key())
    assert fingerprint(unit.credential.identity_key) != fingerprint(other)
    assert unit.fingerprint == fingerprint(unit.credential.identity_key)


def test_credentials_key_id_is_eight_bytes(authority: Authority) -> None:
    """key_id is an 8-byte id, the one carried in the credentials the authority signs."""
    kid = key_id(authority.public_key)
    assert len(kid) == 8
    assert authority.enroll(SPEC, now=NOW).credential.authority == kid


def test_credentials_verify_possession_accepts_the_identity_key(unit: UnitIdentity) -> None:
    """A challenge answer signed by the credential's identity key verifies."""
    verify_possession(unit.credential, unit.answer(b"n" * 32, "hub-1"), nonce=b"n" * 32,
                      hub="hub-1")


@pytest.mark.parametrize(
    ("nonce", "hub"),
    [(b"m" * 32, "hub-1"), (b"n" * 32, "hub-2")],
    ids=["other-nonce", "other-hub"],
)
def test_credentials_verify_possession_rejects_an_answer_to_another_challenge(
        unit: UnitIdentity, nonce: bytes, hub: str) -> None:
    """An answer for a different nonce or hub is refused with bad_signature."""
    sig = unit.answer(b"n" * 32, "hub-1")
    with pytest.raises(AuthError) as info:
        verify_possession(unit.credential, sig, nonce=nonce, hub=hub)
    assert info.value.code == Code.BAD_SIGNATURE


def test_credentials_verify_possession_rejects_another_key(unit: UnitIdentity) -> None:
    """A correct message signed by a key other than the identity key is refused."""
    sig = Ed25519PrivateKey.generate().sign(auth_message(b"n" * 32, "hub-1", unit.unit))
    with pytest.raises(AuthError) as info:
        verify_possession(unit.credential, sig, nonce=b"n" * 32, hub="hub-1")
    assert info.value.code == Code.BAD_SIGNATURE


def test_credentials_verify_possession_rejects_a_truncated_signature(unit: UnitIdentity) -> None:
    """A short signature is refused with bad_signature, not a crypto library error."""
    sig = unit.answer(b"n" * 32, "hub-1")[:10]
    with pytest.raises(AuthError) as info:
        verify_possession(unit.credential, sig, nonce=b"n" * 32, hub="hub-1")
    assert info.value.code == Code.BAD_SIGNATURE


def test_credentials_auth_message_binds_the_unit() -> None:
    """The signed challenge message differs per unit, so one answer cannot serve two units."""
    assert auth_message(b"n", "hub", "A") != auth_message(b"n", "hub", "B")
