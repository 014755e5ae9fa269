"""Signed HTTP requests: how a unit authenticates to the hub's JSON API (docs/protocol.md 15).

A request carries::

    Authorization: Opshub-Ed25519 unit="JM-CUSTOMS", time="1765030000", signature="<base64>"
    Opshub-Credential: <base64 credential>.<base64 authority signature>    (optional)

The signature is the unit's Ed25519 identity key over ``signing_input``: a context
string, the method, the request target (path and query, exactly as sent), the time in
unix seconds, and the SHA-256 of the body. The hub checks the time against its clock
(within protocol.credentials.CLOCK_SKEW) and the signature against the credential: the
one in its directory, or the one the request brings (``Opshub-Credential``, which must be
signed by an authority the hub trusts, so that a unit the hub does not know yet, such as
an OCU about to enroll its operation's units, can still prove who it is).

Nothing here is secret and nothing is kept: a signed request may be replayed within the
skew window, which matters little for what the API does (reads, and enrolment, which is
idempotent); over TLS no one sees a request to replay it. Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from protocol.credentials import SignedCredential
from protocol.errors import AuthError, Code

SCHEME = "Opshub-Ed25519"
CREDENTIAL_HEADER = "Opshub-Credential"
CONTEXT = b"opshub/http/v1\x00"

_PARAM = re.compile(r'\s*([a-z]+)="([^"]*)"\s*(?:,|$)')


class Authorization:
    """The parsed ``Authorization`` header of a signed request."""

    __slots__ = ("signature", "time", "unit")

    def __init__(self, unit: str, time: int, signature: bytes) -> None:
        self.unit = unit
        self.time = time
        self.signature = signature


def signing_input(method: str, target: str, time: int, body: bytes) -> bytes:
    """The bytes a unit signs for one request. ``target``: path and query as sent."""
    return b"\n".join([CONTEXT + method.upper().encode(), target.encode(), str(time).encode(),
                       hashlib.sha256(body).hexdigest().encode()])


def authorization(unit: str, time: int, signature: bytes) -> str:
    """The ``Authorization`` header's value."""
    sig = base64.b64encode(signature).decode()
    return f'{SCHEME} unit="{unit}", time="{time}", signature="{sig}"'


def credential_header(signed: SignedCredential) -> str:
    """The ``Opshub-Credential`` header's value."""
    return (f"{base64.b64encode(signed.body).decode()}."
            f"{base64.b64encode(signed.signature).decode()}")


def parse_authorization(value: str) -> Authorization:
    """Raises AuthError(bad_credential) naming what is wrong with the header."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != SCHEME:
        raise AuthError(f"the Authorization scheme must be {SCHEME}, got {scheme[:40]!r}",
                        code=Code.BAD_CREDENTIAL)
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:
            raise AuthError(f"cannot read the Authorization parameters at {rest[pos:pos + 40]!r}"
                            " (expected name=\"value\", ...)", code=Code.BAD_CREDENTIAL)
        params[m[1]] = m[2]
        pos = m.end()
    missing = {"unit", "time", "signature"} - set(params)
    if missing:
        raise AuthError(f"the Authorization header lacks {', '.join(sorted(missing))}",
                        code=Code.BAD_CREDENTIAL)
    if not params["time"].isdigit() or len(params["time"]) > 12:
        raise AuthError(f"time must be unix seconds, got {params['time'][:20]!r}",
                        code=Code.BAD_CREDENTIAL)
    try:
        signature = base64.b64decode(params["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise AuthError("the signature is not base64", code=Code.BAD_CREDENTIAL) from None
    return Authorization(params["unit"], int(params["time"]), signature)


def parse_credential(value: str) -> SignedCredential:
    """The ``Opshub-Credential`` header's credential (not yet verified). Raises
    AuthError(bad_credential) for a value that is not two base64 parts."""
    body, dot, signature = value.strip().partition(".")
    try:
        if not dot:
            raise ValueError("no '.'")
        return SignedCredential(base64.b64decode(body, validate=True),
                                base64.b64decode(signature, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise AuthError(f"{CREDENTIAL_HEADER} must be base64 credential '.' base64 "
                        f"signature ({exc})", code=Code.BAD_CREDENTIAL) from None
