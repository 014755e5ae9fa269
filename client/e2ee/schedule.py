"""The key schedule functions and the secret tree of MLS (RFC 9420, sections 5.1, 8 and 9).

Everything takes a label ``prefix``: with ``b"MLS 1.0 "`` these are RFC 9420's functions
(tests check them against the RFC's test vectors); the product uses its own ``PREFIX``
so that its keys can never be confused with keys of a real MLS group. Pure functions of
their inputs: no I/O, no clock, no randomness.

    ExpandWithLabel(secret, label, context, length)
        = HKDF-Expand(secret, KDFLabel, length)
        KDFLabel = uint16 length || opaque<V> (prefix + label) || opaque<V> context
    DeriveSecret(secret, label) = ExpandWithLabel(secret, label, "", Nh)
    DeriveTreeSecret(secret, label, generation, length)
        = ExpandWithLabel(secret, label, uint32 generation, length)

The secret tree hands each member (leaf) its own hash ratchets, one for application
messages and one for handshake messages; generation j of a ratchet gives the key and
nonce for the member's j-th message, and the ratchet only moves forward.
"""

from __future__ import annotations

import _hashlib
import hmac
import struct
from _hashlib import hmac_digest as _hmac_digest  # hmac.digest without its dispatch
from _hashlib import hmac_new as _hmac_new
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

#: The product's label prefix (RFC 9420 uses b"MLS 1.0 ").
PREFIX = b"opshub-e2ee 1 "
MLS_PREFIX = b"MLS 1.0 "

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


def hash_size(hash_name: str) -> int:
    """Nh: the output size of the KDF's hash in bytes."""
    return _hash(hash_name).digest_size


def _hash(hash_name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[hash_name]()
    except KeyError:
        raise ValueError(f"unsupported hash {hash_name!r}; use one of {sorted(_HASHES)}") from None


def varint(n: int) -> bytes:
    """MLS variable-length integer (RFC 9420 section 2.1.2): 1, 2 or 4 bytes."""
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    if n < 0x40000000:
        return struct.pack(">I", 0x80000000 | n)
    raise ValueError(f"{n} is too large for an MLS variable-length integer")


def opaque(data: bytes) -> bytes:
    """An MLS ``opaque<V>``: a varint length, then the bytes."""
    return varint(len(data)) + data


def hkdf_extract(salt: bytes, ikm: bytes, *, hash_name: str = "sha256") -> bytes:
    """HKDF-Extract (RFC 5869): HMAC(salt, ikm)."""
    _hash(hash_name)  # the same names and error as everywhere else
    return hmac.digest(salt, ikm, hash_name)


def expand_with_label(secret: bytes, label: bytes, context: bytes, length: int, *,
                      prefix: bytes, hash_name: str = "sha256") -> bytes:
    info = struct.pack(">H", length) + opaque(prefix + label) + opaque(context)
    return _expand(secret, info, length, hash_name)


def _expand(prk: bytes, info: bytes, length: int, hash_name: str) -> bytes:
    """HKDF-Expand (RFC 5869). Outputs up to one hash long (every key, nonce and secret
    of the schedule) are one HMAC, computed by the standard library's C code, ~10x
    faster than building an HKDFExpand object; longer ones use ``cryptography``."""
    if length <= _SIZES.get(hash_name, 0):
        return _hmac_digest(prk, info + b"\x01", hash_name)[:length]
    return HKDFExpand(_hash(hash_name), length, info).derive(prk)


def derive_secret(secret: bytes, label: bytes, *, prefix: bytes,
                  hash_name: str = "sha256") -> bytes:
    return expand_with_label(secret, label, b"", hash_size(hash_name), prefix=prefix,
                             hash_name=hash_name)


def derive_tree_secret(secret: bytes, label: bytes, generation: int, length: int, *,
                       prefix: bytes, hash_name: str = "sha256") -> bytes:
    return expand_with_label(secret, label, struct.pack(">I", generation), length,
                             prefix=prefix, hash_name=hash_name)


# --- tree arithmetic (RFC 9420 appendix C), for a full tree of 2^d leaves ----------------

def _level(x: int) -> int:
    k = 0
    while (x >> k) & 1:
        k += 1
    return k


def _root(n_leaves: int) -> int:
    width = 1
    while width < n_leaves:
        width *= 2
    return width - 1  # node index of the root of a full tree with `width` leaves


def _path(leaf: int, n_leaves: int) -> list[tuple[int, bool]]:
    """(node, go_left) steps from the root down to ``leaf``'s parent."""
    target, x, steps = 2 * leaf, _root(n_leaves), []
    while x != target:
        k = _level(x)
        go_left = target < x
        steps.append((x, go_left))
        x = x ^ (1 << (k - 1)) if go_left else x ^ (3 << (k - 1))
    return steps


class _Ratchet:
    """One hash ratchet: the secret of its next generation and that generation."""

    __slots__ = ("generation", "secret")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.generation = 0


class SecretTree:
    """The secret tree of one epoch: per leaf an application and a handshake ratchet.

    Node secrets are derived on first use and erased once both children exist (the
    tree keeps only what it still needs). A ratchet moves forward only: asking for a
    generation below its current one raises ``KeyError`` (that key was consumed or
    skipped and is gone); callers that must accept out-of-order messages keep the
    keys they skipped (see ``client.e2ee.channel``)."""

    def __init__(self, encryption_secret: bytes, n_leaves: int, *, prefix: bytes, key_size: int,
                 nonce_size: int = 12, hash_name: str = "sha256") -> None:
        if n_leaves < 1:
            raise ValueError("a secret tree needs at least one leaf")
        if max(key_size, nonce_size) > hash_size(hash_name):
            raise ValueError(f"key and nonce sizes must not exceed the {hash_name} output")
        self.n_leaves = n_leaves
        self.prefix = prefix
        self.key_size = key_size
        self.nonce_size = nonce_size
        self.hash_name = hash_name
        # the OpenSSL constructor itself: an HMAC keyed with it skips the name lookup
        # (~0.25 us of the ~3.5 us a ratchet step costs)
        self._digestmod: Any = getattr(_hashlib, f"openssl_{hash_name}", hash_name)
        self._nh = hash_size(hash_name)
        self._nodes: dict[int, bytes] = {_root(n_leaves): encryption_secret}
        # DeriveTreeSecret's KDFLabel up to the 4-byte generation, per label
        def info(label: bytes, length: int) -> bytes:
            return struct.pack(">H", length) + opaque(prefix + label) + varint(4)
        self._key_info = info(b"key", key_size)
        self._nonce_info = info(b"nonce", nonce_size)
        self._secret_info = info(b"secret", self._nh)
        self._ratchets: dict[tuple[int, bytes], _Ratchet] = {}

    def _leaf_secret(self, leaf: int) -> bytes:
        if not 0 <= leaf < self.n_leaves:
            raise ValueError(f"leaf {leaf} is outside a tree of {self.n_leaves} leaves")
        for node, _ in _path(leaf, self.n_leaves):
            if node not in self._nodes:
                continue  # derived and erased earlier, along another leaf's path
            secret = self._nodes.pop(node)
            k = _level(node)
            left, right = node ^ (1 << (k - 1)), node ^ (3 << (k - 1))
            self._nodes[left] = self._expand(secret, b"tree", b"left")
            self._nodes[right] = self._expand(secret, b"tree", b"right")
        try:
            return self._nodes.pop(2 * leaf)
        except KeyError:
            raise KeyError(f"the secrets of leaf {leaf} were already handed out") from None

    def _expand(self, secret: bytes, label: bytes, context: bytes) -> bytes:
        return expand_with_label(secret, label, context, self._nh, prefix=self.prefix,
                                 hash_name=self.hash_name)

    def _ratchet(self, leaf: int, kind: bytes) -> _Ratchet:
        r = self._ratchets.get((leaf, kind))
        if r is None:
            leaf_secret = self._leaf_secret(leaf)
            for k in (b"handshake", b"application"):
                self._ratchets[(leaf, k)] = _Ratchet(self._expand(leaf_secret, k, b""))
            r = self._ratchets[(leaf, kind)]
        return r

    def _key_nonce(self, leaf: int, kind: bytes, generation: int) -> tuple[bytes, bytes]:
        r = self._ratchet(leaf, kind)
        if generation < r.generation:
            raise KeyError(f"generation {generation} of leaf {leaf} ({kind.decode()}) is "
                           f"consumed; the ratchet is at {r.generation}")
        while r.generation < generation:
            _, _, r.secret = self.ratchet_step(r.secret, r.generation)
            r.generation += 1
        key, nonce, r.secret = self.ratchet_step(r.secret, generation)
        r.generation = generation + 1
        return key, nonce

    def ratchet_step(self, secret: bytes, generation: int) -> tuple[bytes, bytes, bytes]:
        """(key, nonce, next ratchet secret) of a ratchet at ``generation``; pure, so a
        caller can look ahead without moving anything (see ``take_ratchet``).

        The three are HKDF-Expand outputs of at most one hash under the same key, so
        one HMAC keyed once and copied three times computes them (~2x faster than three
        separate HMACs; this runs once per message sent or received)."""
        gen = struct.pack(">I", generation) + b"\x01"
        base = _hmac_new(secret, digestmod=self._digestmod)
        key = base.copy()
        key.update(self._key_info + gen)
        nonce = base.copy()
        nonce.update(self._nonce_info + gen)
        base.update(self._secret_info + gen)
        return (key.digest()[: self.key_size], nonce.digest()[: self.nonce_size],
                base.digest()[: self._nh])

    def take_ratchet(self, leaf: int, *, handshake: bool = False) -> tuple[bytes, int]:
        """Hand the caller ``leaf``'s ratchet (its secret and generation) to advance with
        ``ratchet_step``; the tree forgets it."""
        r = self._ratchet(leaf, b"handshake" if handshake else b"application")
        del self._ratchets[(leaf, b"handshake" if handshake else b"application")]
        return r.secret, r.generation

    def application_key_nonce(self, leaf: int, generation: int) -> tuple[bytes, bytes]:
        """Key and nonce of ``leaf``'s application message ``generation``; consumes it
        and every generation before it."""
        return self._key_nonce(leaf, b"application", generation)

    def handshake_key_nonce(self, leaf: int, generation: int) -> tuple[bytes, bytes]:
        """As application_key_nonce, for the handshake ratchet."""
        return self._key_nonce(leaf, b"handshake", generation)

    def next_generation(self, leaf: int, *, handshake: bool = False) -> int:
        """The generation the ratchet of ``leaf`` will hand out next."""
        return self._ratchet(leaf, b"handshake" if handshake else b"application").generation

    def to_state(self) -> dict[str, Any]:
        """What rebuilds this tree (``from_state``) as it is now: the node secrets not yet
        split or handed out, and the ratchets still in the tree at their generation.
        Nothing erased or consumed is in it (a saved agent state must not bring it back)."""
        return {"leaves": self.n_leaves, "nodes": [[i, s] for i, s in self._nodes.items()],
                "ratchets": [[leaf, kind, r.secret, r.generation]
                             for (leaf, kind), r in self._ratchets.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, prefix: bytes, key_size: int,
                   nonce_size: int = 12, hash_name: str = "sha256") -> SecretTree:
        """The tree ``to_state`` described. Raises KeyError, TypeError or ValueError for a
        ``state`` of another shape."""
        tree = cls(b"", state["leaves"], prefix=prefix, key_size=key_size,
                   nonce_size=nonce_size, hash_name=hash_name)
        tree._nodes = {int(i): bytes(s) for i, s in state["nodes"]}
        for leaf, kind, secret, generation in state["ratchets"]:
            r = tree._ratchets[(int(leaf), bytes(kind))] = _Ratchet(bytes(secret))
            r.generation = int(generation)
        return tree

