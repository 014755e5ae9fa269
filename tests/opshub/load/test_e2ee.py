"""``opshub load --e2ee`` against a real hub on 127.0.0.1 with real SecureAgents in the load
processes: everything decrypted and verified once, in order; keys rotated during a run
without loss; the hub's files hold no plaintext; the crypto's CPU reported; bad
combinations refused before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from opshub.cli import build_parser
from opshub.load.command import options
from opshub.load.e2ee_traffic import (
    FILLER_TEXT,
    MAX_CONTENT,
    MIN_CONTENT,
    Order,
    SenderOrder,
    ciphertext_size,
    content,
    read_content,
)
from opshub.load.runner import run_load
from opshub.load.spec import MAX_SIZE, LoadOptions, Shape, parse_rate, parse_size
from protocol.errors import UsageError
from tests.opshub.load.conftest import ServedHub


def _run(hub: ServedHub, shape: Shape, **kw: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"duration": 2.0, "warmup": 0.5, "sub_procs": 1,
                                "drain_timeout": 20.0, "e2ee": True, **kw}
    return run_load(LoadOptions(shapes=(shape,), hub_url=hub.url, metrics=(hub.metrics,),
                                keys=hub.keys, **settings))


def _complete(result: dict[str, Any]) -> None:
    d = result["delivery"]
    assert d["complete"], d
    assert (d["lost"], d["gaps"], d["duplicates"]) == (0, 0, 0), d
    assert d["received"] == d["expected"] > 0, d
    assert result["errors"]["total"] == 0, result["errors"]


def test_e2ee_open_loop_run_decrypts_everything_and_reports_crypto_cpu(
        served_hub: ServedHub) -> None:
    """Each of 3 subscribers and the operation's OCU decrypts and verifies every message
    of an open-loop run once, in order; the result holds the latency until then and the
    CPU of the hub, the load processes and the agents' crypto per message."""
    result = _run(served_hub, Shape(subscribers=3, rate=parse_rate("100")))
    _complete(result)
    assert result["messages"]["acked"] == 250  # 2.5 s at 100/s, warm-up included
    assert result["delivery"]["expected"] == 250 * 4  # 3 subscribers and the OCU
    assert result["latency_ms"]["count"] == 200 * 4  # the measured 2 s
    cpu = result["cpu"]
    crypto = cpu["crypto"]
    assert crypto["encrypt"]["count"] == 250, crypto
    assert crypto["decrypt"]["count"] == 1000, crypto
    assert 0 < crypto["encrypt"]["ms_each"] < 50, crypto
    assert 0 < crypto["decrypt"]["ms_each"] < 50, crypto
    processes = cpu["load_processes"]
    assert processes["publishers"]["sent"] == 250, processes
    assert processes["subscribers"]["received"] == 1000, processes
    assert all(g["cpu_s"] > 0 and g["ms_per_message"] > 0 for g in processes.values())
    assert cpu["hub"]["ms_per_message"] > 0, cpu["hub"]
    assert cpu["rotations"] == 0  # 10,000 messages an epoch by default


def test_e2ee_keys_rotate_during_a_run_and_nothing_is_lost(served_hub: ServedHub) -> None:
    """With --rotate-messages 60 the OCU commits new keys several times while two
    publishers send 200/s; every message is still decrypted once by every reader, and no
    agent rejected anything."""
    result = _run(served_hub, Shape(publishers=2, subscribers=2, rate=parse_rate("100")),
                  rotate_messages=60)
    _complete(result)
    cpu = result["cpu"]
    assert cpu["rotations"] >= 3, cpu
    assert list(cpu["epochs"].values()) == [cpu["rotations"]]
    assert cpu["crypto"]["keys"]["count"] >= 3 * cpu["rotations"], cpu["crypto"]


def test_e2ee_hub_database_holds_no_plaintext(served_hub: ServedHub) -> None:
    """The text every message carries is nowhere in the hub's SQLite file or its WAL after
    an --e2ee run, while the operation's name (signed, not encrypted) is."""
    result = _run(served_hub, Shape(subscribers=1, rate=parse_rate("100"),
                                    size=parse_size("600-2000")), duration=1.0)
    _complete(result)
    db = served_hub.keys.parent / "hub.db"
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert f"load {result['operations'][0]}".encode() in stored
    assert FILLER_TEXT not in stored
    assert FILLER_TEXT[:24] not in stored


def test_e2ee_content_carries_the_stamp_and_counter_within_the_hub_limit() -> None:
    """A load message's plaintext reads back as its send times and counter, is at least
    their size, and at most what still fits the hub's max_payload once sealed."""
    assert read_content(content(1024, 11, 22, 33)) == (11, 22, 33)
    assert len(content(1024, 11, 22, 33)) == 1024
    assert len(content(1, 1, 2, 3)) == MIN_CONTENT
    assert len(content(MAX_SIZE, 1, 2, 3)) == MAX_CONTENT
    assert ciphertext_size(MAX_CONTENT) <= MAX_SIZE < ciphertext_size(MAX_CONTENT + 1)
    assert read_content(b"short") is None


def test_e2ee_sender_order_tells_gaps_and_duplicates() -> None:
    """Each sender's counters must come once each, in order: a skipped counter is a gap
    (and stays missing), one seen again is a duplicate."""
    order = SenderOrder()
    assert [order.take("A", n) for n in (0, 1, 3, 3, 2)] == [
        Order.IN_ORDER, Order.IN_ORDER, Order.GAP, Order.DUPLICATE, Order.DUPLICATE]
    assert order.take("B", 0) is Order.IN_ORDER
    assert order.missing({"A": 4, "B": 1, "C": 2}) == 1 + 0 + 2


@pytest.mark.parametrize(("args", "says"), [
    (["--directed", "0.2"], "--directed: --e2ee sends every message on the operation's"),
    (["--size", "16"], "--size: '16' is below 24 bytes"),
    (["--size", f"1024-{MAX_CONTENT + 1}"], f"is above {MAX_CONTENT} bytes"),
    (["--rotate-messages", "0"], "--rotate-messages: must be at least 1, got 0"),
])
def test_e2ee_refuses_what_it_cannot_send(args: list[str], says: str) -> None:
    """--e2ee with directed messages, or sizes outside what a load message and the hub's
    max_payload allow, is refused naming the option."""
    with pytest.raises(UsageError, match=says):
        options(build_parser().parse_args(["load", "--e2ee", *args]))


def test_e2ee_rotate_messages_needs_e2ee() -> None:
    """--rotate-messages alone is refused: only the OCU's SecureAgent rotates keys."""
    with pytest.raises(UsageError, match="--rotate-messages: keys are rotated by"):
        options(build_parser().parse_args(["load", "--rotate-messages", "100"]))
