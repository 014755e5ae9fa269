"""Cipher suites, KEM key pairs from injected randomness, and one-time key packages.

A suite fixes the HPKE KEM used to seal epoch secrets to members (the ML-KEM-768 +
X25519 hybrid by default, so recorded traffic stays safe against a future quantum
computer; X25519 alone as the smaller option), the hash of the key schedule and the
AEAD of messages. The hybrid key objects of ``cryptography`` do not serialize, so a
key travels as its two raw halves: ML-KEM public key (1184 bytes) then X25519 (32);
a private key is kept as the ML-KEM seed (64 bytes) then the X25519 scalar (32).

Randomness is injected (``rand(n) -> n bytes``) for every key and secret made here;
the one exception is the ephemeral key inside HPKE's seal, which ``cryptography``
draws itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.e2ee.peer import peer_input
from protocol.errors import Code, CryptoError
from protocol.keypackages import KeyPackage, SignedKeyPackage

Rand = Callable[[int], bytes]

_MLKEM_PUB, _MLKEM_SEED, _X_LEN = 1184, 64, 32


@dataclass(frozen=True, slots=True)
class CipherSuite:
    name: str
    kem: str  # a key of protocol.keypackages.KEMS
    hash_name: str = "sha256"
    key_size: int = 32  # AES-256-GCM
    nonce_size: int = 12

    @property
    def hpke(self) -> hpke.Suite:
        kem = hpke.KEM.MLKEM768_X25519 if self.kem == "MLKEM768_X25519" else hpke.KEM.X25519
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

    def aead(self, key: bytes) -> AESGCM:
        return AESGCM(key)

    # --- KEM keys -------------------------------------------------------------------

    def generate_kem(self, rand: Rand) -> tuple[bytes, bytes]:
        """(private, public) raw bytes of a new KEM key pair made from ``rand``."""
        x = x25519.X25519PrivateKey.from_private_bytes(rand(_X_LEN))
        x_pub = x.public_key().public_bytes_raw()
        if self.kem == "X25519":
            return x.private_bytes_raw(), x_pub
        seed = rand(_MLKEM_SEED)
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
        return seed + x.private_bytes_raw(), m.public_key().public_bytes_raw() + x_pub

    def seal(self, public: bytes, secret: bytes, info: bytes) -> bytes:
        if self.kem == "X25519":
            pub: x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey = (
                x25519.X25519PublicKey.from_public_bytes(public))
        else:
            pub = hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(public[:_MLKEM_PUB]),
                x25519.X25519PublicKey.from_public_bytes(public[_MLKEM_PUB:]))
        return self.hpke.encrypt(secret, pub, info)

    def open(self, private: bytes, sealed: bytes, info: bytes) -> bytes:
        """Raises CryptoError(decrypt_failed) if ``sealed`` was not sealed to this key."""
        if self.kem == "X25519":
            priv: x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey = (
                x25519.X25519PrivateKey.from_private_bytes(private))
        else:
            priv = hpke.MLKEM768X25519PrivateKey(
                mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:_MLKEM_SEED]),
                x25519.X25519PrivateKey.from_private_bytes(private[_MLKEM_SEED:]))
        # cryptography raises InvalidTag or ValueError
        with peer_input("a sealed secret does not open with our key package",
                        Code.DECRYPT_FAILED):
            secret = self.hpke.decrypt(sealed, priv, info)
        return secret


HYBRID = CipherSuite("opshub-xwing-aes256gcm-sha256-ed25519", "MLKEM768_X25519")
CLASSIC = CipherSuite("opshub-x25519-aes256gcm-sha256-ed25519", "X25519")
SUITES = {s.name: s for s in (HYBRID, CLASSIC)}


def suite_named(name: str) -> CipherSuite:
    try:
        return SUITES[name]
    except KeyError:
        raise CryptoError(f"unknown cipher suite {name!r}", code=Code.BAD_STATEMENT) from None


class KeyPackageKeys:
    """A unit's private halves of the key packages it published.

    ``open`` deletes a one-time package's private half after use: a secret sealed to it
    can be opened once, so a later compromise of this unit does not reveal it."""

    def __init__(self, unit: str, identity: Ed25519PrivateKey, suite: CipherSuite,
                 rand: Rand) -> None:
        self.unit = unit
        self.identity = identity
        self.suite = suite
        self.rand = rand
        self._private: dict[bytes, bytes] = {}
        self._last_resort: bytes | None = None

    def __len__(self) -> int:
        """One-time packages whose private half is still held."""
        return len(self._private) - (self._last_resort is not None)

    def generate(self, n: int, *, now: int, last_resort: bool = False) -> list[bytes]:
        """``n`` new one-time packages (plus a fresh last-resort one if asked), signed and
        ready for ``AgentConnection.put_key_packages``."""
        out = []
        for i in range(n + last_resort):
            is_last = last_resort and i == n
            private, public = self.suite.generate_kem(self.rand)
            pkg = KeyPackage(unit=self.unit, kem=self.suite.kem, public_key=public,
                             created_at=now, last_resort=is_last)
            if is_last:
                if self._last_resort is not None:
                    self._private.pop(self._last_resort, None)
                self._last_resort = pkg.id
            self._private[pkg.id] = private
            out.append(SignedKeyPackage.sign(self.identity, pkg).to_bytes())
        return out

    def holds(self, kp_id: bytes) -> bool:
        return kp_id in self._private

    def to_state(self) -> dict[str, Any]:
        """The private halves still held (``restore``); those already used are not."""
        return {"suite": self.suite.name, "private": [[i, k] for i, k in self._private.items()],
                "last_resort": self._last_resort}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what ``to_state`` gave (for this suite: the caller checks), in place
        of what is held. Raises KeyError, TypeError or ValueError for a ``state`` of
        another shape."""
        self._private = {bytes(i): bytes(k) for i, k in state["private"]}
        last = state["last_resort"]
        self._last_resort = None if last is None else bytes(last)

    def open(self, kp_id: bytes, sealed: bytes, info: bytes) -> bytes:
        private = self._private.get(kp_id)
        if private is None:
            raise CryptoError(f"no private key for key package {kp_id.hex()} (used or never "
                              f"ours)", code=Code.NO_KEY)
        secret = self.suite.open(private, sealed, info)
        if kp_id != self._last_resort:
            del self._private[kp_id]
        return secret
