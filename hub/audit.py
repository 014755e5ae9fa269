"""AuditTrail: an append-only, hash-chained record of what a hub node did on behalf of
whom: enrollments, membership statements (accepted and refused), operations created,
key-package claims, and failed authentications. Metadata only: ids, epochs, codes,
hashes and addresses; never a payload, ciphertext, signature, nonce or key.

It must not slow the hot path or become a lever for a denial of service. ``record`` only
appends to a list in memory (no I/O, no await); a thread writes what has gathered every
``flush_interval`` seconds in one transaction. Kinds a peer can cause as fast as it sends
(failed handshakes, refused admin requests: ``NOISY``) are bounded per source: past
``per_source`` in a window of ``window`` seconds, they are counted, and one
``<kind>_suppressed`` entry with the count replaces them when the window ends.

Each node keeps its own file (with the JetStream store too): it records what was done
through that node; a statement another node accepted is in that node's file. The file
format, the chain and ``verify``: hub/audit_file.py.

Threat model, in plain words. The audit file sits on the hub's disk with a key file
beside it (0600, made on first start).
- Detected: someone with the audit file but not the key who edits an entry, deletes one
  in the middle, or deletes the last ones. Each entry's hash is keyed (HMAC-SHA256), so
  recomputing the hashes with plain SHA-256 does not help, and the key file holds an
  anchor (how many entries, the last one's hash) that a shortened file no longer meets.
  SQL triggers also refuse UPDATE and DELETE, against mistakes more than attackers.
- Refused at start: a hub does not append to a file that no longer meets its anchor,
  whose key is missing or is another one (what was cut would otherwise be hidden under
  new entries).
- Not detected: someone who holds both the file and the key file can rewrite the whole
  trail and its anchor, or put back an older copy of both; deleting both files together
  leaves nothing to compare. Keep the key file where the hub's data is not
  (``key_path``), or copy the head that ``opshub audit verify`` prints to somewhere else
  now and then: a later trail that does not contain that head was rewritten.
- Not recorded: what the hub never saw (a unit's own machine), and the last batch
  (under ``flush_interval``) if the process is killed.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.audit_file import (
    GENESIS,
    INSERT,
    KeyFile,
    WriterLock,
    chain_hash,
    detail_text,
    key_id,
    key_path_for,
    stored_key_id,
)
from hub.audit_file import connect as connect_file
from protocol.errors import StoreError
from protocol.router_audit import NOISY, Audited, Value

log = logging.getLogger("opshub.audit")

#: (at_ms, kind, unit, op, source, detail): an entry waiting for the writer
_Pending = tuple[int, str, str | None, str | None, str | None, dict[str, Value]]


def default_audit_path(db: Path) -> Path:
    """A hub node's audit file when none is given: ``<db>.audit`` beside its database."""
    return db.with_name(db.name + ".audit")


@dataclass(slots=True)
class _Window:
    since_ms: int
    unit: str | None
    source: str | None
    seen: int = 0
    codes: set[str] = field(default_factory=set)


class _RateBound:
    """Fixed windows per (kind, source); a source is the peer's address, or the unit when
    there is none. At most ``max_sources`` windows are open; further sources share one
    ("*"), so memory stays bounded whatever the number of addresses an attacker has."""

    def __init__(self, per_source: int, window: float, max_sources: int) -> None:
        self.per_source = per_source
        self.window_ms = int(window * 1000)
        self.max_sources = max_sources
        #: in the order the windows opened (a dict keeps insertion order): expiry pops
        #: from the front
        self._open: dict[tuple[str, str], _Window] = {}

    def admit(self, kind: str, unit: str | None, source: str | None, code: Value,
              at_ms: int) -> bool:
        key = (kind, source if source is not None else unit or "")
        w = self._open.get(key)
        if w is None:
            if len(self._open) >= self.max_sources:
                key, unit, source = (kind, "*"), None, "*"
                w = self._open.get(key)
            if w is None:
                w = self._open[key] = _Window(at_ms, unit if source is None else None, source)
        w.seen += 1
        if w.seen <= self.per_source:
            return True
        if isinstance(code, str) and len(w.codes) < 8:
            w.codes.add(code)
        return False

    def expire(self, now_ms: int, *, everything: bool = False) -> list[_Pending]:
        """Close the windows that are over (all of them: at close); one entry for each
        that suppressed something."""
        out: list[_Pending] = []
        for key in list(self._open):
            w = self._open[key]
            if not everything and now_ms - w.since_ms < self.window_ms:
                break
            del self._open[key]
            if w.seen > self.per_source:
                out.append((now_ms, f"{key[0]}_suppressed", w.unit, None, w.source, {
                    "count": w.seen - self.per_source, "since": w.since_ms,
                    "codes": sorted(w.codes)}))
        return out


class AuditTrail:
    """One hub node's audit trail. Opening raises StoreError if the file and its key file
    do not belong together, or the file no longer holds what the anchor names."""

    def __init__(self, path: Path, *, key_path: Path | None = None,
                 now: Callable[[], float] = time.time, flush_interval: float = 0.25,
                 per_source: int = 20, window: float = 60.0, max_sources: int = 1024,
                 max_pending: int = 100_000) -> None:
        self.path = path
        self.key_path = key_path or key_path_for(path)
        self.now = now
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        with contextlib.ExitStack() as undo:  # what is open so far, if a step raises
            self._writer = WriterLock(path)
            undo.callback(self._writer.release)
            self._conn = connect_file(path)
            undo.callback(self._conn.close)
            self._keyfile, self._seq, self._head = self._resume()
            undo.pop_all()
        self._bound = _RateBound(per_source, window, max_sources)
        #: guards what ``record`` touches (the event loop) against the writer thread
        self._lock = threading.Lock()
        #: one writer at a time: the thread, ``flush`` or ``close``
        self._write_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._dropped = 0
        #: the last batch failed (logged once, until a batch is written again)
        self._failing = False
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="opshub-audit", daemon=True)
        self._thread.start()

    def _resume(self) -> tuple[KeyFile, int, str]:
        """The key, and where the chain goes on, after checking the file against the
        anchor (the last entry only: a full check is ``opshub audit verify``'s)."""
        conn, key_path = self._conn, self.key_path
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        count, head = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        if key_path.exists():
            keyfile = KeyFile.load(key_path)
        elif count:
            raise self._mismatch("the key file is missing")
        else:
            keyfile = KeyFile.create(key_path)
        named = stored_key_id(conn)
        if named is None and not count:
            conn.execute("INSERT OR REPLACE INTO audit_meta VALUES ('key_id', ?)",
                         (key_id(keyfile.key),))
        elif named != key_id(keyfile.key):
            raise self._mismatch(f"it was not written under the key in {key_path}")
        if count < keyfile.count:
            raise self._mismatch(f"it ends at seq {count}, the anchor names "
                                 f"{keyfile.count} entries")
        if keyfile.count:
            row = conn.execute("SELECT hash FROM audit WHERE seq = ?",
                               (keyfile.count,)).fetchone()
            if row is None or row[0] != keyfile.head:
                raise self._mismatch(f"seq {keyfile.count} is not the entry the anchor names")
        return keyfile, count, head

    def _mismatch(self, what: str) -> StoreError:
        return StoreError(f"audit file {self.path} does not match its key file "
                          f"{self.key_path}: {what}. See `opshub audit verify --db "
                          f"{self.path}`; move both files aside to start a new trail")

    def record(self, kind: str, *, unit: str | None = None, op: str | None = None,
               source: str | None = None, **detail: Value) -> None:
        """Keep one entry for the next batch. Cheap and non-blocking: no I/O here."""
        self._keep(kind, unit, op, source, detail)

    def reported(self, event: Audited) -> None:
        """Keep an event the router reported (protocol/router_audit.py), as ``record``."""
        self._keep(event.kind, event.unit, event.op, None, event.detail)

    def _keep(self, kind: str, unit: str | None, op: str | None, source: str | None,
              detail: dict[str, Value]) -> None:
        at_ms = int(self.now() * 1000)
        with self._lock:
            if self._closed:
                log.warning("audit entry %r after the trail was closed: not recorded", kind)
                return
            if kind in NOISY and not self._bound.admit(kind, unit, source,
                                                       detail.get("code"), at_ms):
                return
            if len(self._pending) >= self.max_pending:
                self._dropped += 1  # the writer is stuck; an audit_dropped entry says so
                return
            self._pending.append((at_ms, kind, unit, op, source, detail))

    def flush(self) -> None:
        """Write what has gathered now (blocking: tests). Nothing once closed."""
        if not self._closed:
            self._write()

    def close(self) -> None:
        """Stop the writer, write everything (the suppressed counts of open windows too)
        and close the file. Blocking; a second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._thread.join()
        self._write(everything=True)
        self._conn.close()
        self._writer.release()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._write()

    def _write(self, *, everything: bool = False) -> None:
        with self._write_lock:
            with self._lock:
                rows, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
                now_ms = int(self.now() * 1000)
                rows += self._bound.expire(now_ms, everything=everything)
            if dropped:
                rows.append((now_ms, "audit_dropped", None, None, None, {"count": dropped}))
            if not rows:
                return
            try:
                self._append(rows)
            except sqlite3.Error as exc:  # a full disk: what waits is kept for next time
                if not self._failing:
                    log.error("audit trail %s: %d entries not written yet, retrying every "
                              "%g s: %s", self.path, len(rows), self.flush_interval, exc)
                self._failing = True
                with self._lock:
                    self._pending[:0] = rows
                return
            if self._failing:
                log.warning("audit trail %s: written again", self.path)
                self._failing = False

    def _append(self, rows: list[_Pending]) -> None:
        """One transaction for the batch; then the anchor names its last entry."""
        key, seq, head = self._keyfile.key, self._seq, self._head
        out = []
        for at_ms, kind, unit, op, source, detail in rows:
            seq += 1
            text = detail_text(dict(detail))
            digest = chain_hash(key, head, seq, at_ms, kind, unit, op, source, text)
            out.append((seq, at_ms, kind, unit, op, source, text, head, digest))
            head = digest
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(INSERT, out)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._seq, self._head = seq, head
        try:
            self._keyfile.save(seq, head)
        except OSError as exc:  # the file is ahead of the anchor: verify still passes
            log.error("audit trail %s: anchor not saved: %s", self.path, exc)


class NoAudit:
    """A hub without an audit trail (tests, benchmarks): records nothing."""

    def record(self, kind: str, *, unit: str | None = None, op: str | None = None,
               source: str | None = None, **detail: Value) -> None:
        pass

    def reported(self, event: Audited) -> None:
        pass

    def close(self) -> None:
        pass
