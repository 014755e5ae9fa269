"""The audit trail's file format: the SQLite table, the key-and-anchor file beside it, the
keyed hash chain, and the check that finds an edited, missing or truncated entry
(``verify``). hub/audit.py appends to it; ``opshub audit`` (opshub/audit.py) reads it.

Blocking file and SQLite work: never call it on the event loop except at start-up and in
the command-line tools.

Each entry's ``hash`` is HMAC-SHA256, under the key, of the previous entry's hash and the
entry's own columns (``chain_hash``); the first entry's previous hash is 64 zeros. The
key file holds the key and the *anchor*: how many entries the hub had written, and the
hash of the last one, saved after each batch is committed. An edit breaks its entry's
hash, a deleted entry breaks the sequence (or its successor's ``prev``), and entries cut
from the end leave the file shorter than its anchor. Why a key and an anchor, and what
they do not protect against: hub/audit.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from protocol.errors import StoreError

#: The previous hash of the first entry.
GENESIS = "0" * 64
_FORMAT = "opshub-audit-key 1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    unit TEXT,
    op TEXT,
    source TEXT,
    detail TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
_COLUMNS = "seq, at, kind, unit, op, source, detail, prev, hash"
INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class Entry(NamedTuple):
    """One row of the audit table; ``detail`` is its JSON text as stored."""

    seq: int
    at: int
    kind: str
    unit: str | None
    op: str | None
    source: str | None
    detail: str
    prev: str
    hash: str


def key_path_for(audit: Path) -> Path:
    """Where the key and anchor of an audit file live unless told otherwise."""
    return audit.with_name(audit.name + ".key")


def key_id(key: bytes) -> str:
    """Names the key in the audit file, so a wrong key is told apart from edited entries."""
    return hmac.new(key, b"opshub audit key id", hashlib.sha256).hexdigest()[:32]


def chain_hash(key: bytes, prev: str, seq: int, at: int, kind: str, unit: str | None,
               op: str | None, source: str | None, detail: str) -> str:
    message = json.dumps([prev, seq, at, kind, unit, op, source, detail],
                         separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def detail_text(detail: dict[str, object]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(slots=True)
class KeyFile:
    """The audit key and the anchor (entries written, hash of the last), in a 0600 file."""

    path: Path
    key: bytes
    count: int = 0
    head: str = GENESIS

    @classmethod
    def create(cls, path: Path) -> KeyFile:
        """A new random key, written to a new file readable by its owner only."""
        keyfile = cls(path, secrets.token_bytes(32))
        keyfile.save(0, GENESIS)
        return keyfile

    @classmethod
    def load(cls, path: Path) -> KeyFile:
        """Raises StoreError if the file is missing or is not an audit key file."""
        try:
            data = json.loads(path.read_text())
            if data.get("format") != _FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {_FORMAT!r}")
            return cls(path, bytes.fromhex(data["key"]), int(data["count"]), str(data["head"]))
        except OSError as exc:
            raise StoreError(f"cannot read the audit key {path}: "
                             f"{(exc.strerror or str(exc)).lower()}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{path} is not an audit key file: {exc}") from None

    def save(self, count: int, head: str) -> None:
        """Move the anchor: a temporary file (0600) synced and renamed into place, so a
        crash leaves the old anchor or the new one, never half of one."""
        text = json.dumps({"format": _FORMAT, "key": self.key.hex(), "count": count,
                           "head": head})
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.count, self.head = count, head


class WriterLock:
    """One writer per audit file: an exclusive flock on ``<audit file>.lock`` for as long
    as a trail has it open, in this process or another. Two writers would number their
    entries from the same seq, and the chain would look tampered with."""

    def __init__(self, audit: Path) -> None:
        self.path = audit.with_name(audit.name + ".lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise StoreError(f"audit file {audit} is open in another hub ({self.path} is "
                             f"locked): give each hub node an audit file of its own") from None

    def release(self) -> None:
        os.close(self._fd)


def connect(path: Path) -> sqlite3.Connection:
    """The audit file for appending (created if missing), with its schema."""
    # isolation_level=None: one explicit BEGIN/COMMIT per batch
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the audit file {path}: {exc}") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a batch is on disk before the anchor names it; the anchor is never ahead
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the audit file {path}: {exc}") from None
    return conn


def open_readonly(path: Path) -> sqlite3.Connection:
    """Raises StoreError if ``path`` is missing or holds no audit table."""
    if not path.is_file():
        raise StoreError(f"no audit file {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("SELECT 1 FROM audit LIMIT 1")
    except sqlite3.DatabaseError:
        conn.close()
        raise StoreError(f"{path} is not an audit file (the hub's database? its audit file "
                         f"is {path}.audit)") from None
    return conn


def stored_key_id(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM audit_meta WHERE name = 'key_id'").fetchone()
    return None if row is None else str(row[0])


def entries(conn: sqlite3.Connection, *, kind: str | None = None,
            last: int | None = None) -> list[Entry]:
    """Entries in seq order: all of them, of one kind, or the last ``last`` of those."""
    where, args = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
    sql = f"SELECT {_COLUMNS} FROM audit {where} ORDER BY seq"
    if last is None:
        return [Entry(*row) for row in conn.execute(sql, args)]
    rows = conn.execute(f"{sql} DESC LIMIT ?", (*args, last)).fetchall()
    return [Entry(*row) for row in reversed(rows)]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``verify`` found. ``problem`` is None when the chain is intact; otherwise it
    starts with what is wrong (edited, missing, truncated, key mismatch) and ``seq`` is
    the first bad entry (None for a key mismatch)."""

    count: int
    head: str
    problem: str | None = None
    seq: int | None = None
    #: entries past the anchor: written, then the hub stopped before it saved the anchor
    unanchored: int = 0


def verify(path: Path, key_path: Path) -> Verdict:
    """Check every entry of an audit file against the key and the anchor. Raises
    StoreError if either file cannot be read."""
    keyfile = KeyFile.load(key_path)  # first: a hub writing meanwhile only moves it ahead
    with contextlib.closing(open_readonly(path)) as conn:
        named = stored_key_id(conn)
        if named != key_id(keyfile.key):
            what = ("names no key" if named is None
                    else f"was not written under the key in {key_path}")
            return Verdict(0, GENESIS, f"key mismatch: {path} {what}")
        prev, count, at_anchor = GENESIS, 0, None
        for entry in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"):
            e = Entry(*entry)
            expected = count + 1
            if e.seq != expected:
                return Verdict(count, prev, f"missing: seq {expected} is not in the file "
                               f"(seq {e.seq} follows seq {count})", expected)
            if e.prev != prev:
                return Verdict(count, prev, f"edited: seq {e.seq} does not follow seq "
                               f"{count} (its previous hash is not that entry's hash)", e.seq)
            if e.hash != chain_hash(keyfile.key, prev, e.seq, e.at, e.kind, e.unit, e.op,
                                    e.source, e.detail):
                return Verdict(count, prev, f"edited: seq {e.seq} does not match its hash "
                               f"under the key", e.seq)
            prev, count = e.hash, e.seq
            if count == keyfile.count:
                at_anchor = e.hash
    if count < keyfile.count:
        return Verdict(count, prev, f"truncated: the file ends at seq {count} but its anchor "
                       f"names {keyfile.count} entries", count + 1)
    if keyfile.count and at_anchor != keyfile.head:
        return Verdict(count, prev, f"edited: seq {keyfile.count} is not the entry the "
                       f"anchor names", keyfile.count)
    return Verdict(count, prev, unanchored=count - keyfile.count)
