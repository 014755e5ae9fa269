"""The state file on its own (client/state_file.py): sealed round trips under a passphrase
and a key file, refusals with stable codes, and writes that never leave a torn file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from client import state_file
from client.state_file import PASSPHRASE_ENV, StateFile, StateKey
from protocol.errors import Code, StateError, UsageError

#: scrypt at 2**14: the format and the checks are the same, at an eighth of the cost
FAST = 14


@pytest.fixture
def key(tmp_path: Path) -> StateKey:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "state.key").write_bytes(os.urandom(32))
    return StateKey.from_file(tmp_path / "secret" / "state.key")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    return tmp_path / "state" / "TT-POLICE.state"


def _code(f: StateFile) -> str:
    with pytest.raises(StateError) as err:
        f.read()
    assert str(f.path) in err.value.message
    return err.value.code


def test_state_file_round_trip_with_a_key_file(path, key) -> None:
    """What is written is read back, by a new StateFile with the same key; the bytes on
    disk do not contain it."""
    body = b"ratchets and read positions " * 10
    StateFile(path, key, "TT-POLICE").write(body)
    assert StateFile(path, key, "TT-POLICE").read() == body
    assert body[:16] not in path.read_bytes()


def test_state_file_round_trip_with_a_passphrase(path) -> None:
    """A passphrase key: scrypt parameters and salt travel in the header, so a new StateFile
    with only the passphrase reads it; the salt is kept across writes of one file."""
    f = StateFile(path, StateKey.from_passphrase("correct horse", log2_n=FAST), "TT-POLICE")
    f.write(b"one")
    salt = path.read_bytes()[13:29]
    g = StateFile(path, StateKey.from_passphrase("correct horse"), "TT-POLICE")
    assert g.read() == b"one"
    g.write(b"two")
    assert path.read_bytes()[13:29] == salt
    assert path.read_bytes()[10] == FAST
    assert StateFile(path, StateKey.from_passphrase("correct horse"), "TT-POLICE").read() == b"two"


def test_state_file_wrong_passphrase_is_state_wrong_key(path) -> None:
    """A wrong passphrase is refused with state_wrong_key, naming the file."""
    StateFile(path, StateKey.from_passphrase("correct horse", log2_n=FAST), "TT-POLICE").write(b"x")
    f = StateFile(path, StateKey.from_passphrase("battery staple"), "TT-POLICE")
    assert _code(f) == Code.STATE_WRONG_KEY


def test_state_file_wrong_kind_of_key_is_state_wrong_key(path, key) -> None:
    """A key file for a passphrase file (and the reverse) is refused with state_wrong_key."""
    StateFile(path, key, "TT-POLICE").write(b"x")
    assert _code(StateFile(path, StateKey.from_passphrase("p", log2_n=FAST),
                           "TT-POLICE")) == Code.STATE_WRONG_KEY
    StateFile(path, StateKey.from_passphrase("p", log2_n=FAST), "TT-POLICE").write(b"x")
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_WRONG_KEY


@pytest.mark.parametrize("offset", [9, 10, 20, 30, 41, 45, -1])
def test_state_file_any_altered_byte_is_refused(path, key, offset) -> None:
    """A byte changed anywhere after the magic (header fields, nonce, unit id, ciphertext)
    is refused; nothing of the body comes out."""
    StateFile(path, key, "TT-POLICE").write(b"body")
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert _code(StateFile(path, key, "TT-POLICE")) in (
        Code.STATE_WRONG_KEY, Code.STATE_UNREADABLE, Code.STATE_MISMATCH)


def test_state_file_ciphertext_altered_is_state_wrong_key(path, key) -> None:
    """A flipped bit in the ciphertext is state_wrong_key (the AEAD does not open)."""
    StateFile(path, key, "TT-POLICE").write(b"body")
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_WRONG_KEY


def test_state_file_other_units_file_is_state_mismatch(path, key) -> None:
    """Another unit's file (same key) is refused with state_mismatch; with the unit id in
    its header rewritten to ours, it no longer decrypts (the unit id is associated data)."""
    StateFile(path, key, "JM-CUSTOMS").write(b"jm's")
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_MISMATCH
    data = path.read_bytes()
    path.write_bytes(data[:41] + bytes([9]) + b"TT-POLICE" + data[42 + data[41]:])
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_WRONG_KEY


def test_state_file_not_a_state_file_is_state_unreadable(path, key) -> None:
    """Another file, a truncated one, a missing one, another format version: each is
    state_unreadable."""
    path.write_bytes(b"{}")
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_UNREADABLE
    StateFile(path, key, "TT-POLICE").write(b"x")
    whole = path.read_bytes()
    path.write_bytes(whole[:45])
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_UNREADABLE
    path.write_bytes(whole[:8] + b"\x02" + whole[9:])
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_UNREADABLE
    path.unlink()
    assert _code(StateFile(path, key, "TT-POLICE")) == Code.STATE_UNREADABLE


def test_state_file_scrypt_cost_out_of_bounds_is_refused_before_deriving(path) -> None:
    """A header asking scrypt for more memory than allowed is state_unreadable, before any
    derivation (the header is not authenticated until the key is derived)."""
    StateFile(path, StateKey.from_passphrase("p", log2_n=FAST), "TT-POLICE").write(b"x")
    data = path.read_bytes()
    path.write_bytes(data[:10] + bytes([30]) + data[11:])
    assert _code(StateFile(path, StateKey.from_passphrase("p"), "TT-POLICE")) == \
        Code.STATE_UNREADABLE


def test_state_file_is_written_0600(path, key) -> None:
    """The file is readable and writable by its owner only."""
    StateFile(path, key, "TT-POLICE").write(b"x")
    assert path.stat().st_mode & 0o777 == 0o600


def test_state_file_failed_rename_leaves_the_previous_file(path, key, monkeypatch) -> None:
    """A write that dies before its rename (the crash the temp file and rename are for)
    raises state_write_failed, and leaves the previous file whole and readable and no temp
    file behind."""
    f = StateFile(path, key, "TT-POLICE")
    f.write(b"previous")

    def crash(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(state_file.os, "replace", crash)
    with pytest.raises(StateError) as err:
        f.write(b"next")
    assert err.value.code == Code.STATE_WRITE
    assert str(path) in err.value.message
    monkeypatch.undo()
    assert StateFile(path, key, "TT-POLICE").read() == b"previous"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_state_file_key_file_beside_the_state_is_refused(tmp_path) -> None:
    """A key file in the state file's own directory is refused: a copy of that directory
    would carry both."""
    (tmp_path / "state.key").write_bytes(os.urandom(32))
    with pytest.raises(UsageError, match="same directory"):
        StateFile(tmp_path / "TT.state", StateKey.from_file(tmp_path / "state.key"), "TT")


def test_state_file_key_file_in_hex_or_raw(tmp_path) -> None:
    """A key file holds 32 raw bytes or 64 hex digits (with a newline); anything else is
    a UsageError naming it."""
    raw = os.urandom(32)
    (tmp_path / "raw.key").write_bytes(raw)
    (tmp_path / "hex.key").write_text(raw.hex() + "\n")
    assert StateKey.from_file(tmp_path / "raw.key").raw == raw
    assert StateKey.from_file(tmp_path / "hex.key").raw == raw
    (tmp_path / "short.key").write_bytes(raw[:16])
    with pytest.raises(UsageError, match=r"short\.key"):
        StateKey.from_file(tmp_path / "short.key")
    with pytest.raises(UsageError, match=r"missing\.key"):
        StateKey.from_file(tmp_path / "missing.key")


def test_state_file_passphrase_from_the_environment(monkeypatch) -> None:
    """The passphrase comes from OPSHUB_STATE_PASSPHRASE; unset or empty is a UsageError
    that names the variable."""
    monkeypatch.setenv(PASSPHRASE_ENV, "from the environment")
    assert StateKey.from_env().passphrase == b"from the environment"
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    with pytest.raises(UsageError, match=PASSPHRASE_ENV):
        StateKey.from_env()


def test_state_file_key_has_no_repr_of_its_secret() -> None:
    """A key logged by accident does not show the passphrase."""
    assert "hunter2" not in repr(StateKey.from_passphrase("hunter2"))
