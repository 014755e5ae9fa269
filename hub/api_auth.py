"""Who is calling the HTTP API: a signed request checked against the directory or the
credential it brings (protocol/http_auth.py), and what that caller may see and do.

Two kinds of caller. A *registrar* (a unit the configuration names in
``registrar_units``, or whose credential's role is in ``registrar_roles``; by default the
``ocu`` role) enrolls credentials and sees the whole directory and every operation: it
administers the hub's roster. Any other unit sees its own entry, the operations it belongs
to (as member or admin), and the directory entries of those operations' units. The
checks raise ApiError, which the API turns into its JSON error body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.config import HubConfig
from protocol.credentials import (
    CLOCK_SKEW,
    AuthorityRing,
    Credential,
    SignedCredential,
    check_replaces,
)
from protocol.errors import AuthError, Code
from protocol.http_auth import (
    CREDENTIAL_HEADER,
    SCHEME,
    parse_authorization,
    parse_credential,
    signing_input,
)


class ApiError(Exception):
    """A refused request: HTTP status, stable code, and a message that names the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated unit, and whether it is a registrar."""

    credential: Credential
    registrar: bool

    @property
    def unit(self) -> str:
        return self.credential.unit


def authenticate(*, method: str, target: str, headers: Mapping[str, str], body: bytes,
                 ring: AuthorityRing, lookup: Callable[[str], SignedCredential | None],
                 config: HubConfig, now: int) -> Caller:
    """The caller of one request. ``target``: path and query as sent. Raises ApiError
    (401) naming what failed: no or a malformed header, a stale time, an unknown unit, a
    credential that does not verify, a signature that does not."""
    header = headers.get("Authorization")
    if header is None:
        raise ApiError(401, Code.UNAUTHENTICATED,
                       f"sign the request: Authorization: {SCHEME} unit=..., time=..., "
                       "signature=... (docs/protocol.md 15)")
    try:
        auth = parse_authorization(header)
        if abs(now - auth.time) > CLOCK_SKEW:
            raise AuthError(f"the request was signed at {auth.time}, {now - auth.time:+d} s "
                            f"from the hub's clock (at most {CLOCK_SKEW} s either way)",
                            code=Code.STALE_REQUEST)
        credential = _credential(auth.unit, headers.get(CREDENTIAL_HEADER), ring, lookup, now)
        key = Ed25519PublicKey.from_public_bytes(credential.identity_key)
        try:
            key.verify(auth.signature, signing_input(method, target, auth.time, body))
        except InvalidSignature:
            raise AuthError(f"the request's signature does not verify with the identity key "
                            f"of {auth.unit!r}", code=Code.BAD_SIGNATURE) from None
    except AuthError as exc:
        raise ApiError(401, exc.code, exc.message) from None
    registrar = (credential.unit in config.registrar_units
                 or credential.role in config.registrar_roles)
    return Caller(credential, registrar)


def _credential(unit: str, brought: str | None, ring: AuthorityRing,
                lookup: Callable[[str], SignedCredential | None], now: int) -> Credential:
    """The caller's verified credential: the one the request brings, if it does (and it
    must not be older than the one on file), else the directory's."""
    enrolled = lookup(unit)
    if brought is not None:
        signed = parse_credential(brought)
        credential = ring.verify(signed, now=now)
        if credential.unit != unit:
            raise AuthError(f"the {CREDENTIAL_HEADER} header is {credential.unit!r}'s, the "
                            f"request is signed as {unit!r}", code=Code.BAD_CREDENTIAL)
        check_replaces(signed, enrolled)
        return credential
    if enrolled is None:
        raise AuthError(f"unit {unit!r} is not enrolled at this hub (a unit not enrolled "
                        f"sends its credential in {CREDENTIAL_HEADER})", code=Code.UNKNOWN_UNIT)
    return ring.verify(enrolled, now=now)
