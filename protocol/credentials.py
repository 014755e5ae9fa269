"""Unit credentials: what the operation authority vouches for, and how to check it.

A credential binds a unit id to its country, agency, role and Ed25519 identity
public key, for a period, under the authority's Ed25519 signature. The hub and
every agent verify it the same way, so this module is shared (protocol is
imported by client/, never the reverse). No I/O, no clock reads: callers pass
``now`` (seconds since the epoch).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol import frames
from protocol.errors import AuthError, Code
from protocol.signatures import SignatureMemo, VerifyingKey

CREDENTIAL_CONTEXT = b"opshub/credential/v1\x00"
AUTH_CONTEXT = b"opshub/auth/v1\x00"

_COUNTRY = re.compile(r"[A-Z]{2}")
#: Clocks of the authority and the hub may disagree by this much (seconds).
CLOCK_SKEW = 300

#: Roles a credential may carry. ``ocu`` units may create operations.
ROLES = frozenset({"unit", "ocu", "liaison", "observer"})


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(public_key: bytes) -> str:
    """Short human-comparable fingerprint of a raw public key: 8 groups of 4 hex digits."""
    h = hashlib.sha256(public_key).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def key_id(public_key: bytes) -> bytes:
    """Stable 8-byte id of an authority key, carried in credentials it signs."""
    return hashlib.sha256(public_key).digest()[:8]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """The authority-signed facts about one unit."""

    unit: str
    country: str
    agency: str
    role: str
    identity_key: bytes
    issued_at: int
    expires_at: int
    authority: bytes

    def __post_init__(self) -> None:
        if not frames.valid_id(self.unit):
            raise ValueError(f"invalid unit id {self.unit!r}")
        if not _COUNTRY.fullmatch(self.country):
            raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {self.country!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {self.role!r}")
        if len(self.identity_key) != 32:
            raise ValueError("identity key must be 32 raw Ed25519 bytes")
        if self.expires_at <= self.issued_at:
            raise ValueError("credential expires before it is issued")

    def to_bytes(self) -> bytes:
        return msgpack.packb(  # type: ignore[no-any-return]
            {
                "unit": self.unit,
                "country": self.country,
                "agency": self.agency,
                "role": self.role,
                "ik": self.identity_key,
                "iat": self.issued_at,
                "exp": self.expires_at,
                "auth": self.authority,
            },
            use_bin_type=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Credential:
        """Parse credential bytes. Raises AuthError(bad_credential) on any malformation."""
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=True)
            return cls(
                unit=_typed(m["unit"], str),
                country=_typed(m["country"], str),
                agency=_typed(m["agency"], str),
                role=_typed(m["role"], str),
                identity_key=_typed(m["ik"], bytes),
                issued_at=_typed(m["iat"], int),
                expires_at=_typed(m["exp"], int),
                authority=_typed(m["auth"], bytes),
            )
        except AuthError:
            raise
        except Exception as exc:  # msgpack and unpacking raise unrelated types for bad bytes
            raise AuthError(f"malformed credential: {exc}", code=Code.BAD_CREDENTIAL) from None

    def public_dict(self) -> dict[str, Any]:
        """JSON-friendly view for the directory."""
        return {
            "unit": self.unit,
            "country": self.country,
            "agency": self.agency,
            "role": self.role,
            "identity_key": self.identity_key.hex(),
            "fingerprint": fingerprint(self.identity_key),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "authority": self.authority.hex(),
        }


def _typed(value: Any, t: type) -> Any:
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise AuthError(f"field has type {type(value).__name__}, expected {t.__name__}",
                        code=Code.BAD_CREDENTIAL)
    return value


@dataclass(frozen=True, slots=True)
class SignedCredential:
    """Credential bytes exactly as signed, with the authority's signature."""

    body: bytes
    signature: bytes

    @property
    def credential(self) -> Credential:
        return Credential.from_bytes(self.body)

    def to_json(self) -> dict[str, Any]:
        """The directory's JSON form: the public facts, plus the exact signed bytes."""
        out = self.credential.public_dict()
        out["credential"] = base64.b64encode(self.body).decode()
        out["signature"] = base64.b64encode(self.signature).decode()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedCredential:
        """Inverse of to_json (only the signed bytes count; the rest is for people).
        Raises KeyError, TypeError or binascii.Error for a malformed entry."""
        return cls(base64.b64decode(data["credential"], validate=True),
                   base64.b64decode(data["signature"], validate=True))


def issue(authority: Ed25519PrivateKey, credential: Credential) -> SignedCredential:
    """Sign a credential with the authority key (its ``authority`` field must match)."""
    pub = raw_public(authority.public_key())
    if credential.authority != key_id(pub):
        raise ValueError("credential names a different authority key")
    body = credential.to_bytes()
    return SignedCredential(body, authority.sign(CREDENTIAL_CONTEXT + body))


class AuthorityRing:
    """The authority public keys a verifier trusts, by key id."""

    def __init__(self, public_keys: list[bytes], *,
                 signatures: SignatureMemo | None = None) -> None:
        """``signatures``: a memo of verified signatures shared with the other agents of
        this process (protocol.signatures); None verifies every credential itself."""
        self._keys: dict[bytes, VerifyingKey] = {
            key_id(k): Ed25519PublicKey.from_public_bytes(k) if signatures is None
            else signatures.key(k) for k in public_keys}

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, signed: SignedCredential, *, now: int) -> Credential:
        """Check signature and validity period. Raises AuthError with a specific code."""
        cred = signed.credential
        key = self._keys.get(cred.authority)
        if key is None:
            raise AuthError(
                f"credential of {cred.unit!r} is signed by unknown authority"
                f" {cred.authority.hex()}",
                code=Code.UNKNOWN_AUTHORITY,
            )
        try:
            key.verify(signed.signature, CREDENTIAL_CONTEXT + signed.body)
        except InvalidSignature:
            raise AuthError(
                f"credential of {cred.unit!r} has an invalid authority signature",
                code=Code.BAD_CREDENTIAL,
            ) from None
        if now >= cred.expires_at:
            raise AuthError(
                f"credential of {cred.unit!r} expired at {cred.expires_at} (now {now})",
                code=Code.EXPIRED_CREDENTIAL,
            )
        if now + CLOCK_SKEW < cred.issued_at:
            raise AuthError(
                f"credential of {cred.unit!r} is not valid before {cred.issued_at}",
                code=Code.EXPIRED_CREDENTIAL,
            )
        return cred


def check_replaces(presented: SignedCredential, enrolled: SignedCredential | None) -> bool:
    """The one rule for a unit's credential against the one on file: the same bytes are
    already enrolled (False: nothing to do); no credential on file, or one issued strictly
    earlier, is replaced (True). Anything else (issued earlier, or at the same second with
    other bytes) would let an old credential, perhaps of a compromised key, displace a
    newer one: AuthError(bad_credential), naming both issue times."""
    if enrolled is None:
        return True
    if enrolled.body == presented.body:
        return False
    new, current = presented.credential, enrolled.credential
    if new.issued_at > current.issued_at:
        return True
    raise AuthError(
        f"credential of {new.unit!r} issued at {new.issued_at} is superseded by the one on"
        f" file, issued at {current.issued_at}", code=Code.BAD_CREDENTIAL)


def auth_message(nonce: bytes, hub: str, unit: str) -> bytes:
    """What an agent signs to answer a challenge: binds nonce, hub and unit together."""
    return AUTH_CONTEXT + nonce + b"\x00" + hub.encode() + b"\x00" + unit.encode()


def verify_possession(cred: Credential, signature: bytes, *, nonce: bytes, hub: str) -> None:
    """Raises AuthError(bad_signature) unless ``signature`` answers the challenge."""
    key = Ed25519PublicKey.from_public_bytes(cred.identity_key)
    try:
        key.verify(signature, auth_message(nonce, hub, cred.unit))
    except InvalidSignature:
        raise AuthError(
            f"signature of {cred.unit!r} over the challenge does not verify",
            code=Code.BAD_SIGNATURE,
        ) from None
