"""The stores' record of key-package claims (protocol.md 12.3): a claim with a cid is
answered once, also after a restart (SQLite) and when two hub nodes serve it at once
(JetStream). Driven through the store contract, no hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.store.jetstream import JetStreamStore
from hub.store.sqlite import SQLiteStore
from opshub.cluster import NatsCluster
from protocol.store import ClaimKeyPackages, KeyPackagesClaimed, PutKeyPackages

UNIT = "JM-CUSTOMS"
OP = "OP-A"
#: (kp_id, signed bytes, last_resort): the stores keep what the router verified, opaque
PACKAGES = tuple((bytes([n]) * 16, b"package-%d" % n, False) for n in range(4))


def _claim(cid: int | None, units: tuple[str, ...] = (UNIT,)) -> ClaimKeyPackages:
    return ClaimKeyPackages("OCU-BB", OP, units, cid)


def test_sqlite_claim_is_answered_once_also_after_a_restart(tmp_path: Path) -> None:
    """A claim's record is in the file: retried after the store reopened, it answers the
    first packages and takes nothing; a claim without a cid always takes the next one."""
    store = SQLiteStore(tmp_path / "hub.db")
    store.load()
    store.apply([PutKeyPackages(UNIT, PACKAGES)])
    [first] = store.apply([_claim(1, (UNIT, "TT-POLICE"))])
    assert first == KeyPackagesClaimed({UNIT: b"package-0"}, ("TT-POLICE",))
    store.close()
    store = SQLiteStore(tmp_path / "hub.db")
    store.load()
    try:
        [again] = store.apply([_claim(1, (UNIT,))])
        assert again == first._replace(duplicate=True)
        assert [r.packages for r in store.apply([_claim(None), _claim(None)])] == [
            {UNIT: b"package-1"}, {UNIT: b"package-2"}]
    finally:
        store.close()


def test_sqlite_claim_retried_in_the_same_batch_takes_one_package(tmp_path: Path) -> None:
    """Two claims with one key in one transaction (a retry that caught up with the first)
    take one package."""
    store = SQLiteStore(tmp_path / "hub.db")
    store.load()
    try:
        store.apply([PutKeyPackages(UNIT, PACKAGES)])
        first, again = store.apply([_claim(3), _claim(3)])
        assert (first.packages, again.packages) == ({UNIT: b"package-0"}, {UNIT: b"package-0"})
        assert store.apply([PutKeyPackages(UNIT, ())]) == [(3,)]
    finally:
        store.close()


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[JetStreamStore, JetStreamStore]]:
    """Two JetStream stores (two hub nodes' views) on one NATS server."""
    with NatsCluster(tmp_path / "nats", servers=1) as cluster:
        nodes = (JetStreamStore(cluster.urls), JetStreamStore(cluster.urls))
        for node in nodes:
            await node.open()
        try:
            yield nodes
        finally:
            for node in nodes:
                await node.close()


async def test_jetstream_claim_lost_race_answers_the_winners_packages(
        two_nodes: tuple[JetStreamStore, JetStreamStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Node B looks for the claim's record before node A has written it, takes a package,
    then loses the race to record: it answers A's package and puts its own back, so no
    package is lost and none is handed out twice."""
    a, b = two_nodes
    [stored] = await a.apply([PutKeyPackages(UNIT, PACKAGES)])
    assert stored == (4,)
    real = b.keys._recorded
    looked = 0

    async def too_early(subject: str) -> KeyPackagesClaimed | None:
        nonlocal looked
        looked += 1
        return None if looked == 1 else await real(subject)

    monkeypatch.setattr(b.keys, "_recorded", too_early)
    [won] = await a.apply([_claim(5)])
    [lost] = await b.apply([_claim(5)])
    assert won == KeyPackagesClaimed({UNIT: b"package-0"}, ())
    assert lost == won._replace(duplicate=True)
    handed = [won.packages[UNIT]]
    for cid in (6, 7, 8):
        [got] = await a.apply([_claim(cid)])
        assert isinstance(got, KeyPackagesClaimed)
        handed.append(got.packages[UNIT])
    assert sorted(handed) == sorted(body for _, body, _ in PACKAGES)
    [none_left] = await b.apply([_claim(9)])
    assert none_left == KeyPackagesClaimed({}, (UNIT,))
