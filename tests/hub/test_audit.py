"""The hub's audit trail (hub/audit.py, hub/audit_file.py, ``opshub audit``): real SQLite
files in tmp_path, tampered with as someone holding the file but not the key would, and a
real hub on 127.0.0.1 whose enrollments, statements, claims and failed handshakes land in
it, with no plaintext."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from client.connection import handshake
from client.e2ee.suite import CLASSIC
from client.identity import UnitSpec
from client.secure import SecureAgent
from hub.app import RunningHub
from hub.audit import AuditTrail, default_audit_path
from hub.audit_file import GENESIS, Entry, entries, open_readonly, verify
from opshub.cli import main
from protocol.errors import AuthError, StoreError
from tests.conftest import Keys

MARKERS = [b"MARKER-audit-cocaine-212kg", b"MARKER-audit-vessel-SEA-LARK",
           b"MARKER-audit-passport-Q42"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "hub.db.audit"


def _trail(path: Path, **kw: object) -> AuditTrail:
    kw.setdefault("flush_interval", 3600.0)  # the tests flush by hand
    return AuditTrail(path, **kw)  # type: ignore[arg-type]


def _honest(path: Path, n: int = 5) -> None:
    """An audit file of ``n`` entries of the kinds the hub writes, closed."""
    trail = _trail(path)
    trail.record("enrollment", unit="JM-CUSTOMS", via="directory", country="JM")
    trail.record("operation_created", unit="OCU-BB", op="OP-A", epoch=0, seq=1,
                 added=["JM-CUSTOMS"], removed=[])
    for i in range(n - 2):
        trail.record("kp_claim", unit="OCU-BB", op="OP-A", claimed=[f"U{i}"], missing=[])
    trail.close()


def _entries(path: Path, **kw: object) -> list[Entry]:
    with contextlib.closing(open_readonly(path)) as conn:
        return entries(conn, **kw)  # type: ignore[arg-type]


def _tamper(path: Path, *sql: str) -> None:
    with sqlite3.connect(path) as conn:
        for statement in sql:
            conn.execute(statement)


def _verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", str(path), *extra])
    return code, capsys.readouterr().out.strip()


# --- the chain ------------------------------------------------------------------------


def test_audit_verify_passes_on_an_honest_file(path, capsys):
    """An untouched file verifies: exit 0 and "N entries, chain intact, head <hash>"."""
    _honest(path, 5)
    code, out = _verify(path, capsys)
    head = verify(path, path.with_name(path.name + ".key")).head
    assert (code, out) == (0, f"5 entries, chain intact, head {head}")
    assert head != GENESIS


def test_audit_triggers_refuse_update_and_delete(path):
    """The table is append-only at the SQL level: UPDATE and DELETE raise."""
    _honest(path)
    for sql in ("UPDATE audit SET unit = 'X' WHERE seq = 2", "DELETE FROM audit WHERE seq = 5"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            _tamper(path, sql)
    assert verify(path, path.with_name(path.name + ".key")).problem is None


def test_audit_verify_finds_an_entry_edited_after_the_trigger_is_dropped(path, capsys):
    """An UPDATE done once the trigger is gone breaks that entry's hash: exit 1, seq 2."""
    _honest(path)
    _tamper(path, "DROP TRIGGER audit_no_update",
            "UPDATE audit SET unit = 'TT-POLICE' WHERE seq = 2")
    code, out = _verify(path, capsys)
    assert code == 1
    assert "edited: seq 2 " in out


def test_audit_verify_finds_a_deleted_middle_entry(path, capsys):
    """A row deleted from the middle is named as missing."""
    _honest(path)
    _tamper(path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 3")
    code, out = _verify(path, capsys)
    assert code == 1
    assert "missing: seq 3 " in out


def test_audit_verify_finds_a_deleted_last_entry(path, capsys):
    """The last row deleted leaves a chain that is whole but shorter than its anchor."""
    _honest(path)
    _tamper(path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 5")
    code, out = _verify(path, capsys)
    assert code == 1
    assert "truncated: the file ends at seq 4 but its anchor names 5 entries" in out


def test_audit_verify_finds_entries_rehashed_with_plain_sha256(path, capsys):
    """An edit whose hash, and every later one's, is recomputed with plain SHA-256 (all
    one can do without the key) is still found, at the edited entry."""
    _honest(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        rows = conn.execute("SELECT seq, at, kind, unit, op, source, detail, prev FROM audit "
                            "ORDER BY seq").fetchall()
        prev = rows[2][7]
        for seq, at, kind, unit, op, source, detail, _ in rows[2:]:
            if seq == 3:
                detail = json.dumps({"claimed": ["DM-CUSTOMS"], "missing": []})
            text = json.dumps([prev, seq, at, kind, unit, op, source, detail],
                              separators=(",", ":"))
            digest = hashlib.sha256(text.encode()).hexdigest()
            conn.execute("UPDATE audit SET detail = ?, prev = ?, hash = ? WHERE seq = ?",
                         (detail, prev, digest, seq))
            prev = digest
    code, out = _verify(path, capsys)
    assert code == 1
    assert "edited: seq 3 does not match its hash under the key" in out


def test_audit_verify_finds_a_key_mismatch(path, tmp_path, capsys):
    """Another trail's key is named as a key mismatch, not as edited entries."""
    _honest(path)
    other = tmp_path / "other.audit"
    _honest(other)
    code, out = _verify(path, capsys, "--key", str(other.with_name(other.name + ".key")))
    assert code == 1
    assert "key mismatch" in out


def test_audit_key_file_is_readable_by_its_owner_only(path):
    """The key and anchor file is made 0600 on first start."""
    _honest(path)
    mode = stat.S_IMODE(path.with_name(path.name + ".key").stat().st_mode)
    assert mode == 0o600


def test_audit_reopened_trail_continues_the_chain(path):
    """A restarted hub appends after the last entry; the whole file verifies."""
    _honest(path, 3)
    trail = _trail(path)
    trail.record("enrollment", unit="DM-CUSTOMS", via="handshake")
    trail.close()
    verdict = verify(path, path.with_name(path.name + ".key"))
    assert (verdict.count, verdict.problem) == (4, None)


def test_audit_refuses_to_append_to_a_file_shorter_than_its_anchor(path):
    """A file whose last entries were cut is not reopened: new entries would hide the cut."""
    _honest(path)
    _tamper(path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq >= 4")
    with pytest.raises(StoreError, match="ends at seq 3, the anchor names 5 entries"):
        _trail(path)


def test_audit_file_has_one_writer_at_a_time(path):
    """A second trail on a file another has open is refused (both would number entries
    from the same seq); once the first is closed, it opens."""
    first = _trail(path)
    with pytest.raises(StoreError, match="open in another hub"):
        _trail(path)
    first.close()
    _trail(path).close()


def test_audit_default_file_is_beside_the_database(tmp_path):
    """``<db>.audit``: one audit file per hub node, next to its database."""
    assert default_audit_path(tmp_path / "opshub.db") == tmp_path / "opshub.db.audit"


# --- batching and rate bounds -----------------------------------------------------------


def test_audit_record_writes_nothing_until_the_batch(path):
    """``record`` keeps entries in memory; the file gets them in the next batch."""
    trail = _trail(path)
    trail.record("enrollment", unit="JM-CUSTOMS", via="directory")
    assert _entries(path) == []
    trail.flush()
    assert [e.kind for e in _entries(path)] == ["enrollment"]
    trail.close()


def test_audit_auth_failures_are_bounded_per_source(path):
    """Past ``per_source`` failures a minute from one address, one ``_suppressed`` entry
    counts the rest when the window ends; another address keeps its own allowance."""
    clock = Clock()
    trail = _trail(path, now=clock, per_source=5, window=60.0)
    for _ in range(500):
        trail.record("auth_failure", source="192.0.2.7", code="bad_signature", transport="ws")
    for _ in range(3):
        trail.record("auth_failure", source="192.0.2.8", code="unknown_unit", transport="ws")
    trail.flush()
    assert [e.source for e in _entries(path)] == ["192.0.2.7"] * 5 + ["192.0.2.8"] * 3
    clock.t += 61
    trail.flush()
    trail.close()
    [summary] = _entries(path, kind="auth_failure_suppressed")
    assert summary.source == "192.0.2.7"
    assert json.loads(summary.detail) == {"count": 495, "since": 1_800_000_000_000,
                                          "codes": ["bad_signature"]}


def test_audit_sources_beyond_the_limit_share_one_window(path):
    """Windows for more sources than ``max_sources`` are not opened: the rest share one,
    so an attacker's many addresses cost bounded memory and bounded entries."""
    trail = _trail(path, now=Clock(), per_source=2, max_sources=4)
    for i in range(100):
        trail.record("auth_failure", source=f"198.51.100.{i}", code="bad_credential")
    trail.close()
    failures = _entries(path, kind="auth_failure")
    [shared] = _entries(path, kind="auth_failure_suppressed")
    assert len(failures) == 4 * 1 + 2  # one each from 4 sources, then two of the shared
    assert (shared.source, json.loads(shared.detail)["count"]) == ("*", 94)


def test_audit_entries_past_max_pending_are_counted_not_kept(path):
    """Memory stays bounded if the writer cannot keep up: entries past ``max_pending``
    are dropped and one ``audit_dropped`` entry counts them."""
    trail = _trail(path, max_pending=3)
    for i in range(5):
        trail.record("enrollment", unit=f"U-{i}", via="directory")
    trail.close()
    found = _entries(path)
    assert [e.unit for e in found[:3]] == ["U-0", "U-1", "U-2"]
    assert (found[3].kind, json.loads(found[3].detail)) == ("audit_dropped", {"count": 2})


# --- a real hub -------------------------------------------------------------------------


@pytest.fixture
async def audited(keys: Keys, db_path: Path, path: Path
                  ) -> AsyncIterator[tuple[RunningHub, AuditTrail]]:
    """A hub on 127.0.0.1 writing its audit trail to ``path``, roster preloaded."""
    running = RunningHub(keys.config(db_path, audit_db=path))
    trail = running.hub.broker.audit
    assert isinstance(trail, AuditTrail)
    await running.hub.open()
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running:
        yield running, trail


async def test_audit_real_hub_records_what_happened_and_no_plaintext(audited, keys, path,
                                                                     capsys):
    """Over a real hub: the roster's enrollments, an operation created, a unit added and
    one removed, the admin's key-package claims and a refused handshake are entries; the
    encrypted traffic's plaintext is nowhere in the audit files; the chain verifies."""
    running, trail = audited
    agents: list[SecureAgent] = []

    async def start(unit: str) -> SecureAgent:
        agent = SecureAgent(running.url, keys[unit], [keys.authority.public_key], suite=CLASSIC)
        await agent.start()
        agents.append(agent)
        return agent

    try:
        ocu, jm, tt = await start("OCU-BB"), await start("JM-CUSTOMS"), await start("TT-POLICE")
        await ocu.create_operation("OP-AUDIT", "Operation Audit",
                                   [keys[u].signed for u in ("JM-CUSTOMS", "TT-POLICE")])
        await jm.wait_for_epoch("OP-AUDIT", 0)
        await tt.wait_for_epoch("OP-AUDIT", 0)
        await jm.publish("OP-AUDIT", MARKERS[0])
        assert (await tt.next_message()).content == MARKERS[0]
        dm = await start("DM-CUSTOMS")
        await ocu.change("OP-AUDIT", add=[keys["DM-CUSTOMS"].signed], remove=["TT-POLICE"])
        await dm.wait_for_epoch("OP-AUDIT", 1)
        await dm.publish("OP-AUDIT", MARKERS[1])
        assert (await jm.next_message()).content == MARKERS[1]
        await ocu.publish("OP-AUDIT", MARKERS[2])
        assert (await dm.next_message()).content == MARKERS[2]
    finally:
        for agent in agents:
            await agent.close()
    ghost = keys.authority.enroll(UnitSpec("XX-GHOST", "XX", "customs"), now=keys.now - 60)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(running.url) as ws:
            with pytest.raises(AuthError):
                await handshake(ws, ghost)
        async with http.get(f"{running.http}/v1/directory",
                            headers={"Authorization": 'Opshub-Ed25519 unit="XX-GHOST", '
                                                      'time="1", signature="AAAA"'}) as resp:
            assert resp.status == 401
    await running.stop()
    trail.close()

    found = _entries(path)
    kinds = {e.kind for e in found}
    assert {"enrollment", "operation_created", "statement", "kp_claim",
            "auth_failure"} <= kinds
    assert {e.unit for e in found if e.kind == "enrollment"} == set(keys.units)
    [created] = [e for e in found if e.kind == "operation_created"]
    assert (created.unit, created.op) == ("OCU-BB", "OP-AUDIT")
    assert json.loads(created.detail)["added"] == ["JM-CUSTOMS", "TT-POLICE"]
    [change] = [json.loads(e.detail) for e in found if e.kind == "statement"]
    assert (change["epoch"], change["added"], change["removed"]) == (
        1, ["DM-CUSTOMS"], ["TT-POLICE"])
    assert all(e.unit == "OCU-BB" for e in found if e.kind == "kp_claim")
    ws_refused, http_refused = [e for e in found if e.kind == "auth_failure"]
    assert (ws_refused.unit, ws_refused.source) == ("XX-GHOST", "127.0.0.1")
    assert json.loads(ws_refused.detail) == {"code": "unknown_unit", "transport": "ws"}
    assert (http_refused.unit, http_refused.source) == ("XX-GHOST", "127.0.0.1")
    assert json.loads(http_refused.detail) == {"code": "stale_request", "transport": "http"}

    written = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for marker in MARKERS:
        assert marker not in written
    code, out = _verify(path, capsys)
    assert (code, out.split(",")[0]) == (0, f"{len(found)} entries")
