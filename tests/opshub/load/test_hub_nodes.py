"""`opshub load` over several hub URLs: the units are spread over them round robin across
the load processes, and the hub's figures are every node's added up, read from each node's
metrics listener (--metrics, by default each hub URL's port + 1). Only SQLite hubs
exist here, so the end-to-end run reaches one running hub at two URLs (127.0.0.1 and
localhost)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from opshub.cli import build_parser
from opshub.load.command import options
from opshub.load.plan import Assignment, SubscriberSpec
from opshub.load.processes import spread
from opshub.load.target import add_up, metrics_urls
from protocol.errors import UsageError
from tests.opshub.load.conftest import ServedHub
from tests.opshub.load.test_cli_load import SMALL, load

A, B = "ws://a:1/v1/ws", "ws://b:2/v1/ws"


def test_spread_rotates_the_urls_unit_by_unit_across_processes() -> None:
    """The k-th unit of the assignments (a unit in two of them counted once) first tries
    URL k mod n and then the others."""
    subs = [SubscriberSpec(f"S{i}", "OP") for i in range(3)]
    assignments = [Assignment(0, "subscribers", subscribers=(subs[0], subs[1])),
                   Assignment(1, "subscribers", subscribers=(subs[2], subs[0]))]
    assert spread([A, B], assignments) == {"S0": (A, B), "S1": (B, A), "S2": (A, B)}
    assert spread([A], assignments) == {"S0": (A,), "S1": (A,), "S2": (A,)}


def test_add_up_sums_the_nodes_but_the_largest_queue() -> None:
    """Counters, gauges, CPU and memory of the nodes are summed; the largest outbound
    queue stays the largest of any node."""
    one = {"cpu_s": 1.5, "rss_mb": 40.1, "connections": 3.0, "queue_bytes_max": 100.0}
    two = {"cpu_s": 0.5, "rss_mb": 20.2, "connections": 4.0, "queue_bytes_max": 700.0,
           "slow_consumers": 2.0}
    assert add_up([one, two]) == {"cpu_s": 2.0, "rss_mb": 60.3, "connections": 7.0,
                                  "queue_bytes_max": 700.0, "slow_consumers": 2.0}
    assert add_up([one]) == one


def test_metrics_urls_default_to_each_hub_port_plus_one() -> None:
    """Without --metrics, each node's /metrics is sampled at its hub URL's host and port
    + 1 over http://, wss:// hubs included (the listener is plain http)."""
    assert metrics_urls(None, [A, "wss://h.example:8765/v1/ws", "ws://[::1]:9/v1/ws"]) == [
        "http://a:2", "http://h.example:8766", "http://[::1]:10"]


def test_cli_load_metrics_one_per_hub_in_order() -> None:
    """--metrics, comma-separated or repeated, gives each --hub node's metrics listener in
    the same order (a trailing /metrics is the same URL); without it, the defaults."""
    args = build_parser().parse_args(["load", "--hub", f"{A},{B}", "--keys", "keys",
                                      "--metrics", "http://m:7/metrics", "--metrics",
                                      "https://n:8"])
    assert options(args).metrics == ("http://m:7", "https://n:8")
    args = build_parser().parse_args(["load", "--hub", f"{A},{B}", "--keys", "keys"])
    assert options(args).metrics == ("http://a:2", "http://b:3")


@pytest.mark.parametrize(("argv", "why"), [
    (["--metrics", "http://m:7"], "--metrics goes with --hub"),
    (["--hub", f"{A},{B}", "--keys", "keys", "--metrics", "http://m:7"],
     "--metrics names 1 URL(s) for 2 hub node(s)"),
    (["--hub", A, "--keys", "keys", "--metrics", "ws://m:7"],
     "--metrics 'ws://m:7' is not the URL of a hub's metrics listener"),
    (["--hub", A, "--keys", "keys", "--metrics", "http://m"],
     "--metrics 'http://m' is not the URL"),
])
def test_cli_load_metrics_refused(argv: list[str], why: str) -> None:
    """--metrics without --hub, with a count unlike the hubs', or with a URL that is not
    http(s)://HOST:PORT, is refused naming the option."""
    with pytest.raises(UsageError, match=re.escape(why)):
        options(build_parser().parse_args(["load", *argv]))


def test_cli_load_over_two_hub_urls(tmp_path: Path, served_hub: ServedHub) -> None:
    """`--hub URL1,URL2`: the run's units connect over both URLs, every delivery arrives,
    and the result names both hubs."""
    other = served_hub.url.replace("127.0.0.1", "localhost")
    done = load(*SMALL, "--hub", f"{served_hub.url},{other}", "--metrics",
                f"{served_hub.metrics},{served_hub.metrics}", "--keys",
                str(served_hub.keys), "--threshold", "errors==0", "--threshold", "lost==0",
                "--json", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["options"]["hub_url"] == [served_hub.url, other]
    assert result["delivery"]["received"] == result["delivery"]["expected"] > 0
    assert result["hub"]["metrics_failures"] == 0
