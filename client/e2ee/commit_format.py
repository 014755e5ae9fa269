"""The bytes of a commit's key material and of a welcome, and what both derive from: the
one place that defines them, for the member that reads them (client.e2ee.channel) and the
admin that writes them (client.e2ee.admin). docs/protocol.md 17.3 and 17.4 describe the
same in prose; client.e2ee.channel's docstring gives the derivation.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgpack

from client.e2ee.peer import PEER_FAULTS, peer_input
from client.e2ee.schedule import PREFIX, expand_with_label, hash_size, hkdf_extract
from client.e2ee.suite import CipherSuite
from protocol.errors import Code
from protocol.statements import Statement


def context(stmt: Statement, suite: CipherSuite) -> bytes:
    """``ctx``: what every secret of the epoch is bound to."""
    return msgpack.packb([stmt.op, stmt.epoch, stmt.prev, stmt.roster, suite.name],  # type: ignore[no-any-return]
                         use_bin_type=True)


def commit_info(op: str, epoch: int) -> bytes:
    return b"opshub/commit-secret/v1\x00" + bytes(msgpack.packb([op, epoch]))


def welcome_info(op: str, epoch: int) -> bytes:
    return b"opshub/welcome/v1\x00" + bytes(msgpack.packb([op, epoch]))


def confirmation_tag(confirmation_key: bytes, ctx: bytes, sealed: list[list[Any]]) -> bytes:
    sealed_hash = hashlib.sha256(msgpack.packb(sealed, use_bin_type=True)).digest()
    return hmac.digest(confirmation_key, b"opshub/confirm/v1\x00" + ctx + sealed_hash, "sha256")


def joiner_secret_for(init_secret: bytes, commit_secret: bytes, ctx: bytes,
                      suite: CipherSuite) -> bytes:
    return expand_with_label(hkdf_extract(init_secret, commit_secret, hash_name=suite.hash_name),
                             b"joiner", ctx, hash_size(suite.hash_name), prefix=PREFIX,
                             hash_name=suite.hash_name)


def epoch_of(body: bytes) -> str:
    """A statement's epoch for an error message, or "?" if it does not parse."""
    try:
        return str(msgpack.unpackb(body, raw=False)["epoch"])
    except PEER_FAULTS:
        return "?"


def parse_key_material(km: bytes) -> dict[str, Any]:
    """A statement's ``key_material`` map. Raises CryptoError(bad_statement)."""
    with peer_input("commit key material is malformed or missing", Code.BAD_STATEMENT):
        m = msgpack.unpackb(km, raw=False)
        if not isinstance(m, dict) or m.get("v") != 1:
            raise TypeError("not a version-1 key material map")
        if not isinstance(m["suite"], str) or not isinstance(m["tag"], bytes):
            raise TypeError("suite or tag missing")
        sealed = m["sealed"]
        if not isinstance(sealed, list) or not all(
                isinstance(s, list) and len(s) == 3 and isinstance(s[0], str)
                and isinstance(s[1], bytes) and isinstance(s[2], bytes) for s in sealed):
            raise TypeError("sealed must be a list of [unit, key package id, sealed secret]")
    return m


def welcome_payload(op: str, epoch: int, kp_id: bytes, sealed: bytes) -> bytes:
    return msgpack.packb({"t": "welcome", "op": op, "epoch": epoch, "kp": kp_id,  # type: ignore[no-any-return]
                          "sealed": sealed}, use_bin_type=True)
