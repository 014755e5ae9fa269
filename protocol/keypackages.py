"""Key packages: one-time HPKE public keys a unit publishes, signed by its identity key.

An operation's admin claims one package per member from the hub's directory when it
rekeys, and seals that member's share of the new epoch's secret to it; the member
deletes the private half once used. A unit also keeps one *last-resort* package on
the hub, handed out (and not deleted) when its one-time packages have run out.

The hub checks the signature against the unit's credential before it stores a package,
so a package in the directory is what the unit published; every admin checks again
(see ``client.e2ee``), since the hub is not trusted. Shared between hub and client.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import frames
from protocol.errors import Code, RequestError

KEY_PACKAGE_CONTEXT = b"opshub/keypackage/v1\x00"
#: KEM names and the size of their public keys (raw; the hybrid is ML-KEM || X25519).
KEMS = {"MLKEM768_X25519": 1184 + 32, "X25519": 32}
#: One-time packages the hub keeps per unit: beyond that, the oldest are dropped.
MAX_STORED_PER_UNIT = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPackage:
    unit: str
    kem: str
    public_key: bytes
    created_at: int
    last_resort: bool = False

    @property
    def id(self) -> bytes:
        """16 bytes naming this package: a hash of its KEM and public key."""
        return hashlib.sha256(self.kem.encode() + b"\x00" + self.public_key).digest()[:16]

    def to_bytes(self) -> bytes:
        return msgpack.packb(  # type: ignore[no-any-return]
            [self.unit, self.kem, self.public_key, self.created_at, self.last_resort],
            use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyPackage:
        """Raises RequestError(bad_key_package) naming what is wrong."""
        try:
            unit, kem, public_key, created_at, last_resort = msgpack.unpackb(data, raw=False)
            pkg = cls(unit=unit, kem=kem, public_key=public_key, created_at=created_at,
                      last_resort=last_resort)
        except Exception as exc:  # msgpack and unpacking raise unrelated types for bad bytes
            raise RequestError(f"malformed key package: {type(exc).__name__}: {exc}",
                               code=Code.BAD_KEY_PACKAGE) from None
        if not (isinstance(pkg.unit, str) and frames.valid_id(pkg.unit)):
            raise RequestError(f"key package names an invalid unit {pkg.unit!r}",
                               code=Code.BAD_KEY_PACKAGE)
        if not isinstance(pkg.kem, str) or pkg.kem not in KEMS:
            raise RequestError(f"key package KEM {pkg.kem!r} is not one of {sorted(KEMS)}",
                               code=Code.BAD_KEY_PACKAGE)
        if not isinstance(pkg.public_key, bytes) or len(pkg.public_key) != KEMS[pkg.kem]:
            raise RequestError(f"a {pkg.kem} key package needs a {KEMS[pkg.kem]}-byte public "
                               f"key", code=Code.BAD_KEY_PACKAGE)
        if type(pkg.created_at) is not int or type(pkg.last_resort) is not bool:
            raise RequestError("key package created_at must be an int, last_resort a bool",
                               code=Code.BAD_KEY_PACKAGE)
        return pkg


@dataclass(frozen=True, slots=True)
class SignedKeyPackage:
    body: bytes
    signature: bytes

    @staticmethod
    def sign(key: Ed25519PrivateKey, pkg: KeyPackage) -> SignedKeyPackage:
        body = pkg.to_bytes()
        return SignedKeyPackage(body, key.sign(KEY_PACKAGE_CONTEXT + body))

    def to_bytes(self) -> bytes:
        return msgpack.packb([self.body, self.signature],  # type: ignore[no-any-return]
                             use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedKeyPackage:
        try:
            body, signature = msgpack.unpackb(data, raw=False)
            if not (isinstance(body, bytes) and isinstance(signature, bytes)):
                raise TypeError("expected [bytes, bytes]")
        except Exception as exc:  # msgpack and unpacking raise unrelated types for bad bytes
            raise RequestError(f"malformed signed key package: {exc}",
                               code=Code.BAD_KEY_PACKAGE) from None
        return cls(body, signature)

    def verify(self, identity_key: bytes, unit: str) -> KeyPackage:
        """The package, if ``identity_key`` signed it and it is ``unit``'s. Raises
        RequestError (bad_signature or bad_key_package)."""
        pkg = KeyPackage.from_bytes(self.body)
        if pkg.unit != unit:
            raise RequestError(f"key package is for {pkg.unit!r}, not {unit!r}",
                               code=Code.BAD_KEY_PACKAGE)
        try:
            Ed25519PublicKey.from_public_bytes(identity_key).verify(
                self.signature, KEY_PACKAGE_CONTEXT + self.body)
        except (InvalidSignature, ValueError):
            raise RequestError(f"key package of {unit!r} is not signed by its identity key",
                               code=Code.BAD_SIGNATURE) from None
        return pkg
