"""``opshub bench crypto``: what end-to-end encryption costs on one core.

In one process (one core), in the same run:

- ``ed25519_verify_per_s``: bare Ed25519 verification of 1 KiB messages, the reference:
  a receiver must verify every message's signature, so this is its ceiling;
- ``encrypt_sign_per_s``: ``Member.encrypt`` (ratchet step, sign, pad, AES-256-GCM);
- ``verify_decrypt_per_s``: the agents' receive path, ``Member.decrypt_batch`` over
  blocks of 100 messages (ratchet steps, AES-256-GCM, unpad, then the signature
  checks back to back), and its ratio to the bare verify rate;
- ``verify_decrypt_one_per_s``: ``Member.decrypt`` one message at a time, for
  comparison;
- ``rekey_ms``: the admin's side of a rekey of ``members`` members with the hybrid KEM
  (verify each key package, seal the commit secret to each, sign the commit), and
  ``commit_open_ms`` a member's side (verify the commit and credentials, open its
  share, derive the epoch).

Rates are medians over ``runs`` rounds; the machine is shared, so every round is kept.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.e2ee.admin import Admin
from client.e2ee.channel import Member
from client.e2ee.suite import HYBRID, CipherSuite, KeyPackageKeys, suite_named
from client.identity import Authority, UnitSpec
from protocol.credentials import AuthorityRing


def _group(n_members: int, suite: CipherSuite) -> tuple[Admin, dict[str, Member], Any]:
    now = time.time()
    authority = Authority.generate()
    ring = AuthorityRing([authority.public_key])
    ocu = authority.enroll(UnitSpec("OCU", "BE", "WCO", "ocu"), now=int(now))
    admin = Admin(ocu, ring=ring, keys=KeyPackageKeys("OCU", ocu.key, suite, os.urandom),
                  rand=os.urandom, suite=suite)
    members: dict[str, Member] = {}
    published: dict[str, list[bytes]] = {}
    ids = {}
    for i in range(n_members):
        unit = f"UNIT-{i:03d}"
        ids[unit] = authority.enroll(UnitSpec(unit, "FR", "customs"), now=int(now))
        keys = KeyPackageKeys(unit, ids[unit].key, suite, os.urandom)
        published[unit] = keys.generate(64, now=int(now))
        members[unit] = Member(ids[unit], ring=ring, keys=keys, rand=os.urandom)

    def claim(units: list[str]) -> dict[str, bytes]:
        return {u: published[u].pop() for u in units}

    p = admin.propose_create("OP-BENCH", "bench", [ids[u].signed for u in members],
                             claim(list(members)), now=now)
    admin.accepted(p, now=now)
    for unit, m in members.items():
        m.on_welcome(p.welcomes[unit], now=now)
        m.on_commit("OP-BENCH", p.body, p.signature, now=now)
    return admin, members, claim


_BLOCK = 100


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def run_crypto_bench(*, messages: int = 2000, size: int = 1024, members: int = 41,
                     runs: int = 5, suite: str = HYBRID.name) -> dict[str, Any]:
    s = suite_named(suite)
    content = os.urandom(size)
    rounds: list[dict[str, float]] = []
    for _ in range(runs):
        admin, group, claim = _group(members - 1, s)
        sender, receiver, other = list(group.values())[:3]
        now = time.time()
        # the receiver has heard from both senders before (their verifiers are cached),
        # as on a running channel
        for s_ in (sender, other):
            receiver.decrypt("OP-BENCH", *s_.encrypt("OP-BENCH", content, now=now), now=now)

        signer = Ed25519PrivateKey.generate()
        public = signer.public_key()
        # what a reader verifies: a message of the same length as ours signs
        signed = [(m, signer.sign(m)) for m in (content + os.urandom(42)
                                                for _ in range(messages))]
        t = time.perf_counter()
        sealed = [sender.encrypt("OP-BENCH", content, now=now) for _ in range(messages)]
        encrypt_s = time.perf_counter() - t

        one = [other.encrypt("OP-BENCH", content, now=now) for _ in range(messages)]
        # Interleaved blocks, so that the shared machine's drift falls on all alike.
        verify_s = decrypt_s = one_s = 0.0
        for i in range(0, messages, _BLOCK):
            t = time.perf_counter()
            for m, sig in signed[i : i + _BLOCK]:
                public.verify(sig, m)
            t2 = time.perf_counter()
            results = receiver.decrypt_batch("OP-BENCH", sealed[i : i + _BLOCK], now=now)
            t3 = time.perf_counter()
            for header, ct in one[i : i + _BLOCK]:
                receiver.decrypt("OP-BENCH", header, ct, now=now)
            t4 = time.perf_counter()
            verify_s += t2 - t
            decrypt_s += t3 - t2
            one_s += t4 - t3
            if any(isinstance(r, Exception) for r in results):
                raise AssertionError(f"benchmark messages failed to decrypt: {results[0]}")

        need = admin.packages_needed("OP-BENCH")
        packages = claim(need)
        t = time.perf_counter()
        p = admin.propose_change("OP-BENCH", packages=packages, now=now)
        rekey_s = time.perf_counter() - t
        t = time.perf_counter()
        receiver.on_commit("OP-BENCH", p.body, p.signature, now=now)
        open_s = time.perf_counter() - t

        verify_rate = _rate(messages, verify_s)
        receive_rate = _rate(messages, decrypt_s)
        rounds.append({
            "ed25519_verify_per_s": verify_rate,
            "encrypt_sign_per_s": _rate(messages, encrypt_s),
            "verify_decrypt_per_s": receive_rate,
            "verify_decrypt_one_per_s": _rate(messages, one_s),
            "receive_vs_verify": receive_rate / verify_rate,
            "rekey_ms": rekey_s * 1000,
            "commit_open_ms": open_s * 1000,
            "commit_bytes": len(p.body),
        })
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        **{k: round(v, 3 if k == "receive_vs_verify" else 1) for k, v in med.items()},
        "rounds": rounds,
        "options": {"messages": messages, "size": size, "members": members, "runs": runs,
                    "suite": s.name, "kem": s.kem},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
