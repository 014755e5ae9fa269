"""The units a tool acts as, and the key folder it reads them from: the units the folder
already holds are played with their own identity, never re-issued; the others get a new
credential signed by the folder's authority. Every problem with the folder is one
UsageError naming the file. No network: the caller says which credentials the hub has.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from client.identity import Authority, KeyFolder, UnitIdentity, UnitSpec
from protocol.credentials import SignedCredential, key_id
from protocol.errors import UsageError

#: The roster ``opshub keys`` writes when no ``--unit`` is given (and the demo plays).
DEFAULT_ROSTER = [
    UnitSpec("OCU", "BB", "WCO-RILO", "ocu"),
    UnitSpec("BB-CUSTOMS", "BB", "customs"),
    UnitSpec("JM-CUSTOMS", "JM", "customs"),
    UnitSpec("TT-POLICE", "TT", "police"),
    UnitSpec("DM-CUSTOMS", "DM", "customs"),
    UnitSpec("INTERPOL-LO", "FR", "INTERPOL", "liaison"),
]

#: New credentials are dated this far back, so that a hub whose clock is a little behind
#: does not find them "not yet valid".
BACKDATE = 60

# what a damaged file raises when parsed: bad JSON, bad hex or base64, a missing field,
# a key of the wrong length
_UNREADABLE = (ValueError, KeyError, TypeError, binascii.Error)


def open_folder(path: Path, *, authority_key: bool) -> KeyFolder:
    """The key folder at ``path``, checked for what the caller needs: ``authority.key``
    (to sign credentials) or ``authority.pub`` (a hub, which only verifies). Raises
    UsageError naming what is missing."""
    if not path.is_dir():
        raise UsageError(f"no key folder {path} (create one with `opshub keys --out {path}`)")
    name = "authority.key" if authority_key else "authority.pub"
    file = path / name
    if not file.is_file():
        why = ("signing the units' credentials needs the authority's private key"
               if authority_key else "the hub needs the public key of the authority it "
               "trusts (`opshub keys` writes it)")
        raise UsageError(f"{file} is missing: {why}")
    folder = KeyFolder(path)
    try:
        if authority_key:
            folder.authority()
        else:
            folder.authority_public()
    except (*_UNREADABLE, OSError) as exc:
        raise UsageError(f"{file}: not an Ed25519 key in hex ({_reason(exc)})") from None
    return folder


def roster(folder: KeyFolder) -> list[SignedCredential]:
    """The credentials of ``roster.json`` (none if the folder has no roster). Raises
    UsageError naming the file if it cannot be read."""
    path = folder.root / "roster.json"
    if not path.exists():
        return []
    try:
        return folder.roster()
    except (*_UNREADABLE, OSError) as exc:
        raise UsageError(f"{path}: not a roster of signed credentials ({_reason(exc)})"
                         ) from None


def own_identities(folder: KeyFolder, specs: Sequence[UnitSpec]) -> dict[str, UnitIdentity]:
    """The identities among ``specs`` that the folder holds (``units/<UNIT>.json``).
    Raises UsageError for a unit file that cannot be read, that another authority
    signed, whose role is not the one asked for, or that is missing while roster.json
    lists the unit (the hub has that unit's credential; a new one would replace it)."""
    authority = key_id(folder.authority().public_key)
    listed = {c.credential.unit for c in roster(folder)}
    out: dict[str, UnitIdentity] = {}
    for spec in specs:
        path = folder.root / "units" / f"{spec.unit}.json"
        if not path.exists():
            if spec.unit in listed:
                raise UsageError(f"{path} is missing, but {folder.root / 'roster.json'} "
                                 f"lists {spec.unit}: restore the file, or remove the unit "
                                 f"from the roster")
            continue
        try:
            ident = UnitIdentity.load(path)
            cred = ident.credential
        except (*_UNREADABLE, OSError) as exc:
            raise UsageError(f"{path}: not a unit identity ({_reason(exc)})") from None
        if cred.unit != spec.unit:
            raise UsageError(f"{path} holds the identity of {cred.unit!r}, not {spec.unit!r}")
        if cred.authority != authority:
            raise UsageError(f"{path} was signed by another authority than "
                             f"{folder.root / 'authority.key'}")
        if cred.role != spec.role:
            raise UsageError(f"{path} is a {cred.role!r} credential, but {spec.unit} takes "
                             f"part as {spec.role!r}")
        out[spec.unit] = ident
    return out


@dataclass(frozen=True, slots=True)
class Cast:
    """Who a run acts as: the authority and one identity per unit."""

    authority: Authority
    identities: dict[str, UnitIdentity]
    #: units played with the key folder's own identity (not re-issued)
    own: frozenset[str] = frozenset()


def cast(specs: Sequence[UnitSpec], *, now: int, folder: KeyFolder | None = None,
         own: Mapping[str, UnitIdentity] | None = None,
         on_file: Mapping[str, int] | None = None) -> Cast:
    """One identity per spec: ``own`` ones as they are, new ones for the rest, signed by
    the folder's authority (or a new authority without a folder). A new credential is
    issued after the one the hub has on file for that unit (``on_file``: unit -> issue
    time), which it would otherwise refuse as superseded."""
    authority = folder.authority() if folder is not None else Authority.generate()
    own = dict(own or {})
    on_file = on_file or {}
    ids = {}
    for spec in specs:
        ident = own.get(spec.unit)
        if ident is None:
            issued = max(now - BACKDATE, on_file.get(spec.unit, -1) + 1)
            ident = authority.enroll(spec, now=issued)
        ids[spec.unit] = ident
    return Cast(authority, ids, frozenset(own))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower()
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg.lower()} at line {exc.lineno}"
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} field"
    return str(exc) or type(exc).__name__
