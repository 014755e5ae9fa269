"""``opshub load`` over TLS: the started hub with a certificate of a fresh CA (``--tls``), or
a running hub at a wss:// URL with its CA (``--tls-ca``); the load processes' agents, raw
subscribers and SecureAgents all go over TLS, and every delivery arrives; the /metrics
samples come from the hub's metrics listener (plain http, on 127.0.0.1); the flags are
refused where they would do nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.identity import Authority, KeyFolder
from opshub.cli import build_parser
from opshub.hubprocess import HubProcess
from opshub.load.command import options
from opshub.load.runner import run_load
from opshub.load.spec import LoadOptions, Shape, parse_rate
from opshub.tls import TlsFiles, write_tls_folder
from protocol.errors import UsageError

SETTINGS: dict[str, Any] = {"duration": 1.5, "warmup": 0.5, "sub_procs": 1,
                            "drain_timeout": 20.0}


def _complete(result: dict[str, Any]) -> None:
    d = result["delivery"]
    assert d["complete"], d
    assert (d["lost"], d["gaps"], d["duplicates"]) == (0, 0, 0), d
    assert d["received"] == d["expected"] > 0, d
    assert result["errors"]["total"] == 0, result["errors"]


def test_load_started_hub_over_tls(capsys) -> None:
    """``tls``: the run's own hub serves wss:// and https://; publishers and raw
    subscribers reach it, every delivery arrives, and the /metrics samples come in from
    its metrics listener."""
    result = run_load(LoadOptions(shapes=(Shape(subscribers=3, rate=None, window=16),),
                                  tls=True, **SETTINGS))
    _complete(result)
    assert result["hub"]["metrics_failures"] == 0
    assert result["hub"]["connections_peak"] == 4  # the samples came in
    assert result["options"]["tls"] is True


@pytest.fixture(scope="module")
def tls_served(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[str, Path, Path, str]]:
    """A hub in a child process serving TLS: its URL, key folder, CA file and metrics
    listener."""
    root = tmp_path_factory.mktemp("tls-served")
    KeyFolder(root / "keys").write(Authority.generate(), [])
    files: TlsFiles = write_tls_folder(root / "tls")
    with HubProcess(root / "keys", root / "hub.db", tls=files) as hub:
        yield hub.url, root / "keys", files.ca, hub.metrics


def test_load_e2ee_against_a_running_wss_hub(
        tls_served: tuple[str, Path, Path, str]) -> None:
    """``--hub wss://... --tls-ca``: SecureAgents in the load processes create the channel,
    encrypt, decrypt and verify over TLS; everything arrives, and the hub's /metrics (plain
    http, ``--metrics``) is sampled throughout."""
    url, keys, ca, metrics = tls_served
    result = run_load(LoadOptions(shapes=(Shape(subscribers=2, rate=parse_rate("50")),),
                                  hub_url=url, metrics=(metrics,), keys=keys, tls_ca=ca,
                                  e2ee=True, **SETTINGS))
    _complete(result)
    assert result["hub"]["metrics_failures"] == 0


@pytest.mark.parametrize(("argv", "why"), [
    (["--tls-ca", "ca.pem"], "--tls-ca goes with --hub wss://"),
    (["--hub", "wss://127.0.0.1:1/v1/ws", "--keys", "keys", "--tls"],
     "--tls starts the run's own hub over TLS"),
])
def test_load_tls_flags_refused_where_they_do_nothing(argv: list[str], why: str) -> None:
    """--tls-ca without a running hub, and --tls with one, are refused naming the flag."""
    args = build_parser().parse_args(["load", *argv])
    with pytest.raises(UsageError, match=why):
        options(args)
