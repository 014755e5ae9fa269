"""The embedded SQLite store: WAL, one transaction per batch of commands, fsync'd commits.

sqlite-utils creates the schema; the hot paths use the sqlite3 connection underneath.
Blocking: every method blocks, so the hub calls ``apply`` from one writer thread and
the reads from one reader thread (see ``hub.store.worker``), never from the event loop.
Ciphertext only: the hub never hands this store anything it could read.

An operation's log is stored in *segments*, not a row per message: each transaction
writes, per operation, rows of up to ``SEGMENT_ENTRIES`` consecutive entries, their
wire form msgpack-encoded in one blob. Idempotency keys are kept as *cid runs*: one
row per stretch of a sender's entries whose cids and seqs both count up by one (a
pipelining agent's whole batch is one run). A row per message cost ~14 us of the
writer's time per 1 KiB message, most of it holding the GIL the event loop needs;
segments and runs cost a fraction of that (docs/performance.md).
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack
import sqlite_utils

from protocol.errors import StoreError
from protocol.keypackages import MAX_STORED_PER_UNIT
from protocol.store import (
    AckDirected,
    Appended,
    AppendMessage,
    ApplyStatement,
    ClaimKeyPackages,
    Command,
    DirectedEntry,
    DirectedStored,
    Enroll,
    KeyPackagesClaimed,
    KeyPackagesStored,
    LogEntry,
    OperationRecord,
    PutKeyPackages,
    Result,
    SaveCursor,
    Snapshot,
    StoreDirected,
)

#: 2: logs in segments and cid runs (1 had a row per message).
SCHEMA_VERSION = 2
#: A segment holds at most this many entries, or about SEGMENT_BYTES of them (whichever
#: comes first), so that reading from the middle of one decodes little that is not used.
SEGMENT_ENTRIES = 256
SEGMENT_BYTES = 256 * 1024
#: Retried cids further apart than this are looked up with separate queries.
_CLUSTER_GAP = 4096


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # 64 KiB pages (takes effect when the file is created): a WAL frame is one page, so a
    # batch of 1 KiB messages costs a few large writes instead of one per 3 rows. Measured
    # on the 2-core machine: 24 -> 14 us per appended 1 KiB message.
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsync'd at every commit, so an ack means on disk. One fsync per
    # batch (group commit) keeps that affordable.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class SQLiteStore:
    """A single SQLite file holding operations, the directory, key packages, logs, cursors
    and directed messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._w = _connect(self.path)
            self._create_schema()
            self._r = _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path!r}: {exc}") from exc
        self._heads: dict[str, int] = {}
        #: (op, sender, kind) -> largest cid stored, loaded on first use
        self._max_cid: dict[tuple[str, str, int], int] = {}

    def _create_schema(self) -> None:
        db = sqlite_utils.Database(self._w)

        def table(name: str) -> sqlite_utils.db.Table:
            return db.table(name)

        if "meta" not in db.table_names():
            table("meta").create({"key": str, "value": str}, pk="key")
            table("meta").insert({"key": "schema_version", "value": str(SCHEMA_VERSION)})
        version = self._w.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != str(SCHEMA_VERSION):
            found = None if version is None else version[0]
            raise StoreError(f"database {self.path!r} has schema version {found}, this hub "
                             f"reads version {SCHEMA_VERSION}; use a new database file")
        table("units").create(
            {"unit": str, "body": bytes, "sig": bytes, "issued_at": int},
            pk="unit", if_not_exists=True)
        table("operations").create(
            {"op": str, "name": str, "admin": str, "admin_key": bytes, "epoch": int,
             "head": bytes}, pk="op", if_not_exists=True)
        table("members").create({"op": str, "unit": str}, pk=("op", "unit"), if_not_exists=True)
        table("statements").create(
            {"op": str, "epoch": int, "seq": int, "body": bytes, "sig": bytes},
            pk=("op", "epoch"), if_not_exists=True)
        # Entries first_seq..last_seq of op's log; body = msgpack list of Delivery.to_wire().
        table("segments").create(
            {"id": int, "op": str, "first_seq": int, "last_seq": int, "body": bytes},
            pk="id", if_not_exists=True)
        table("segments").create_index(["op", "last_seq"], unique=True, if_not_exists=True)
        # (op, sender, kind, first_cid + i) was stored at seq first_seq + i, for i up to
        # last_cid - first_cid. A cid is stored once, so runs never overlap and the run
        # holding cid c is the one with the smallest last_cid >= c, if its first_cid <= c.
        # Statements are logged with kind=1 and their epoch as cid.
        self._w.execute(
            "CREATE TABLE IF NOT EXISTS cid_runs (op TEXT, sender TEXT, kind INTEGER, "
            "first_cid INTEGER, last_cid INTEGER, first_seq INTEGER, "
            "PRIMARY KEY (op, sender, kind, last_cid)) WITHOUT ROWID")
        table("cursors").create({"unit": str, "op": str, "seq": int}, pk=("unit", "op"),
                             if_not_exists=True)
        # AUTOINCREMENT: ids are never reused, so agents can deduplicate by id. An
        # acknowledged message keeps its row (payload dropped) so that a late retry of the
        # same (sender, cid) still finds it and is not stored twice.
        self._w.execute(
            "CREATE TABLE IF NOT EXISTS directed (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "op TEXT, sender TEXT, cid INTEGER, recipient TEXT, payload BLOB, at_ms INTEGER, "
            "acked INTEGER NOT NULL DEFAULT 0)")
        table("directed").create_index(["recipient", "acked", "id"], if_not_exists=True)
        # The idempotency key of `send` (an index on (sender, cid) before it took the
        # operation and the recipient into account: dropped, it would only cost writes).
        self._w.execute("DROP INDEX IF EXISTS idx_directed_sender_cid")
        table("directed").create_index(["sender", "op", "recipient", "cid"],
                                       if_not_exists=True)
        # Signed key packages (ciphertext-free: public keys only), oldest id handed out first.
        self._w.execute(
            "CREATE TABLE IF NOT EXISTS key_packages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "unit TEXT NOT NULL, kp_id BLOB NOT NULL, body BLOB NOT NULL, "
            "last_resort INTEGER NOT NULL, UNIQUE (unit, kp_id))")
        table("key_packages").create_index(["unit", "last_resort", "id"], if_not_exists=True)
        # The answer of each kp_claim with a cid (msgpack [packages, missing]), written in
        # the transaction that took the packages: a retry reads it and takes nothing.
        # Kept like the logs' idempotency keys (never expire); one row per commit an
        # admin writes.
        self._w.execute(
            "CREATE TABLE IF NOT EXISTS key_package_claims (claimer TEXT, op TEXT, "
            "cid INTEGER, answer BLOB NOT NULL, PRIMARY KEY (claimer, op, cid)) WITHOUT ROWID")

    # --- reads at start-up -----------------------------------------------------------

    def load(self) -> Snapshot:
        try:
            snap = Snapshot()
            members: dict[str, set[str]] = defaultdict(set)
            for op, unit in self._w.execute("SELECT op, unit FROM members"):
                members[op].add(unit)
            heads = dict(self._w.execute(
                "SELECT op, MAX(last_seq) FROM segments GROUP BY op"))
            for op, name, admin, admin_key, epoch, head in self._w.execute(
                "SELECT op, name, admin, admin_key, epoch, head FROM operations"
            ):
                snap.operations[op] = OperationRecord(
                    op=op, name=name, admin=admin, admin_key=admin_key, epoch=epoch,
                    head=head, members=frozenset(members[op]), last_seq=heads.get(op, 0))
            for unit, body, sig in self._w.execute("SELECT unit, body, sig FROM units"):
                snap.directory[unit] = (body, sig)
            for unit, op, seq in self._w.execute("SELECT unit, op, seq FROM cursors"):
                snap.cursors[(unit, op)] = seq
            self._heads = {op: rec.last_seq for op, rec in snap.operations.items()}
            return snap
        except sqlite3.Error as exc:
            raise StoreError(f"cannot load state from {self.path!r}: {exc}") from exc

    # --- the write path --------------------------------------------------------------

    def apply(self, commands: list[Command]) -> list[Result]:
        heads_before, max_cid_before = dict(self._heads), dict(self._max_cid)
        cur: sqlite3.Cursor | None = None
        try:
            cur = self._w.cursor()
            cur.execute("BEGIN IMMEDIATE")
            results = self._apply(cur, commands)
            cur.execute("COMMIT")
            return results
        except Exception as exc:
            self._heads, self._max_cid = heads_before, max_cid_before
            if cur is not None:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
            raise StoreError(f"batch of {len(commands)} commands not stored: {exc}") from exc

    def _apply(self, cur: sqlite3.Cursor, commands: list[Command]) -> list[Result]:
        results: list[Result] = [None] * len(commands)
        existing = self._existing_cids(cur, commands)
        batch = _LogBatch()
        for i, cmd in enumerate(commands):
            match cmd:
                case AppendMessage():
                    results[i] = self._append(cmd, existing, batch)
                case ApplyStatement():
                    appended = self._append(cmd.message, existing, batch)
                    results[i] = appended
                    cur.execute(
                        "INSERT INTO operations (op, name, admin, admin_key, epoch, head) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(op) DO UPDATE SET "
                        "epoch = excluded.epoch, head = excluded.head",
                        (cmd.op, cmd.name, cmd.admin, cmd.admin_key, cmd.epoch, cmd.head))
                    cur.execute("DELETE FROM members WHERE op = ?", (cmd.op,))
                    cur.executemany("INSERT INTO members (op, unit) VALUES (?, ?)",
                                    [(cmd.op, u) for u in sorted(cmd.members)])
                    cur.execute(
                        "INSERT INTO statements (op, epoch, seq, body, sig) VALUES (?, ?, ?, ?, ?)",
                        (cmd.op, cmd.epoch, appended.seq, cmd.body, cmd.signature))
                case Enroll():
                    cur.execute(
                        "INSERT INTO units (unit, body, sig, issued_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(unit) DO UPDATE SET body = excluded.body, "
                        "sig = excluded.sig, issued_at = excluded.issued_at "
                        "WHERE excluded.issued_at >= units.issued_at",
                        (cmd.unit, cmd.body, cmd.signature, cmd.issued_at))
                case StoreDirected():
                    results[i] = self._store_directed(cur, cmd)
                case AckDirected():
                    cur.executemany(
                        "UPDATE directed SET acked = 1, payload = NULL "
                        "WHERE id = ? AND recipient = ?", [(d, cmd.recipient) for d in cmd.ids])
                case SaveCursor():
                    cur.execute(
                        "INSERT INTO cursors (unit, op, seq) VALUES (?, ?, ?) "
                        "ON CONFLICT(unit, op) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                        (cmd.unit, cmd.op, cmd.seq))
                case PutKeyPackages():
                    results[i] = self._put_key_packages(cur, cmd)
                case ClaimKeyPackages():
                    results[i] = self._claim_key_packages(cur, cmd)
        batch.write(cur)
        return results

    @staticmethod
    def _store_directed(cur: sqlite3.Cursor, cmd: StoreDirected) -> DirectedStored:
        if cmd.cid is not None:
            # protocol.md 7.1: a cid names one message of (sender, op, recipient)
            row = cur.execute(
                "SELECT id FROM directed WHERE sender = ? AND op = ? AND recipient = ?"
                " AND cid = ?", (cmd.sender, cmd.op, cmd.recipient, cmd.cid)).fetchone()
            if row is not None:
                return DirectedStored(int(row[0]), duplicate=True)
        cur.execute(
            "INSERT INTO directed (op, sender, cid, recipient, payload, at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (cmd.op, cmd.sender, cmd.cid, cmd.recipient, cmd.payload, cmd.at_ms))
        return DirectedStored(int(cur.lastrowid or 0))

    @staticmethod
    def _put_key_packages(cur: sqlite3.Cursor, cmd: PutKeyPackages) -> KeyPackagesStored:
        if cmd.replace:
            cur.execute("DELETE FROM key_packages WHERE unit = ?", (cmd.unit,))
        for kp_id, body, last_resort in cmd.packages:
            if last_resort:
                cur.execute("DELETE FROM key_packages WHERE unit = ? AND last_resort = 1",
                            (cmd.unit,))
            cur.execute("INSERT OR IGNORE INTO key_packages (unit, kp_id, body, last_resort) "
                        "VALUES (?, ?, ?, ?)", (cmd.unit, kp_id, body, int(last_resort)))
        # Keep the newest MAX_STORED_PER_UNIT one-time packages: a unit cannot grow the
        # table without bound, and the oldest are the likeliest to be stale anyway.
        cur.execute("DELETE FROM key_packages WHERE unit = ? AND last_resort = 0 AND id NOT IN "
                    "(SELECT id FROM key_packages WHERE unit = ? AND last_resort = 0 "
                    "ORDER BY id DESC LIMIT ?)", (cmd.unit, cmd.unit, MAX_STORED_PER_UNIT))
        (n,) = cur.execute("SELECT COUNT(*) FROM key_packages WHERE unit = ? AND "
                           "last_resort = 0", (cmd.unit,)).fetchone()
        return KeyPackagesStored(int(n))

    @staticmethod
    def _claim_key_packages(cur: sqlite3.Cursor, cmd: ClaimKeyPackages) -> KeyPackagesClaimed:
        key = (cmd.claimer, cmd.op, cmd.cid)
        if cmd.cid is not None:
            row = cur.execute("SELECT answer FROM key_package_claims WHERE claimer = ? AND "
                              "op = ? AND cid = ?", key).fetchone()
            if row is not None:
                packages, missing = msgpack.unpackb(row[0])
                return KeyPackagesClaimed(packages, tuple(missing), duplicate=True)
        out: dict[str, bytes] = {}
        for unit in dict.fromkeys(cmd.units):
            row = cur.execute("SELECT id, body, last_resort FROM key_packages WHERE unit = ? "
                              "ORDER BY last_resort, id LIMIT 1", (unit,)).fetchone()
            if row is None:
                continue
            if not row[2]:
                cur.execute("DELETE FROM key_packages WHERE id = ?", (row[0],))
            out[unit] = row[1]
        missing = tuple(u for u in dict.fromkeys(cmd.units) if u not in out)
        if cmd.cid is not None:
            cur.execute("INSERT INTO key_package_claims (claimer, op, cid, answer) "
                        "VALUES (?, ?, ?, ?)",
                        (*key, msgpack.packb([out, list(missing)], use_bin_type=True)))
        return KeyPackagesClaimed(out, missing)

    def _append(self, cmd: AppendMessage, existing: dict[tuple[str, str, int, int], int],
                batch: _LogBatch) -> Appended:
        key = (cmd.op, cmd.sender, cmd.kind, cmd.cid)
        seq = existing.get(key)
        if seq is not None:
            return Appended(cmd.op, seq, duplicate=True)
        seq = self._heads.get(cmd.op, 0) + 1
        self._heads[cmd.op] = seq
        existing[key] = seq  # a retry inside the same batch is a duplicate too
        batch.add(cmd, seq)
        mkey = key[:3]
        if cmd.cid > self._max_cid.get(mkey, -1):
            self._max_cid[mkey] = cmd.cid
        return Appended(cmd.op, seq, duplicate=False)

    def _existing_cids(self, cur: sqlite3.Cursor,
                       commands: list[Command]) -> dict[tuple[str, str, int, int], int]:
        """Which cids of this batch are already stored, with their seqs.

        Agents choose growing cids (see docs/protocol.md), so a cid above the largest one
        stored for its (op, sender, kind) is new without a lookup; only retries and
        out-of-order cids are looked up, in the cid runs around them."""
        wanted: dict[tuple[str, str, int], list[int]] = defaultdict(list)
        for cmd in commands:
            msg = cmd.message if isinstance(cmd, ApplyStatement) else cmd
            if isinstance(msg, AppendMessage):
                wanted[(msg.op, msg.sender, msg.kind)].append(msg.cid)
        found: dict[tuple[str, str, int, int], int] = {}
        for mkey, cids in wanted.items():
            if mkey not in self._max_cid:
                row = cur.execute("SELECT MAX(last_cid) FROM cid_runs WHERE op = ? "
                                  "AND sender = ? AND kind = ?", mkey).fetchone()
                self._max_cid[mkey] = -1 if row[0] is None else int(row[0])
            top = self._max_cid[mkey]
            old = sorted({c for c in cids if c <= top})
            for lo, hi in _clusters(old, _CLUSTER_GAP):
                runs = _runs_between(cur, mkey, lo, hi)
                lasts = [run[1] for run in runs]
                for cid in old[bisect.bisect_left(old, lo) : bisect.bisect_right(old, hi)]:
                    i = bisect.bisect_left(lasts, cid)
                    if i < len(runs) and runs[i][0] <= cid:
                        found[(*mkey, cid)] = runs[i][2] + cid - runs[i][0]
        return found

    # --- reads while serving ---------------------------------------------------------

    def read_log(self, op: str, after: int, limit: int) -> list[LogEntry]:
        return _read_log(self._r, op, after, limit)

    def pending_directed(self, recipient: str, limit: int) -> list[DirectedEntry]:
        try:
            return [
                DirectedEntry(*row)
                for row in self._r.execute(
                    "SELECT id, op, sender, payload, at_ms FROM directed WHERE recipient = ? "
                    "AND acked = 0 ORDER BY id LIMIT ?", (recipient, limit))
            ]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read directed messages of {recipient!r}: {exc}") from exc

    def close(self) -> None:
        for conn in (self._r, self._w):
            with contextlib.suppress(sqlite3.Error):
                conn.close()


class LogReader:
    """A hub database's logs read from outside the hub (a lesson's "as the hub stores it"
    pane): the file opened read-only, so nothing here can change what the hub wrote.
    Blocking, like the store."""

    def __init__(self, path: str | Path) -> None:
        try:
            self._conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {str(path)!r}: {exc}") from exc

    def read_log(self, op: str, after: int, limit: int = 1000) -> list[LogEntry]:
        """Entries of ``op`` with seq > after, ascending, at most ``limit``. Raises
        StoreError."""
        return _read_log(self._conn, op, after, limit)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()


def _read_log(conn: sqlite3.Connection, op: str, after: int, limit: int) -> list[LogEntry]:
    out: list[LogEntry] = []
    try:
        rows = conn.execute(
            "SELECT first_seq, body FROM segments WHERE op = ? AND last_seq > ? "
            "ORDER BY last_seq", (op, after))
        for first_seq, body in rows:
            entries = msgpack.unpackb(body, use_list=False)
            skip = max(0, after + 1 - first_seq)
            out.extend(LogEntry(*e) for e in entries[skip : skip + limit - len(out)])
            if len(out) >= limit:
                break
        return out
    except (sqlite3.Error, ValueError) as exc:
        raise StoreError(f"cannot read log of {op!r}: {exc}") from exc


class _LogBatch:
    """The log entries and cid runs of one transaction, written when it ends."""

    __slots__ = ("entries", "runs")

    def __init__(self) -> None:
        #: op -> entries in wire form, in seq order
        self.entries: dict[str, list[list[Any]]] = defaultdict(list)
        #: [op, sender, kind, first_cid, last_cid, first_seq]; the last run of each key
        #: is the one the next entry may extend
        self.runs: dict[tuple[str, str, int], list[list[Any]]] = defaultdict(list)

    def add(self, cmd: AppendMessage, seq: int) -> None:
        self.entries[cmd.op].append(
            [seq, cmd.sender, cmd.kind, cmd.header, cmd.payload, cmd.at_ms])
        runs = self.runs[(cmd.op, cmd.sender, cmd.kind)]
        if runs:
            run = runs[-1]
            if run[4] + 1 == cmd.cid and run[5] + run[4] - run[3] + 1 == seq:
                run[4] = cmd.cid
                return
        runs.append([cmd.op, cmd.sender, cmd.kind, cmd.cid, cmd.cid, seq])

    def write(self, cur: sqlite3.Cursor) -> None:
        segments = []
        for op, entries in self.entries.items():
            for chunk in _segments(entries):
                segments.append((op, chunk[0][0], chunk[-1][0],
                                 msgpack.packb(chunk, use_bin_type=True)))
        if segments:
            cur.executemany(
                "INSERT INTO segments (op, first_seq, last_seq, body) VALUES (?, ?, ?, ?)",
                segments)
        if self.runs:
            cur.executemany(
                "INSERT INTO cid_runs (op, sender, kind, first_cid, last_cid, first_seq) "
                "VALUES (?, ?, ?, ?, ?, ?)", [r for runs in self.runs.values() for r in runs])


def _segments(entries: list[list[Any]]) -> list[list[list[Any]]]:
    """Split one operation's entries of a transaction into segments."""
    out: list[list[list[Any]]] = [[]]
    size = 0
    for e in entries:
        n = len(e[3]) + len(e[4]) + 32
        if out[-1] and (len(out[-1]) >= SEGMENT_ENTRIES or size + n > SEGMENT_BYTES):
            out.append([])
            size = 0
        out[-1].append(e)
        size += n
    return out


def _clusters(cids: list[int], gap: int) -> list[tuple[int, int]]:
    """Sorted cids as (lo, hi) ranges, split where two neighbours are more than gap apart."""
    out: list[tuple[int, int]] = []
    for cid in cids:
        if out and cid - out[-1][1] <= gap:
            out[-1] = (out[-1][0], cid)
        else:
            out.append((cid, cid))
    return out


def _runs_between(cur: sqlite3.Cursor, mkey: tuple[str, str, int], lo: int,
                  hi: int) -> list[tuple[int, int, int]]:
    """(first_cid, last_cid, first_seq) of the runs that may hold a cid in lo..hi, by
    last_cid: those ending inside the range, and the one after it, which may start inside."""
    op, sender, kind = mkey
    runs = cur.execute(
        "SELECT first_cid, last_cid, first_seq FROM cid_runs WHERE op = ? AND sender = ? "
        "AND kind = ? AND last_cid BETWEEN ? AND ? ORDER BY last_cid",
        (op, sender, kind, lo, hi)).fetchall()
    runs += cur.execute(
        "SELECT first_cid, last_cid, first_seq FROM cid_runs WHERE op = ? AND sender = ? "
        "AND kind = ? AND last_cid > ? ORDER BY last_cid LIMIT 1",
        (op, sender, kind, hi)).fetchall()
    return runs
