"""RFC 9420's test vectors for the key schedule functions and the secret tree.

Every entry for cipher suites 1, 2 and 3 (all SHA-256; AES-128-GCM or ChaCha20-Poly1305),
with the label prefix "MLS 1.0 ". The vectors are kept in tests/data/vectors/mls/ (public
IETF data, trimmed to those suites; its README.md gives the source).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.e2ee.schedule import (
    MLS_PREFIX,
    SecretTree,
    derive_secret,
    derive_tree_secret,
    expand_with_label,
)

VECTORS = Path(__file__).resolve().parents[2] / "data" / "vectors" / "mls"
#: cipher suite -> (hash, AEAD key size, nonce size)
SUITES = {1: ("sha256", 16, 12), 2: ("sha256", 16, 12), 3: ("sha256", 32, 12)}


def _load(name: str) -> list[dict[str, Any]]:
    cases = [c for c in json.loads((VECTORS / name).read_text())
             if c["cipher_suite"] in SUITES]
    assert {c["cipher_suite"] for c in cases} == set(SUITES), f"{name} lacks a suite"
    return cases


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_vectors_crypto_basics(suite: int) -> None:
    """ExpandWithLabel, DeriveSecret and DeriveTreeSecret of crypto-basics.json."""
    hash_name = SUITES[suite][0]
    cases = [c for c in _load("crypto-basics.json") if c["cipher_suite"] == suite]
    assert cases
    for case in cases:
        e = case["expand_with_label"]
        assert expand_with_label(_h(e["secret"]), e["label"].encode(), _h(e["context"]),
                                 e["length"], prefix=MLS_PREFIX,
                                 hash_name=hash_name).hex() == e["out"]
        d = case["derive_secret"]
        assert derive_secret(_h(d["secret"]), d["label"].encode(), prefix=MLS_PREFIX,
                             hash_name=hash_name).hex() == d["out"]
        t = case["derive_tree_secret"]
        assert derive_tree_secret(_h(t["secret"]), t["label"].encode(), t["generation"],
                                  t["length"], prefix=MLS_PREFIX,
                                  hash_name=hash_name).hex() == t["out"]


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_vectors_secret_tree(suite: int) -> None:
    """Application and handshake key and nonce of every leaf and listed generation."""
    hash_name, key_size, nonce_size = SUITES[suite]
    cases = [c for c in _load("secret-tree.json") if c["cipher_suite"] == suite]
    assert cases
    checked = 0
    for case in cases:
        leaves = case["leaves"]
        tree = SecretTree(_h(case["encryption_secret"]), len(leaves), prefix=MLS_PREFIX,
                          key_size=key_size, nonce_size=nonce_size, hash_name=hash_name)
        for leaf, generations in enumerate(leaves):
            for g in generations:
                key, nonce = tree.application_key_nonce(leaf, g["generation"])
                assert (key.hex(), nonce.hex()) == (g["application_key"],
                                                    g["application_nonce"]), (leaf, g)
                key, nonce = tree.handshake_key_nonce(leaf, g["generation"])
                assert (key.hex(), nonce.hex()) == (g["handshake_key"],
                                                    g["handshake_nonce"]), (leaf, g)
                checked += 1
    assert checked >= len(cases)
