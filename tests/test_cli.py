"""The ``opshub`` command: keys, serve (with clean SIGTERM shutdown), demo, benchmarks."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from client.connection import TIMEOUT, AgentConnection
from client.identity import KeyFolder
from client.membership import OperationAdmin
from opshub.cli import main
from tests.conftest import stored_seqs


def test_cli_keys_writes_authority_roster_and_private_units(tmp_path: Path, capsys):
    """`opshub keys` writes a verifiable roster and 0600 private files per unit."""
    out = tmp_path / "keys"
    rc = main(["keys", "--out", str(out), "--unit", "FR-DOUANE,FR,customs",
               "--unit", "OCU-1,BE,WCO,ocu"])
    assert rc == 0
    folder = KeyFolder(out)
    roster = folder.roster()
    assert [s.credential.unit for s in roster] == ["FR-DOUANE", "OCU-1"]
    assert (out / "units" / "FR-DOUANE.json").stat().st_mode & 0o777 == 0o600
    assert (out / "authority.key").stat().st_mode & 0o777 == 0o600
    assert folder.identity("OCU-1").credential.role == "ocu"
    assert "FR-DOUANE" in capsys.readouterr().out
    # refusing to overwrite an authority by accident
    assert main(["keys", "--out", str(out)]) == 2


def test_cli_keys_rejects_bad_country(tmp_path: Path, capsys):
    """A unit with a country that is not ISO alpha-2 is refused with a clear message."""
    rc = main(["keys", "--out", str(tmp_path / "k"), "--unit", "X,France,customs"])
    assert rc == 2
    assert "ISO 3166-1 alpha-2" in capsys.readouterr().err


def test_cli_serve_sigterm_keeps_every_acknowledged_message(tmp_path: Path):
    """`opshub serve` stops cleanly on SIGTERM with every acknowledged message on disk."""
    keys = tmp_path / "keys"
    assert main(["keys", "--out", str(keys)]) == 0
    db = tmp_path / "hub.db"
    ready = tmp_path / "ready.json"
    with subprocess.Popen(
        [sys.executable, "-m", "opshub", "serve", "--port", "0", "--db", str(db),
         "--keys", str(keys), "--ready-file", str(ready)], stdout=subprocess.PIPE,
            text=True) as proc:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()  # printed after the ready file
        url = json.loads(ready.read_text())["url"]
        acked = asyncio.run(_publish_until_stopped(url, KeyFolder(keys), proc))
        rc = proc.wait(timeout=TIMEOUT * 3)
        assert rc == 0
        assert "stopped cleanly" in proc.stdout.read()
    stored = set(stored_seqs(db, "OP-T"))
    assert len(acked) > 0
    assert set(acked) <= stored


async def _publish_until_stopped(url: str, keys: KeyFolder, proc: subprocess.Popen[str]
                                 ) -> list[int]:
    ocu = AgentConnection(url, keys.identity("OCU"), reconnect=False)
    await ocu.connect()
    acked: list[int] = []
    try:
        admin = OperationAdmin(keys.identity("OCU"), "OP-T", now=time.time)
        await admin.send(ocu, admin.create("test", [keys.identity("JM-CUSTOMS").signed]))
        futs = []
        for i in range(2000):
            fut = ocu.publish_nowait("OP-T", b"m%d" % i)
            fut.add_done_callback(lambda f: acked.append(f.result()) if not f.exception()
                                  else None)
            futs.append(fut)
            if i == 1000:
                await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
        await asyncio.wait(futs, timeout=3)
    finally:
        await ocu.close()
    return acked


def test_cli_demo_runs_and_reports(tmp_path: Path):
    """`opshub demo` runs the whole exchange and says the hub stopped cleanly."""
    proc = subprocess.run([sys.executable, "-m", "opshub", "demo", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "caught up" in proc.stdout
    assert "stopped cleanly" in proc.stdout
    assert re.search(r"scanned: 0 of \d+ message texts found in plaintext", proc.stdout)
    assert re.findall(r"rejected (\d+)", proc.stdout) == ["0"] * 6
    assert "ERROR" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "hub.db").exists()


def test_cli_bench_crypto_reports_rates_and_rekey(tmp_path: Path):
    """A tiny `opshub bench crypto` run reports every figure the crypto issue asks for."""
    out = tmp_path / "crypto.json"
    proc = subprocess.run(
        [sys.executable, "-m", "opshub", "bench", "crypto", "--messages", "200", "--runs", "1",
         "--members", "5", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for key in ("ed25519_verify_per_s", "encrypt_sign_per_s", "verify_decrypt_per_s",
                "rekey_ms", "commit_open_ms"):
        assert result[key] > 0, key
    assert 0 < result["receive_vs_verify"] < 1.5
    assert result["options"]["kem"] == "MLKEM768_X25519"


def test_cli_bench_hub_reports_required_fields(tmp_path: Path):
    """A tiny `opshub bench hub` run writes JSON with every required field and no loss."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "opshub", "bench", "hub", "--subscribers", "3",
         "--duration", "1", "--warmup", "0.2", "--sub-procs", "1", "--window", "256",
         "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for key in ("msgs_in_per_s", "deliveries_per_s", "hub_cpu_s", "hub_peak_rss_mb"):
        assert result[key] > 0, key
    assert set(result["latency_ms"]) >= {"p50", "p90", "p99", "p999"}
    assert result["lost"] == 0
    assert result["gaps"] == 0
    assert result["deliveries_received"] == result["deliveries_expected"]


def test_cli_key_folder_accepts_a_plain_string(tmp_path: Path):
    """KeyFolder("keys") works as the README shows, not only with a Path."""
    assert main(["keys", "--out", str(tmp_path / "k")]) == 0
    assert KeyFolder(str(tmp_path / "k")).identity("OCU").unit == "OCU"


def test_cli_serve_refuses_a_bad_config_file(tmp_path: Path, capsys):
    """`opshub serve --config` with an unknown setting exits 2 and names it."""
    assert main(["keys", "--out", str(tmp_path / "keys")]) == 0
    bad = tmp_path / "hub.toml"
    bad.write_text("max_outbound = 5\n")
    rc = main(["serve", "--keys", str(tmp_path / "keys"), "--config", str(bad),
               "--db", str(tmp_path / "x.db")])
    assert rc == 2
    assert "max_outbound" in capsys.readouterr().err
