"""`opshub replay` over TLS: against a running hub at a wss:// URL with the CA that signed
its certificate (``--tls-ca``), or over its own hub started with TLS (``--tls``), every
published figure is reproduced; a certificate the replay cannot verify stops it before any
message, with one line naming the URL and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.identity import Authority, KeyFolder
from hub.app import RunningHub
from opshub.cli import main
from opshub.hubprocess import HubProcess
from opshub.replay import run_replay
from opshub.tls import TlsFiles
from protocol.errors import UsageError
from tests.conftest import Keys

MINI = Path(__file__).parent.parent / "data" / "mini-scenario.yaml"


def _quiet(_line: str) -> None:
    pass


def _failed(report: dict[str, Any]) -> list[tuple[str, float]]:
    return [(c["metric"], c["observed"]) for c in report["checks"] if not c["ok"]]


async def test_replay_over_wss_against_a_running_hub(tmp_path: Path, tls_hub: RunningHub,
                                                     keys: Keys, tls_files: TlsFiles) -> None:
    """With the hub's wss:// URL and its CA the replay enrols its participants over https://
    and replays over wss://, reproducing every figure."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(keys.authority, [])
    report = await run_replay(str(MINI), out=tmp_path / "out", hub_url=tls_hub.url,
                              keys=folder, tls_ca=tls_files.ca, progress=_quiet)
    assert _failed(report) == []
    assert report["messages"] == 120


async def test_replay_own_hub_over_tls(tmp_path: Path) -> None:
    """``tls``: the replay's own hub serves wss:// with a certificate of a fresh CA, and
    the agents that trust it reproduce every figure."""
    lines: list[str] = []
    report = await run_replay(str(MINI), out=tmp_path / "out", tls=True,
                              progress=lines.append)
    assert _failed(report) == []
    assert any(" on hub wss://127.0.0.1:" in line for line in lines)


async def test_replay_tls_flags_go_with_the_right_hub(tmp_path: Path, tls_files: TlsFiles
                                                      ) -> None:
    """--tls-ca is for a running wss:// hub, --tls for the replay's own: each is refused
    where it would do nothing, before anything starts."""
    with pytest.raises(UsageError, match="--tls-ca goes with --hub wss://"):
        await run_replay(str(MINI), out=tmp_path / "out", tls_ca=tls_files.ca,
                         progress=_quiet)
    KeyFolder(tmp_path / "keys").write(Authority.generate(), [])
    with pytest.raises(UsageError, match="--tls starts the replay's own hub"):
        await run_replay(str(MINI), out=tmp_path / "out", hub_url="wss://127.0.0.1:1/v1/ws",
                         keys=tmp_path / "keys", tls=True, progress=_quiet)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def tls_hub_process(tmp_path: Path, tls_files: TlsFiles) -> Any:
    """A hub in a child process serving TLS, and the key folder of its authority."""
    folder = tmp_path / "hub-keys"
    KeyFolder(folder).write(Authority.generate(), [])
    with HubProcess(folder, tmp_path / "hub.db", tls=tls_files) as hub:
        yield hub, folder


def test_replay_cli_refuses_a_hub_certificate_it_cannot_verify(
        tmp_path: Path, tls_hub_process: Any, capsys) -> None:
    """`opshub replay --hub wss://...` without the hub's CA exits 2 with one line naming
    the URL and the reason (no traceback), before any report is written."""
    hub, folder = tls_hub_process
    assert main(["replay", str(MINI), "--hub", hub.url, "--keys", str(folder),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (f"opshub replay: TLS with {hub.url} failed: the hub's certificate does "
                   f"not verify (unable to get local issuer certificate); trust the CA that "
                   f"signed it (--tls-ca FILE)\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_replay_cocair_v_over_wss_reproduces_every_published_figure(
        tmp_path: Path, tls_hub_process: Any, tls_files: TlsFiles, capsys) -> None:
    """The replay of COCAIR V (8,000 messages, 38 agents) over wss:// against a hub
    serving TLS reproduces every published figure: `opshub replay cocair-v --hub
    wss://... --keys DIR --tls-ca ca.pem` exits 0."""
    hub, folder = tls_hub_process
    out = tmp_path / "o"
    assert main(["replay", "cocair-v", "--hub", hub.url, "--keys", str(folder),
                 "--tls-ca", str(tls_files.ca), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"on hub {hub.url}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["operation_id"] == "COCAIR-V"
    assert len(report["checks"]) == 12
    assert _failed(report) == []
    assert report["messages"] == 8000
    assert set(report["rejected"].values()) == {0}
