"""The scale test of docs/performance.md ("Scale: 300 agencies"): its scenario is current
and checks, a commit that seals keys to 300 members fits the hub's frames, the replay's
agents verify each signature once between them (SignatureMemo), and a replay collects
garbage at the hub's thresholds."""

from __future__ import annotations

import gc
import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.replay.engine import GC_THRESHOLDS, Replay, fewer_collections
from client.replay.scenario import load
from opshub.cli import main
from opshub.replay import run_replay
from protocol import codec
from protocol import frames as f
from protocol.credentials import raw_public
from protocol.signatures import SignatureMemo

ROOT = Path(__file__).resolve().parents[3]
SCALE = ROOT / "tests" / "data" / "scale-300.yaml"
MINI = ROOT / "tests" / "data" / "mini-scenario.yaml"
#: what one member adds to a commit with the hybrid KEM: an X-Wing ciphertext (1,120
#: bytes), the sealed secret (48), the key package id (32) and the unit (~20)
SEAL_BYTES = 1220


def _script() -> ModuleType:
    path = ROOT / "scripts" / "make-scale-scenario"
    loader = importlib.machinery.SourceFileLoader("make_scale_scenario", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_scale_scenario_is_what_the_script_writes() -> None:
    """tests/data/scale-300.yaml is current: scripts/make-scale-scenario would write the
    same bytes from seeds/cocair-v.yaml (else run it again)."""
    assert _script().build() == SCALE.read_text()


def test_scale_scenario_has_300_participants_from_67_countries(capsys) -> None:
    """The scale scenario passes `opshub scenario check` with 300 participants whose
    national units come from 67 countries, COCAIR V's OCU and desks among them."""
    assert main(["scenario", "check", str(SCALE)]) == 0
    assert ": ok (300 participants" in capsys.readouterr().out
    scenario = load(SCALE)
    units = [p for p in scenario.participants.values() if p.role == "unit"]
    assert len({p.country for p in units}) == 67
    assert {"OCU-WCO", "INTERPOL-DESK", "RILO-WA"} <= set(scenario.participants)


def test_scale_script_keeps_messages_per_participant() -> None:
    """By default the script scales COCAIR V's 8,000 messages for 38 participants to 300
    (63,000), and the `messages` figure follows; --messages sets another budget."""
    script = _script()
    assert "  messages: 63000\n" in script.build()
    assert "  messages: 8000\n" in script.build(8000)


def test_codec_commit_sealing_keys_to_300_members_decodes() -> None:
    """A commit that seals the epoch's keys to 300 members (~360 KB with the hybrid KEM,
    over max_payload) is within the hub's limits: only the frame bounds it."""
    statement = bytes(300 * SEAL_BYTES)
    assert len(statement) > codec.DEFAULT_LIMITS.max_payload
    frame = f.Commit(rid=1, statement=statement, signature=b"s" * 64)
    assert codec.decode(codec.encode(frame)) == frame


def _signed(data: bytes) -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    return raw_public(key.public_key()), key.sign(data)


def test_signature_memo_verifies_the_same_signature_once() -> None:
    """A signature verified through the memo is answered from it the next time, for any
    agent that asks with the same key and bytes."""
    memo = SignatureMemo()
    raw, sig = _signed(b"message")
    memo.key(raw).verify(sig, b"message")
    memo.key(raw).verify(sig, b"message")
    assert (memo.verified, memo.remembered) == (1, 1)


def test_signature_memo_checks_other_bytes_under_a_remembered_signature() -> None:
    """A remembered signature does not vouch for other bytes: they are verified, and
    fail."""
    memo = SignatureMemo()
    raw, sig = _signed(b"message")
    memo.key(raw).verify(sig, b"message")
    with pytest.raises(InvalidSignature):
        memo.key(raw).verify(sig, b"messagf")
    assert memo.remembered == 0


def test_signature_memo_does_not_remember_failures() -> None:
    """A signature that fails is checked again, and fails again, every time."""
    memo = SignatureMemo()
    raw, _ = _signed(b"message")
    for _ in range(2):
        with pytest.raises(InvalidSignature):
            memo.key(raw).verify(b"\x00" * 64, b"message")
    assert (memo.verified, memo.remembered) == (0, 0)


def test_signature_memo_forgets_the_oldest_beyond_its_size() -> None:
    """The memo holds at most ``size`` signatures: the oldest is verified again."""
    memo = SignatureMemo(size=2)
    signed = [(data, *_signed(data)) for data in (b"a", b"b", b"c")]
    for data, raw, sig in signed:
        memo.key(raw).verify(sig, data)
    data, raw, sig = signed[0]
    memo.key(raw).verify(sig, data)
    assert (memo.verified, memo.remembered) == (4, 0)


async def test_replay_agents_verify_each_signature_once(tmp_path: Path) -> None:
    """The replay's agents share one SignatureMemo: each message, however many units read
    it, and each participant's credential in the channel's first commit, which every
    member checks, is verified for real once."""
    seen: list[Replay] = []
    report = await run_replay(str(MINI), out=tmp_path / "out", progress=lambda _: None,
                              hook=seen.append)
    assert [c["metric"] for c in report["checks"] if not c["ok"]] == []
    replay = seen[0]
    memo = replay.signatures
    assert all(a.agent.member.signatures is memo for a in replay.agents.values())
    assert memo.verified == report["messages"] + len(replay.agents)
    assert memo.remembered > 0


async def test_replay_reports_how_often_its_agents_decrypted(tmp_path: Path) -> None:
    """report.json counts the messages the agents decrypted between them (reads/s is the
    rate that holds as operations grow: docs/performance.md) and the agents' peak memory.
    The OCU reads every message but its own, and each unit at least what the OCU sent."""
    seen: list[Replay] = []
    report = await run_replay(str(MINI), out=tmp_path / "out", progress=lambda _: None,
                              hook=seen.append)
    agents = seen[0].agents
    assert report["decrypted"] == sum(a.agent.decrypted for a in agents.values())
    ocu = seen[0].scenario.ocu
    by_ocu = sum(1 for m in seen[0].log if m["sender"]["unit"] == ocu)
    assert agents[ocu].agent.decrypted == report["messages"] - by_ocu
    assert report["decrypted"] > report["messages"]
    assert report["agents_max_rss_mb"] > 0


def test_fewer_collections_holds_until_the_last_replay_ends() -> None:
    """The GC thresholds are the replay's from the first replay that starts until the
    last that ends (nested), then what they were before."""
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    with fewer_collections():
        assert gc.get_threshold() == GC_THRESHOLDS
        with fewer_collections():
            assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold() == before


async def test_replay_runs_at_the_replay_gc_thresholds(tmp_path: Path) -> None:
    """While the agents run, garbage is collected at GC_THRESHOLDS; afterwards at the
    process's own thresholds again."""
    before = gc.get_threshold()
    during: list[tuple[int, ...]] = []

    def watch(replay: Replay) -> None:
        async def on_window(_window: int) -> None:
            during.append(gc.get_threshold())
        replay.on_window = on_window

    await run_replay(str(MINI), out=tmp_path / "out", progress=lambda _: None, hook=watch)
    assert during
    assert set(during) == {GC_THRESHOLDS}
    assert gc.get_threshold() == before
