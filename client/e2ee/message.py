"""Message framing: the routing header, padding, and the signed content inside the AEAD.

    header (16 bytes, readable by the hub, authenticated as AEAD associated data):
        version u8 | content type u8 | epoch u32 | sender leaf u16 | generation u32
        | reuse guard 4 bytes
    associated data = header || operation id (UTF-8)
    AEAD plaintext  = u32 content length || content || Ed25519 signature (64)
                      || zero padding up to a size bucket
    signature       = Ed25519(sender identity key,
                              SIGN_CONTEXT || associated data || content)
    nonce           = ratchet nonce with its first 4 bytes XORed with the reuse guard

Sizes are padded (at least 256 bytes, then Padmé: see ``bucket``) so that a message's
length says little about its content. Pure functions.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.errors import Code, CryptoError
from protocol.signatures import VerifyingKey

VERSION = 1
SIGN_CONTEXT = b"opshub/message/v1\x00"
_HEADER = struct.Struct(">BBIHI4s")
HEADER_STRUCT = _HEADER
HEADER_SIZE = _HEADER.size
SIGNATURE_SIZE = 64
_LEN = struct.Struct(">I")


class Header(NamedTuple):
    """The routing header. (A NamedTuple: one is built per message, ~4x cheaper than a
    frozen dataclass.)"""

    content_type: int
    epoch: int
    sender: int
    generation: int
    reuse_guard: bytes

    def to_bytes(self) -> bytes:
        return _HEADER.pack(VERSION, self.content_type, self.epoch, self.sender,
                            self.generation, self.reuse_guard)

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        if len(data) != HEADER_SIZE or data[0] != VERSION:
            if len(data) != HEADER_SIZE:
                raise CryptoError(f"message header must be {HEADER_SIZE} bytes, got "
                                  f"{len(data)}", code=Code.DECRYPT_FAILED)
            raise CryptoError(f"message format version {data[0]} is not {VERSION}",
                              code=Code.UNSUPPORTED_VERSION)
        return cls._make(_HEADER.unpack(data)[1:])


def bucket(n: int) -> int:
    """The padded size of an inner plaintext of ``n`` bytes: at least 256, then Padmé
    (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication
    with PURBs", PETS 2019): round up to a multiple of 2**(E - S), E = floor(log2 n),
    S = floor(log2 E) + 1. A padded length reveals O(log log n) bits of the length, at
    most 12 % of overhead (powers of two cost up to 100 %: a 1 KiB message went to 2 KiB)."""
    if n <= 256:
        return 256
    e = n.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def _nonce(nonce: bytes, guard: bytes) -> bytes:
    head = int.from_bytes(nonce[:4], "big") ^ int.from_bytes(guard, "big")
    return head.to_bytes(4, "big") + nonce[4:]


def seal(*, op: str, header: Header, content: bytes, key: bytes, nonce: bytes,
         signer: Ed25519PrivateKey) -> bytes:
    """The AEAD ciphertext of ``content`` signed by ``signer``."""
    aad = header.to_bytes() + op.encode()
    signature = signer.sign(SIGN_CONTEXT + aad + content)
    inner = _LEN.pack(len(content)) + content + signature
    inner += bytes(bucket(len(inner)) - len(inner))
    return AESGCM(key).encrypt(_nonce(nonce, header.reuse_guard), inner, aad)


def open_unverified(aad: bytes, header: Header, ciphertext: bytes, key: bytes,
                    nonce: bytes) -> tuple[bytes, bytes]:
    """Decrypt; return (content, signature) still to be checked with ``verify``.
    ``aad`` is header bytes || op. Raises CryptoError(decrypt_failed) for a ciphertext
    or header changed in transit. (Positional: this runs once per message received.)"""
    try:
        inner = AESGCM(key).decrypt(_nonce(nonce, header.reuse_guard), ciphertext, aad)
    except InvalidTag:
        raise CryptoError(f"message from leaf {header.sender} generation {header.generation} "
                          f"does not decrypt: ciphertext or header altered",
                          code=Code.DECRYPT_FAILED) from None
    if len(inner) < _LEN.size:
        raise CryptoError("decrypted message has a bad length", code=Code.DECRYPT_FAILED)
    (n,) = _LEN.unpack_from(inner)
    end = _LEN.size + n
    if end + SIGNATURE_SIZE > len(inner):
        raise CryptoError("decrypted message has a bad length", code=Code.DECRYPT_FAILED)
    # The padding after the signature is authenticated by the AEAD and otherwise unused.
    return inner[_LEN.size : end], inner[end : end + SIGNATURE_SIZE]


def verify(aad: bytes, content: bytes, signature: bytes, sender_key: VerifyingKey,
           sender: str) -> None:
    try:
        sender_key.verify(signature, SIGN_CONTEXT + aad + content)
    except InvalidSignature:
        raise CryptoError(f"message claims to be from {sender!r} but is not signed by its "
                          f"identity key", code=Code.BAD_SENDER) from None
