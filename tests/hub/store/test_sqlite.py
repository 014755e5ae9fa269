"""Tests of hub.store.sqlite.SQLiteStore on a temporary file: seqs, idempotency, reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.protocol.errors import StoreError
from hub.protocol.frames import KIND_COMMIT, KIND_MESSAGE
from hub.store.base import (
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
from hub.store.sqlite import SQLiteStore

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
