"""Tests of hub.store.sqlite.SQLiteStore on a temporary file: seqs, idempotency, reload."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.store.sqlite import SEGMENT_BYTES, SEGMENT_ENTRIES, LogReader, SQLiteStore
from protocol.errors import StoreError
from protocol.frames import KIND_COMMIT, KIND_MESSAGE
from protocol.store import (
    AckDirected,
    Appended,
    AppendMessage,
    ApplyStatement,
    DirectedEntry,
    DirectedStored,
    Enroll,
    LogEntry,
    OperationRecord,
    SaveCursor,
    StoreDirected,
)

ADMIN = "OCU-BB"
KEY = b"k" * 32


def _statement(op: str, epoch: int = 0, members: frozenset[str] = frozenset({ADMIN, "JM"}),
               cid: int | None = None) -> ApplyStatement:
    """An accepted statement as the broker would store it: logged with its epoch as cid."""
    body = f"{op}/{epoch}".encode()
    message = AppendMessage(op, ADMIN, epoch if cid is None else cid, KIND_COMMIT, b"", body, 1)
    return ApplyStatement(op, epoch, f"Operation {op}", ADMIN, KEY, b"head-%d" % epoch,
                          members, body, b"sig", message)


def _msg(op: str, sender: str, cid: int, payload: bytes = b"p", at_ms: int = 2) -> AppendMessage:
    return AppendMessage(op, sender, cid, KIND_MESSAGE, b"h", payload, at_ms)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    store.load()
    store.apply([_statement("OP-A"), _statement("OP-B")])
    yield store
    store.close()


def _reopen(store: SQLiteStore, path: Path) -> SQLiteStore:
    store.close()
    return SQLiteStore(path)


def test_sqlite_seqs_are_contiguous_per_operation_across_batches(store: SQLiteStore) -> None:
    """Each operation numbers its log 1, 2, 3... independently, continuing across batches."""
    first = store.apply([_msg("OP-A", "JM", 1), _msg("OP-B", "JM", 1), _msg("OP-A", "JM", 2)])
    second = store.apply([_msg("OP-B", "JM", 2), _msg("OP-A", "JM", 3)])
    assert first == [Appended("OP-A", 2, False), Appended("OP-B", 2, False),
                     Appended("OP-A", 3, False)]
    assert second == [Appended("OP-B", 3, False), Appended("OP-A", 4, False)]
    assert [e.seq for e in store.read_log("OP-A", 0, 100)] == [1, 2, 3, 4]
    assert [e.seq for e in store.read_log("OP-B", 0, 100)] == [1, 2, 3]


def test_sqlite_duplicate_returns_the_original_seq(store: SQLiteStore) -> None:
    """Re-sending (op, sender, kind, cid) in a later batch returns the stored seq as duplicate."""
    [original] = store.apply([_msg("OP-A", "JM", 7, b"first")])
    [again] = store.apply([_msg("OP-A", "JM", 7, b"retry")])
    assert again == Appended("OP-A", original.seq, duplicate=True)  # type: ignore[union-attr]
    assert [e.payload for e in store.read_log("OP-A", 1, 100)] == [b"first"]


def test_sqlite_duplicate_inside_one_batch_returns_the_first_seq(store: SQLiteStore) -> None:
    """A retry inside the same batch is a duplicate of the first and stores one entry."""
    results = store.apply([_msg("OP-A", "JM", 7), _msg("OP-A", "JM", 7), _msg("OP-A", "JM", 8)])
    assert results == [Appended("OP-A", 2, False), Appended("OP-A", 2, True),
                       Appended("OP-A", 3, False)]
    assert [e.seq for e in store.read_log("OP-A", 0, 100)] == [1, 2, 3]


def test_sqlite_out_of_order_cids_are_new_and_their_retries_duplicates(
        store: SQLiteStore) -> None:
    """A cid below the largest stored one is still new the first time, a duplicate after."""
    store.apply([_msg("OP-A", "JM", 100)])
    assert store.apply([_msg("OP-A", "JM", 5)]) == [Appended("OP-A", 3, False)]
    assert store.apply([_msg("OP-A", "JM", 5), _msg("OP-A", "JM", 100)]) == [
        Appended("OP-A", 3, True), Appended("OP-A", 2, True)]


def test_sqlite_retry_after_reopen_is_a_duplicate(store: SQLiteStore, path: Path) -> None:
    """The idempotency check survives a restart: a retried cid returns its original seq."""
    store.apply([_msg("OP-A", "JM", 1), _msg("OP-A", "JM", 2)])
    again = _reopen(store, path)
    try:
        again.load()
        assert again.apply([_msg("OP-A", "JM", 2), _msg("OP-A", "JM", 3)]) == [
            Appended("OP-A", 3, True), Appended("OP-A", 4, False)]
    finally:
        again.close()


def test_sqlite_duplicate_does_not_consume_a_seq(store: SQLiteStore) -> None:
    """After a duplicate the next new message gets the next free seq, with no gap."""
    store.apply([_msg("OP-A", "JM", 1)])
    store.apply([_msg("OP-A", "JM", 1)])
    assert store.apply([_msg("OP-A", "JM", 2)]) == [Appended("OP-A", 3, False)]


def test_sqlite_same_cid_from_another_sender_kind_or_op_is_new(store: SQLiteStore) -> None:
    """The idempotency key is (op, sender, kind, cid): changing any part makes a new entry."""
    results = store.apply([
        _msg("OP-A", "JM", 1),
        _msg("OP-A", "TT", 1),
        AppendMessage("OP-A", "JM", 1, KIND_COMMIT, b"", b"", 0),
        _msg("OP-B", "JM", 1),
    ])
    assert [r.duplicate for r in results if isinstance(r, Appended)] == [False] * 4


def test_sqlite_load_after_reopen_restores_state(store: SQLiteStore, path: Path) -> None:
    """A reopened store loads operations, heads, directory and cursors as they were."""
    members = frozenset({ADMIN, "JM", "TT"})
    store.apply([
        _msg("OP-A", "JM", 1),
        _statement("OP-A", epoch=1, members=members),
        Enroll("JM", b"cred", b"csig", 100),
        SaveCursor("JM", "OP-A", 2),
    ])
    again = _reopen(store, path)
    try:
        snap = again.load()
        assert snap.operations["OP-A"] == OperationRecord(
            "OP-A", "Operation OP-A", ADMIN, KEY, 1, b"head-1", members, last_seq=3)
        assert snap.operations["OP-B"].last_seq == 1
        assert snap.operations["OP-B"].members == {ADMIN, "JM"}
        assert snap.directory == {"JM": (b"cred", b"csig")}
        assert snap.cursors == {("JM", "OP-A"): 2}
        assert again.apply([_msg("OP-A", "JM", 2)]) == [Appended("OP-A", 4, False)]
        assert again.apply([_msg("OP-A", "JM", 1)]) == [Appended("OP-A", 2, True)]
    finally:
        again.close()


def test_sqlite_enroll_keeps_the_newest_credential(store: SQLiteStore) -> None:
    """Enrolling an older credential than the stored one leaves the newer in place."""
    store.apply([Enroll("JM", b"new", b"s2", 200)])
    store.apply([Enroll("JM", b"old", b"s1", 100)])
    assert store.load().directory == {"JM": (b"new", b"s2")}


def test_sqlite_cursor_never_moves_backwards(store: SQLiteStore) -> None:
    """Saving a lower cursor than the stored one keeps the higher."""
    store.apply([SaveCursor("JM", "OP-A", 5)])
    store.apply([SaveCursor("JM", "OP-A", 3)])
    assert store.load().cursors == {("JM", "OP-A"): 5}


def test_sqlite_read_log_pages_through_the_log(store: SQLiteStore) -> None:
    """read_log returns entries after ``after`` in order, at most ``limit`` at a time."""
    store.apply([_msg("OP-A", "JM", cid, payload=b"%d" % cid, at_ms=cid) for cid in range(1, 8)])
    pages: list[list[LogEntry]] = []
    after = 0
    while page := store.read_log("OP-A", after, 3):
        pages.append(page)
        after = page[-1].seq
    assert [[e.seq for e in p] for p in pages] == [[1, 2, 3], [4, 5, 6], [7, 8]]
    assert pages[1][0] == LogEntry(4, "JM", KIND_MESSAGE, b"h", b"3", 3)
    assert store.read_log("OP-A", 8, 3) == []
    assert store.read_log("OP-NONE", 0, 3) == []


def test_sqlite_directed_messages_wait_until_acked(store: SQLiteStore) -> None:
    """Directed messages are pending for their recipient, oldest first, until it acks them."""
    stored = store.apply([
        StoreDirected("OP-A", ADMIN, "JM", b"one", 1),
        StoreDirected("OP-A", ADMIN, "TT", b"other", 2),
        StoreDirected("OP-B", ADMIN, "JM", b"two", 3),
    ])
    assert all(isinstance(r, DirectedStored) for r in stored)
    ids = [r.id for r in stored if isinstance(r, DirectedStored)]
    assert ids == sorted(ids)
    assert store.pending_directed("JM", 10) == [
        DirectedEntry(ids[0], "OP-A", ADMIN, b"one", 1),
        DirectedEntry(ids[2], "OP-B", ADMIN, b"two", 3),
    ]
    assert store.pending_directed("JM", 1) == [DirectedEntry(ids[0], "OP-A", ADMIN, b"one", 1)]
    store.apply([AckDirected("JM", (ids[0],))])
    assert [d.id for d in store.pending_directed("JM", 10)] == [ids[2]]


def test_sqlite_directed_ack_by_another_unit_deletes_nothing(store: SQLiteStore) -> None:
    """Only the recipient can acknowledge a directed message away."""
    [stored] = store.apply([StoreDirected("OP-A", ADMIN, "JM", b"one", 1)])
    assert isinstance(stored, DirectedStored)
    store.apply([AckDirected("TT", (stored.id,))])
    assert [d.id for d in store.pending_directed("JM", 10)] == [stored.id]


def test_sqlite_directed_ids_are_never_reused(store: SQLiteStore) -> None:
    """After the newest directed message is acked, the next one still gets a fresh id."""
    [first] = store.apply([StoreDirected("OP-A", ADMIN, "JM", b"one", 1)])
    assert isinstance(first, DirectedStored)
    store.apply([AckDirected("JM", (first.id,))])
    [second] = store.apply([StoreDirected("OP-A", ADMIN, "JM", b"two", 2)])
    assert isinstance(second, DirectedStored)
    assert second.id > first.id


def test_sqlite_directed_retry_with_the_same_cid_is_stored_once(store: SQLiteStore) -> None:
    """A directed message re-sent with its (sender, cid) returns the first id, even after
    the recipient acknowledged it, and is not pending again."""
    [first] = store.apply([StoreDirected("OP-A", ADMIN, "JM", b"welcome", 1, cid=77)])
    [again] = store.apply([StoreDirected("OP-A", ADMIN, "JM", b"welcome", 2, cid=77)])
    assert again == DirectedStored(first.id, duplicate=True)  # type: ignore[union-attr]
    store.apply([AckDirected("JM", (first.id,))])  # type: ignore[union-attr]
    [late] = store.apply([StoreDirected("OP-A", ADMIN, "JM", b"welcome", 3, cid=77)])
    assert late == DirectedStored(first.id, duplicate=True)  # type: ignore[union-attr]
    assert store.pending_directed("JM", 10) == []


def test_sqlite_failing_batch_stores_nothing(store: SQLiteStore, path: Path) -> None:
    """A batch that violates a constraint raises StoreError and leaves no trace of any
    command."""
    with pytest.raises(StoreError, match="batch of 6 commands not stored"):
        store.apply([
            _msg("OP-A", "JM", 1),
            Enroll("JM", b"cred", b"sig", 1),
            SaveCursor("JM", "OP-A", 1),
            StoreDirected("OP-A", ADMIN, "JM", b"d", 1),
            _statement("OP-C"),
            # Same (op, epoch) as the statement before, under another cid: the statements
            # table's primary key refuses it after everything else has been written.
            _statement("OP-C", cid=99),
        ])
    assert store.read_log("OP-A", 1, 10) == []
    assert store.read_log("OP-C", 0, 10) == []
    assert store.pending_directed("JM", 10) == []
    # The in-memory heads were rolled back with the transaction: no seq was burnt.
    assert store.apply([_msg("OP-A", "JM", 1)]) == [Appended("OP-A", 2, False)]
    again = _reopen(store, path)
    try:
        snap = again.load()
        assert set(snap.operations) == {"OP-A", "OP-B"}
        assert snap.directory == {}
        assert snap.cursors == {}
    finally:
        again.close()


def test_sqlite_apply_on_a_closed_store_raises_store_error(store: SQLiteStore) -> None:
    """apply on a closed store raises StoreError, as the Store contract promises."""
    store.close()
    with pytest.raises(StoreError):
        store.apply([_msg("OP-A", "JM", 1)])


def test_sqlite_load_on_a_closed_store_raises_store_error(store: SQLiteStore) -> None:
    """load on a closed store raises StoreError."""
    store.close()
    with pytest.raises(StoreError):
        store.load()


def test_sqlite_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    """A database path that cannot be opened raises StoreError."""
    with pytest.raises(StoreError, match="cannot open database"):
        SQLiteStore(tmp_path / "missing-dir" / "hub.db")


def test_sqlite_long_batch_is_split_into_segments_read_from_any_point(
        store: SQLiteStore, path: Path) -> None:
    """A transaction longer than one segment is stored as several; read_log starts
    anywhere inside one and crosses segment boundaries without losing or repeating."""
    n = 2 * SEGMENT_ENTRIES + 17
    store.apply([_msg("OP-A", "JM", cid, payload=b"%d" % cid) for cid in range(1, n + 1)])
    with sqlite3.connect(path) as conn:
        spans = conn.execute("SELECT first_seq, last_seq FROM segments WHERE op = 'OP-A' "
                             "ORDER BY last_seq").fetchall()
    # seq 1 is the statement, stored alone by the fixture's earlier transaction
    assert spans == [(1, 1), (2, SEGMENT_ENTRIES + 1), (SEGMENT_ENTRIES + 2,
                     2 * SEGMENT_ENTRIES + 1), (2 * SEGMENT_ENTRIES + 2, n + 1)]
    for after in (0, 1, 5, SEGMENT_ENTRIES, SEGMENT_ENTRIES + 1, n):
        got = store.read_log("OP-A", after, 300)
        assert [e.seq for e in got] == list(range(after + 1, min(after + 300, n + 1) + 1))
        assert all(e.payload == b"%d" % (e.seq - 1) for e in got if e.seq > 1)


def test_sqlite_big_payloads_make_smaller_segments(store: SQLiteStore, path: Path) -> None:
    """Segments also stop at about SEGMENT_BYTES, so one never holds much more than that."""
    big = b"x" * (SEGMENT_BYTES // 3)
    store.apply([_msg("OP-A", "JM", cid, payload=big) for cid in range(1, 8)])
    with sqlite3.connect(path) as conn:
        sizes = [len(body) for (body,) in conn.execute(
            "SELECT body FROM segments WHERE op = 'OP-A' AND first_seq > 1")]
    assert len(sizes) == 4  # two entries of a third of SEGMENT_BYTES fit, not three
    assert max(sizes) < SEGMENT_BYTES
    assert [e.seq for e in store.read_log("OP-A", 0, 100)] == list(range(1, 9))


def test_sqlite_cid_runs_cover_pipelined_batches_in_one_row(store: SQLiteStore,
                                                            path: Path) -> None:
    """A sender's consecutive cids at consecutive seqs are one run; an interleaved sender
    breaks it, and each retry still finds its own seq."""
    store.apply([_msg("OP-A", "JM", cid) for cid in range(1, 101)])
    store.apply([_msg("OP-A", "JM", 101), _msg("OP-A", "TT", 1), _msg("OP-A", "JM", 102)])
    with sqlite3.connect(path) as conn:
        runs = conn.execute("SELECT sender, first_cid, last_cid, first_seq FROM cid_runs "
                            "WHERE op = 'OP-A' AND kind = ? ORDER BY first_seq",
                            (KIND_MESSAGE,)).fetchall()
    assert runs == [("JM", 1, 100, 2), ("JM", 101, 101, 102), ("TT", 1, 1, 103),
                    ("JM", 102, 102, 104)]
    retries = store.apply([_msg("OP-A", "JM", c) for c in (102, 1, 50, 101, 100)]
                          + [_msg("OP-A", "TT", 1)])
    assert [(r.seq, r.duplicate) for r in retries if isinstance(r, Appended)] == [
        (104, True), (2, True), (51, True), (102, True), (101, True), (103, True)]


def test_sqlite_refuses_a_database_of_another_schema_version(path: Path) -> None:
    """A file written by an older layout is refused by name, not misread."""
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 1, this hub reads version 2"):
        SQLiteStore(path)


_sender = st.sampled_from(["JM", "TT"])
_op = st.sampled_from(["OP-A", "OP-B"])
# (op, sender, first cid, count): a stretch of consecutive cids, as a pipelining agent sends
_stretch = st.tuples(_op, _sender, st.integers(min_value=0, max_value=40),
                     st.integers(min_value=1, max_value=6))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stretches=st.lists(st.lists(_stretch, min_size=1, max_size=8), min_size=1, max_size=8),
       reopen_after=st.integers(min_value=0, max_value=8))
def test_sqlite_appends_match_a_model_of_the_log(tmp_path: Path, stretches,
                                                 reopen_after) -> None:
    """Any mix of new, retried and out-of-order cids over ops and senders, across batches
    and a reopen: every result and the whole log agree with a dict-and-list model."""
    path = tmp_path / f"model-{uuid.uuid4().hex}.db"
    store = SQLiteStore(path)
    store.load()
    store.apply([_statement("OP-A"), _statement("OP-B")])  # each op's seq 1
    model: dict[tuple[str, str, int], int] = {}
    logs: dict[str, list[tuple[str, int]]] = {"OP-A": [], "OP-B": []}
    try:
        for i, batch_stretches in enumerate(stretches):
            batch = [(op, sender, first + k)
                     for op, sender, first, count in batch_stretches for k in range(count)]
            if i == reopen_after:
                store = _reopen(store, path)
                store.load()
            results = store.apply([_msg(op, sender, cid, payload=f"{sender}{cid}".encode())
                                   for op, sender, cid in batch])
            for (op, sender, cid), res in zip(batch, results, strict=True):
                key = (op, sender, cid)
                if key in model:
                    assert res == Appended(op, model[key], duplicate=True)
                else:
                    logs[op].append((sender, cid))
                    model[key] = len(logs[op]) + 1
                    assert res == Appended(op, model[key], duplicate=False)
        for op, log in logs.items():
            got = store.read_log(op, 1, 10_000)
            assert [(e.seq, e.sender, e.payload) for e in got] == [
                (seq, sender, f"{sender}{cid}".encode())
                for seq, (sender, cid) in enumerate(log, start=2)]
    finally:
        store.close()


def test_sqlite_log_reader_reads_what_the_store_wrote_and_cannot_write(
        store: SQLiteStore, path: Path) -> None:
    """LogReader (a lesson's view of the hub's database, from another process) sees the
    entries the store committed, as the store reads them, and opens the file read-only."""
    store.apply([_msg("OP-A", "JM", 1, b"one"), _msg("OP-A", "JM", 2, b"two")])
    reader = LogReader(path)
    try:
        assert reader.read_log("OP-A", 0) == store.read_log("OP-A", 0, 1000)
        assert [e.payload for e in reader.read_log("OP-A", 1)] == [b"one", b"two"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._conn.execute("DELETE FROM segments")
    finally:
        reader.close()


def test_sqlite_log_reader_of_a_missing_file_is_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        LogReader(tmp_path / "nowhere.db").read_log("OP-A", 0)
