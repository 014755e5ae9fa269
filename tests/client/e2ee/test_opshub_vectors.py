"""opshub's published test vectors (docs/vectors/*.json) against the project's code.

Every value is recomputed from the inputs the file gives: once with the project's
functions (client/e2ee/), and, where docs/crypto.md gives a formula, once more by that
formula written out here with plain primitives (HMAC, SHA-256, SHA3-256, ML-KEM, X25519,
AES-GCM), as an implementer in another language would. The sealed commit secrets are
opened, both with the project's HPKE and step by step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from client.e2ee.channel import Epoch, Member
from client.e2ee.commit_format import joiner_secret_for
from client.e2ee.schedule import (
    PREFIX,
    SecretTree,
    derive_secret,
    derive_tree_secret,
    expand_with_label,
    hkdf_extract,
)
from client.e2ee.suite import suite_named
from protocol.errors import Code, CryptoError
from protocol.statements import roster_hash

VECTORS = Path(__file__).resolve().parents[3] / "docs" / "vectors"
SCHEDULE: dict[str, Any] = json.loads((VECTORS / "opshub-key-schedule.json").read_text())
HPKE: dict[str, Any] = json.loads((VECTORS / "opshub-hpke.json").read_text())
XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")  # "\.//^\"


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


# --- the formulas of docs/crypto.md, written out -------------------------------------

def _opaque(data: bytes) -> bytes:
    """opaque<V>: an MLS variable-length integer (RFC 9420 2.1.2), then the bytes. A ctx is
    longer than 63 bytes, so its length takes the 2-byte form 0x4000 | n."""
    n = len(data)
    assert n < 0x4000  # the 4-byte form is never needed here
    return (bytes([n]) if n < 0x40 else struct.pack(">H", 0x4000 | n)) + data


def _kdf_label(label: str, context: bytes, length: int) -> bytes:
    return struct.pack(">H", length) + _opaque(b"opshub-e2ee 1 " + label.encode()) + _opaque(
        context)


def _expand(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt or bytes(32), b"HPKE-v1" + suite_id + label + ikm, "sha256")


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    return _expand(prk, struct.pack(">H", n) + b"HPKE-v1" + suite_id + label + info, n)


def _xwing_decap(private: bytes, enc: bytes, *, label_first: bool = False) -> dict[str, bytes]:
    ct_m, ct_x = enc[:1088], enc[1088:]
    sk_x = x25519.X25519PrivateKey.from_private_bytes(private[64:])
    pk_x = sk_x.public_key().public_bytes_raw()
    ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64]).decapsulate(ct_m)
    ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    parts = ss_m + ss_x + ct_x + pk_x
    combined = XWING_LABEL + parts if label_first else parts + XWING_LABEL
    return {"ct_m": ct_m, "ct_x": ct_x, "ss_m": ss_m, "ss_x": ss_x,
            "shared_secret": hashlib.sha3_256(combined).digest()}


def _dhkem_x25519_decap(private: bytes, enc: bytes) -> dict[str, bytes]:
    sk = x25519.X25519PrivateKey.from_private_bytes(private)
    dh = sk.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + sk.public_key().public_bytes_raw()
    kem_suite_id = b"KEM" + struct.pack(">H", 0x0020)
    eae_prk = _labeled_extract(kem_suite_id, b"", b"eae_prk", dh)
    return {"dh": dh, "kem_context": kem_context, "kem_suite_id": kem_suite_id,
            "eae_prk": eae_prk,
            "shared_secret": _labeled_expand(kem_suite_id, eae_prk, b"shared_secret",
                                             kem_context, 32)}


def _hpke_open(kem_id: int, shared_secret: bytes, info: bytes, ct: bytes) -> dict[str, bytes]:
    suite_id = b"HPKE" + struct.pack(">HHH", kem_id, 0x0001, 0x0002)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, 32)
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return {"suite_id": suite_id, "psk_id_hash": psk_id_hash, "info_hash": info_hash,
            "key_schedule_context": context, "hpke_secret": secret, "key": key,
            "base_nonce": base_nonce, "aead_ciphertext": ct,
            "plaintext": AESGCM(key).decrypt(base_nonce, ct, b"")}


# --- the key schedule functions -------------------------------------------------------

def test_opshub_vectors_expand_with_label() -> None:
    """ExpandWithLabel with the opshub prefix: its KDFLabel, and its output by the project
    and by plain HKDF-Expand."""
    cases = SCHEDULE["expand_with_label"]
    assert len(cases) == 3
    for c in cases:
        secret, context, length = _h(c["secret"]), _h(c["context"]), c["length"]
        assert _kdf_label(c["label"], context, length).hex() == c["kdf_label"]
        assert expand_with_label(secret, c["label"].encode(), context, length,
                                 prefix=PREFIX).hex() == c["out"]
        assert _expand(secret, _h(c["kdf_label"]), length).hex() == c["out"]


def test_opshub_vectors_derive_secret() -> None:
    """DeriveSecret is ExpandWithLabel with an empty context and Nh = 32 bytes."""
    cases = SCHEDULE["derive_secret"]
    assert {c["label"] for c in cases} == {"encryption", "confirm", "init"}
    for c in cases:
        secret = _h(c["secret"])
        assert _kdf_label(c["label"], b"", 32).hex() == c["kdf_label"]
        assert derive_secret(secret, c["label"].encode(), prefix=PREFIX).hex() == c["out"]
        assert _expand(secret, _h(c["kdf_label"]), 32).hex() == c["out"]


def test_opshub_vectors_derive_tree_secret() -> None:
    """DeriveTreeSecret is ExpandWithLabel with the generation as a 4-byte context."""
    cases = SCHEDULE["derive_tree_secret"]
    assert len(cases) == 3
    for c in cases:
        secret, generation, length = _h(c["secret"]), c["generation"], c["length"]
        context = struct.pack(">I", generation)
        assert _kdf_label(c["label"], context, length).hex() == c["kdf_label"]
        assert derive_tree_secret(secret, c["label"].encode(), generation, length,
                                  prefix=PREFIX).hex() == c["out"]
        assert _expand(secret, _h(c["kdf_label"]), length).hex() == c["out"]


# --- epochs ---------------------------------------------------------------------------

def _sealed(inputs: dict[str, Any]) -> list[list[Any]]:
    return [[s["unit"], _h(s["kp_id"]), _h(s["sealed"])] for s in inputs["sealed"]]


@pytest.mark.parametrize("number", [0, 1])
def test_opshub_vectors_epoch_secrets(number: int) -> None:
    """ctx, the extract, joiner, epoch, encryption, confirmation and init secrets of an
    epoch, by the formulas and by the project's Epoch."""
    i, o = SCHEDULE["epochs"][number]["inputs"], SCHEDULE["epochs"][number]["outputs"]
    assert i["epoch"] == number
    suite = suite_named(i["suite"])
    roster = roster_hash(set(i["members"]))
    assert roster == hashlib.sha256("\n".join(sorted(i["members"])).encode()).digest()
    assert roster.hex() == o["roster"]
    ctx = msgpack.packb([i["op"], i["epoch"], _h(i["prev"]), roster, i["suite"]],
                        use_bin_type=True)
    assert ctx.hex() == o["ctx"]
    init_prev, commit_secret = _h(i["init_secret_prev"]), _h(i["commit_secret"])
    extracted = hmac.digest(init_prev, commit_secret, "sha256")
    assert extracted.hex() == o["extracted"] == hkdf_extract(init_prev, commit_secret).hex()
    joiner = _expand(extracted, _kdf_label("joiner", ctx, 32), 32)
    assert joiner.hex() == o["joiner_secret"]
    assert joiner_secret_for(init_prev, commit_secret, ctx, suite) == joiner
    epoch_secret = _expand(joiner, _kdf_label("epoch", ctx, 32), 32)
    assert epoch_secret.hex() == o["epoch_secret"]
    for name, label in [("encryption_secret", "encryption"),
                        ("confirmation_key", "confirm"), ("init_secret", "init")]:
        assert _expand(epoch_secret, _kdf_label(label, b"", 32), 32).hex() == o[name], name
    epoch = Epoch(op=i["op"], number=number, roster=tuple(sorted(i["members"])),
                  joiner_secret=joiner, ctx=ctx, suite=suite)
    assert epoch.confirmation_key.hex() == o["confirmation_key"]
    assert epoch.init_secret.hex() == o["init_secret"]


def test_opshub_vectors_epochs_chain_by_the_init_secret() -> None:
    """Epoch 1 starts from epoch 0's init secret; epoch 0 from 32 zero bytes."""
    e0, e1 = SCHEDULE["epochs"]
    assert e0["inputs"]["init_secret_prev"] == bytes(32).hex()
    assert e1["inputs"]["init_secret_prev"] == e0["outputs"]["init_secret"]


@pytest.mark.parametrize("number", [0, 1])
def test_opshub_vectors_confirmation_tag(number: int) -> None:
    """The tag is HMAC-SHA256(confirmation_key, context || ctx || SHA-256(msgpack(sealed)));
    the project's member check accepts it and refuses it with a bit flipped."""
    i, o = SCHEDULE["epochs"][number]["inputs"], SCHEDULE["epochs"][number]["outputs"]
    sealed = _sealed(i)
    packed = msgpack.packb(sealed, use_bin_type=True)
    assert packed.hex() == o["sealed_msgpack"]
    assert hashlib.sha256(packed).hexdigest() == o["sealed_hash"]
    ctx, tag = _h(o["ctx"]), _h(o["tag"])
    expected = hmac.digest(_h(o["confirmation_key"]),
                           b"opshub/confirm/v1\x00" + ctx + _h(o["sealed_hash"]), "sha256")
    assert expected == tag
    suite = suite_named(i["suite"])
    members = tuple(sorted(i["members"]))
    joiner = _h(o["joiner_secret"])
    Member._checked_epoch(i["op"], number, members, joiner, ctx, tag, sealed, suite)
    with pytest.raises(CryptoError, match="confirmation tag") as refused:
        Member._checked_epoch(i["op"], number, members, joiner, ctx,
                              bytes([tag[0] ^ 1]) + tag[1:], sealed, suite)
    assert refused.value.code == Code.BAD_CONFIRMATION


# --- the secret tree ------------------------------------------------------------------

def test_opshub_vectors_secret_tree_nodes() -> None:
    """Each node is ExpandWithLabel(parent, "tree", "left" | "right", 32) from the root,
    the encryption secret of epoch 1; each leaf is node 2 * leaf."""
    t = SCHEDULE["secret_tree"]
    assert t["encryption_secret"] == SCHEDULE["epochs"][1]["outputs"]["encryption_secret"]
    secrets: dict[int, bytes] = {}
    for n in t["nodes"]:
        if n["parent"] is None:
            secrets[n["node"]] = _h(t["encryption_secret"])
        else:
            info = _kdf_label("tree", n["side"].encode(), 32)
            secrets[n["node"]] = _expand(secrets[n["parent"]], info, 32)
        assert secrets[n["node"]].hex() == n["secret"], n["node"]
    assert len(t["leaves"]) == t["n_leaves"] == 3
    for leaf in t["leaves"]:
        assert leaf["node"] == 2 * leaf["leaf"]
        assert secrets[leaf["node"]].hex() == leaf["secret"]


def test_opshub_vectors_secret_tree_ratchets() -> None:
    """Generations 0 and 1 of every leaf's application and handshake ratchet: by the
    formulas, by ratchet_step, and by the project's SecretTree."""
    t = SCHEDULE["secret_tree"]
    tree = SecretTree(_h(t["encryption_secret"]), t["n_leaves"], prefix=PREFIX,
                      key_size=t["key_size"], nonce_size=t["nonce_size"])
    checked = 0
    for leaf in t["leaves"]:
        for kind in ("application", "handshake"):
            secret = _expand(_h(leaf["secret"]), _kdf_label(kind, b"", 32), 32)
            for g in leaf["generations"]:
                assert secret.hex() == g[f"{kind}_secret"]
                gen = struct.pack(">I", g["generation"])
                key = _expand(secret, _kdf_label("key", gen, 32), 32)
                nonce = _expand(secret, _kdf_label("nonce", gen, 12), 12)
                assert (key.hex(), nonce.hex()) == (g[f"{kind}_key"], g[f"{kind}_nonce"])
                assert tree.ratchet_step(secret, g["generation"])[:2] == (key, nonce)
                take = (tree.application_key_nonce if kind == "application"
                        else tree.handshake_key_nonce)
                assert take(leaf["leaf"], g["generation"]) == (key, nonce)
                secret = _expand(secret, _kdf_label("secret", gen, 32), 32)
                checked += 1
    assert checked == 3 * 2 * 2


# --- sealed commit secrets ------------------------------------------------------------

def test_opshub_vectors_recipient_keys_and_package_ids() -> None:
    """Each recipient's public key follows from its private key (ML-KEM-768 from the
    64-byte seed d || z, then X25519), and kp_id = SHA-256(kem || 00 || public)[:16]."""
    cases = HPKE["cases"]
    assert {c["inputs"]["kem"] for c in cases} == {"MLKEM768_X25519", "X25519"}
    for c in cases:
        r, kem = c["inputs"]["recipient"], c["inputs"]["kem"]
        private = _h(r["private"])
        if kem == "MLKEM768_X25519":
            assert private.hex() == r["mlkem_seed"] + r["x25519_private"]
            m = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64]).public_key()
            x = x25519.X25519PrivateKey.from_private_bytes(private[64:]).public_key()
            assert m.public_bytes_raw().hex() == r["mlkem_public"]
            assert x.public_bytes_raw().hex() == r["x25519_public"]
            public = m.public_bytes_raw() + x.public_bytes_raw()
            assert len(public) == 1216
        else:
            public = x25519.X25519PrivateKey.from_private_bytes(private).public_key(
                ).public_bytes_raw()
        assert public.hex() == r["public"]
        kp_id = hashlib.sha256(kem.encode() + b"\x00" + public).digest()[:16]
        assert kp_id.hex() == r["kp_id"]


def test_opshub_vectors_sealed_secret_opens_with_the_project_code() -> None:
    """The project's HPKE opens every sealed secret to epoch 1's commit secret, with the
    info string "opshub/commit-secret/v1\\0" || msgpack([op, epoch])."""
    commit_secret = SCHEDULE["epochs"][1]["inputs"]["commit_secret"]
    for c in HPKE["cases"]:
        i = c["inputs"]
        info = b"opshub/commit-secret/v1\x00" + msgpack.packb([i["op"], i["epoch"]])
        assert info.hex() == i["info"]
        suite = suite_named(i["suite"])
        assert len(_h(i["sealed"])) == {"MLKEM768_X25519": 1168, "X25519": 80}[i["kem"]]
        opened = suite.open(_h(i["recipient"]["private"]), _h(i["sealed"]), info)
        assert opened.hex() == commit_secret == c["steps"]["plaintext"]


def test_opshub_vectors_sealed_secret_opens_step_by_step() -> None:
    """Opening by hand (X-Wing or DHKEM(X25519) decapsulation, then RFC 9180's key schedule
    with KEM 0x647A or 0x0020, KDF 0x0001, AEAD 0x0002) reproduces every listed step."""
    for c in HPKE["cases"]:
        i, steps = c["inputs"], c["steps"]
        kem = HPKE["kems"][i["kem"]]["hpke_kem_id"]
        private, sealed = _h(i["recipient"]["private"]), _h(i["sealed"])
        if i["kem"] == "MLKEM768_X25519":
            assert kem == 0x647A
            enc = sealed[:1120]
            got = _xwing_decap(private, enc)
        else:
            assert kem == 0x0020
            enc = sealed[:32]
            got = _dhkem_x25519_decap(private, enc)
        got["enc"] = enc
        got |= _hpke_open(kem, got["shared_secret"], _h(i["info"]), sealed[len(enc):])
        assert {k: v.hex() for k, v in got.items()} == steps


def test_opshub_vectors_xwing_combiner_takes_the_label_last() -> None:
    """The X-Wing label goes after the other inputs (draft 06 onwards): with it first, as
    in older drafts, the AEAD does not open."""
    c = next(c for c in HPKE["cases"] if c["inputs"]["kem"] == "MLKEM768_X25519")
    i = c["inputs"]
    sealed = _h(i["sealed"])
    wrong = _xwing_decap(_h(i["recipient"]["private"]), sealed[:1120], label_first=True)
    with pytest.raises(InvalidTag):
        _hpke_open(0x647A, wrong["shared_secret"], _h(i["info"]), sealed[1120:])


def test_opshub_vectors_epoch_1_carries_the_published_seals() -> None:
    """The sealed list that epoch 1's tag covers is the hybrid seals of opshub-hpke.json,
    one per member other than the admin, sorted by unit id."""
    hybrid = [c["inputs"] for c in HPKE["cases"] if c["inputs"]["kem"] == "MLKEM768_X25519"]
    listed = SCHEDULE["epochs"][1]["inputs"]["sealed"]
    assert listed == [{"unit": h["recipient"]["unit"], "kp_id": h["recipient"]["kp_id"],
                       "sealed": h["sealed"]} for h in hybrid]
    assert [s["unit"] for s in listed] == sorted(s["unit"] for s in listed)
