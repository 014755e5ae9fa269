"""Identities on the agent side: the operation authority, unit identities, key folders.

``opshub keys`` writes a folder with an authority key and one identity per unit
(private key + authority-signed credential) plus a public roster.json that a hub
can preload. Private key files are written 0600. No network, no hub state.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from protocol import http_auth, statements
from protocol.credentials import (
    Credential,
    SignedCredential,
    auth_message,
    fingerprint,
    issue,
    key_id,
    raw_public,
)

DEFAULT_VALIDITY = 365 * 24 * 3600


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@dataclass(frozen=True, slots=True)
class UnitSpec:
    unit: str
    country: str
    agency: str
    role: str = "unit"


@dataclass(frozen=True, slots=True)
class Authority:
    """The operation authority: signs credentials of units."""

    key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Authority:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return raw_public(self.key.public_key())

    def issue(self, spec: UnitSpec, identity_key: bytes, *, now: int,
              validity: int = DEFAULT_VALIDITY) -> SignedCredential:
        cred = Credential(unit=spec.unit, country=spec.country, agency=spec.agency,
                          role=spec.role, identity_key=identity_key, issued_at=now,
                          expires_at=now + validity, authority=key_id(self.public_key))
        return issue(self.key, cred)

    def enroll(self, spec: UnitSpec, *, now: int, validity: int = DEFAULT_VALIDITY) -> UnitIdentity:
        """Create a unit's identity key and sign its credential."""
        key = Ed25519PrivateKey.generate()
        return UnitIdentity(key, self.issue(spec, raw_public(key.public_key()), now=now,
                                            validity=validity))


@dataclass(frozen=True, slots=True)
class UnitIdentity:
    """A unit's identity key and its credential: what an agent connects with."""

    key: Ed25519PrivateKey
    signed: SignedCredential

    @property
    def credential(self) -> Credential:
        return self.signed.credential

    @property
    def unit(self) -> str:
        return self.credential.unit

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.credential.identity_key)

    def answer(self, nonce: bytes, hub: str) -> bytes:
        """Sign a hub's challenge (proof of possession of the identity key)."""
        return self.key.sign(auth_message(nonce, hub, self.unit))

    def sign_statement(self, stmt: statements.Statement) -> tuple[bytes, bytes]:
        return statements.sign(self.key, stmt)

    def sign_request(self, method: str, target: str, body: bytes = b"", *, at: int,
                     bring: bool = False) -> dict[str, str]:
        """The headers that authenticate one HTTP API request (protocol/http_auth.py):
        ``target`` is the path and query as sent, ``at`` the time in unix seconds;
        ``bring``: with this unit's credential, so that the hub need not have it on file."""
        signature = self.key.sign(http_auth.signing_input(method, target, at, body))
        headers = {"Authorization": http_auth.authorization(self.unit, at, signature)}
        if bring:
            headers[http_auth.CREDENTIAL_HEADER] = http_auth.credential_header(self.signed)
        return headers

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "private_key": _raw_private(self.key).hex(),
            "credential": base64.b64encode(self.signed.body).decode(),
            "signature": base64.b64encode(self.signed.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitIdentity:
        return cls(
            Ed25519PrivateKey.from_private_bytes(bytes.fromhex(data["private_key"])),
            SignedCredential(base64.b64decode(data["credential"]),
                             base64.b64decode(data["signature"])),
        )

    def save(self, path: Path) -> None:
        _write_secret(path, json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: Path) -> UnitIdentity:
        return cls.from_json(json.loads(path.read_text()))


@dataclass(frozen=True, slots=True)
class KeyFolder:
    """authority.key, authority.pub, units/<unit>.json and roster.json under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept a str too

    def write(self, authority: Authority, identities: list[UnitIdentity]) -> None:
        (self.root / "units").mkdir(parents=True, exist_ok=True)
        _write_secret(self.root / "authority.key", _raw_private(authority.key).hex() + "\n")
        (self.root / "authority.pub").write_text(authority.public_key.hex() + "\n")
        for ident in identities:
            ident.save(self.root / "units" / f"{ident.unit}.json")
        roster = [i.signed.to_json() for i in identities]
        (self.root / "roster.json").write_text(json.dumps({"units": roster}, indent=2) + "\n")

    def authority_public(self) -> bytes:
        return bytes.fromhex((self.root / "authority.pub").read_text().strip())

    def authority(self) -> Authority:
        raw = bytes.fromhex((self.root / "authority.key").read_text().strip())
        return Authority(Ed25519PrivateKey.from_private_bytes(raw))

    def identity(self, unit: str) -> UnitIdentity:
        return UnitIdentity.load(self.root / "units" / f"{unit}.json")

    def roster(self) -> list[SignedCredential]:
        data = json.loads((self.root / "roster.json").read_text())
        return [SignedCredential.from_json(u) for u in data["units"]]


def generate(root: Path, specs: list[UnitSpec], *, now: int,
             validity: int = DEFAULT_VALIDITY) -> tuple[Authority, list[UnitIdentity]]:
    """Create an authority and one identity per spec, and write them under ``root``."""
    authority = Authority.generate()
    identities = [authority.enroll(s, now=now, validity=validity) for s in specs]
    KeyFolder(root).write(authority, identities)
    return authority, identities
