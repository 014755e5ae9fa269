"""client.e2ee.peer in memory: a peer's bytes only ever raise CryptoError from the e2ee
layer, with the code of what they were meant to be; anything else passes through as a bug."""

from __future__ import annotations

import contextlib
import time

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from client.e2ee import message
from client.e2ee.peer import commit_entry, directed_kind, peer_input
from protocol.errors import Code, CryptoError
from tests.client.e2ee.test_channel import Group

OP = "OP-E"


def test_peer_commit_entry_round_trip() -> None:
    """A packed [statement, signature] comes back as the two byte strings."""
    assert commit_entry(msgpack.packb([b"statement", b"signature"])) == (b"statement",
                                                                       b"signature")


@given(st.binary(max_size=256))
def test_peer_commit_entry_arbitrary_bytes_raise_only_bad_statement(data: bytes) -> None:
    """Arbitrary bytes as a commit entry are a pair of byte strings or bad_statement."""
    try:
        body, signature = commit_entry(data)
    except CryptoError as exc:
        code = exc.code
    else:
        code = "parsed"
        assert isinstance(body, bytes)
        assert isinstance(signature, bytes)
    assert code in ("parsed", Code.BAD_STATEMENT)


@given(st.binary(max_size=256))
def test_peer_directed_kind_arbitrary_bytes_raise_only_bad_statement(data: bytes) -> None:
    """Arbitrary bytes as a directed message give a kind to check, or bad_statement."""
    try:
        directed_kind(data)
    except CryptoError as exc:
        code = exc.code
    else:
        code = "parsed"
    assert code in ("parsed", Code.BAD_STATEMENT)


def test_peer_input_lets_a_bug_through() -> None:
    """An exception that no peer's bytes explain is not turned into a CryptoError."""
    with pytest.raises(RuntimeError, match="a bug"), peer_input("x", Code.BAD_STATEMENT):
        raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def group() -> Group:
    g = Group(["JM", "TT"])
    g.create(OP)
    return g


@given(st.one_of(st.binary(max_size=128),
                 st.dictionaries(st.sampled_from(["t", "op", "epoch", "kp", "sealed"]),
                                 st.one_of(st.integers(-(2**63), 2**64 - 1),
                                           st.binary(max_size=8),
                                           st.text(max_size=8), st.none()))
                 .map(lambda m: msgpack.packb(m, use_bin_type=True))))
def test_peer_welcome_arbitrary_bytes_raise_only_crypto_errors(group: Group,
                                                                data: bytes) -> None:
    """A member given arbitrary bytes (or a map of arbitrary fields) as a welcome raises
    nothing but CryptoError."""
    with contextlib.suppress(CryptoError):
        group.members["JM"].on_welcome(data, now=time.time())


HEADERS = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.builds(lambda *fields: message.Header(*fields).to_bytes(), st.integers(0, 255),
              st.integers(0, 2), st.integers(0, 3), st.integers(0, 3),
              st.binary(min_size=4, max_size=4)))


def test_peer_message_too_short_for_its_length_field_is_decrypt_failed() -> None:
    """A plaintext that decrypts but is shorter than its length field is decrypt_failed."""
    header = message.Header(1, 0, 0, 0, bytes(4))
    key, nonce = bytes(32), bytes(12)
    aad = header.to_bytes() + OP.encode()
    ciphertext = AESGCM(key).encrypt(nonce, b"\x00\x01", aad)
    with pytest.raises(CryptoError) as info:
        message.open_unverified(aad, header, ciphertext, key, nonce)
    assert info.value.code == Code.DECRYPT_FAILED


@given(HEADERS, st.binary(max_size=512))
def test_peer_message_arbitrary_bytes_raise_only_crypto_errors(group: Group, header: bytes,
                                                               ciphertext: bytes) -> None:
    """Arbitrary header and ciphertext bytes, decrypted alone or in a batch, give
    CryptoErrors and nothing else."""
    member = group.members["JM"]
    with pytest.raises(CryptoError):
        member.decrypt(OP, header, ciphertext, now=time.time())
    (got,) = member.decrypt_batch(OP, [(header, ciphertext)], now=time.time())
    assert isinstance(got, CryptoError)
