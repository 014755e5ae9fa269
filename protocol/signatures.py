"""Ed25519 checks shared by the agents of one process: a signature once verified for a key
and the exact bytes it signs is not verified again by the next agent that reads them.

A replay runs every participant in one process, and every unit reads every message the
OCU sends: with 300 participants each such message was verified 295 times, and each
credential of the channel's first commit 299 times (docs/performance.md, "Scale: 300
agencies"). Only successes are remembered, keyed by the public key and the signature
and compared on the whole signed bytes, so an answer from the memo is the answer
``verify`` gives; what fails is checked again every time. Agents on their own (one per
process) have no use for it and are given none. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: Signatures remembered at most (the oldest go first). Every reader of a message reads
#: it within the same window of the replay's clock, long before this many others.
MEMO_SIZE = 16_384


class VerifyingKey(Protocol):
    """What checks a signature: Ed25519PublicKey, or a key seen through a memo."""

    def verify(self, signature: bytes, data: bytes, /) -> None:
        """Return if ``signature`` is the key's over ``data``; raise InvalidSignature."""


class SignatureMemo:
    """Signatures verified in this process, for agents to share (see the module)."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        #: (public key, signature) -> the bytes it was verified over, oldest first
        self._ok: dict[tuple[bytes, bytes], bytes] = {}
        self._keys: dict[bytes, MemoKey] = {}
        self.verified = 0  # signatures verified for real
        self.remembered = 0  # answered from the memo

    def key(self, raw: bytes) -> MemoKey:
        """The Ed25519 public key ``raw`` (32 bytes), verifying through this memo. Raises
        ValueError for bytes that are not a public key, as Ed25519PublicKey does."""
        key = self._keys.get(raw)
        if key is None:
            key = self._keys[raw] = MemoKey(self, raw, Ed25519PublicKey.from_public_bytes(raw))
        return key

    def _verify(self, raw: bytes, public: Ed25519PublicKey, signature: bytes,
                data: bytes) -> None:
        ok = self._ok
        if ok.get((raw, signature)) == data:
            self.remembered += 1
            return
        public.verify(signature, data)  # raises InvalidSignature: nothing remembered
        self.verified += 1
        ok[raw, signature] = data
        if len(ok) > self.size:
            del ok[next(iter(ok))]


class MemoKey:
    """An Ed25519 public key whose checks go through a SignatureMemo."""

    __slots__ = ("_memo", "_public", "raw")

    def __init__(self, memo: SignatureMemo, raw: bytes, public: Ed25519PublicKey) -> None:
        self._memo = memo
        self._public = public
        self.raw = raw

    def verify(self, signature: bytes, data: bytes, /) -> None:
        """Return if ``signature`` is this key's over ``data``; raise InvalidSignature."""
        self._memo._verify(self.raw, self._public, signature, data)
