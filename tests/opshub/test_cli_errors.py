"""A user's mistake gets one clear line on stderr and a non-zero status, never a
traceback: a hub that is not there, a port already in use, a bad key folder, a scenario
that does not exist."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.opshub.conftest import free_port, opshub


def _one_line_error(done: object, command: str, says: str) -> None:
    out, err, rc = done.stdout, done.stderr, done.returncode  # type: ignore[attr-defined]
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"opshub {command}: "), lines[0]
    assert says in lines[0], lines[0]


def test_cli_errors_replay_to_a_closed_port(tmp_path: Path, key_folder: Path) -> None:
    """`opshub replay --hub` to a port nothing listens on names the hub it tried."""
    url = f"ws://127.0.0.1:{free_port()}/v1/ws"
    done = opshub("replay", "trigger-vii", "--hub", url, "--keys", "keys", cwd=tmp_path)
    _one_line_error(done, "replay", f"no hub answers at {url}")


def test_cli_errors_bench_to_a_closed_port(tmp_path: Path, key_folder: Path) -> None:
    """`opshub bench hub --hub` to a port nothing listens on names the hub it tried."""
    url = f"ws://127.0.0.1:{free_port()}/v1/ws"
    done = opshub("bench", "hub", "--hub", url, "--keys", "keys", "--duration", "1",
                  cwd=tmp_path)
    _one_line_error(done, "bench hub", f"no hub answers at {url}")


def test_cli_errors_serve_on_a_port_in_use(tmp_path: Path, key_folder: Path) -> None:
    """`opshub serve` on a port another program listens on says so."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = opshub("serve", "--keys", "keys", "--db", "x.db", "--port", str(port),
                      cwd=tmp_path)
    _one_line_error(done, "serve", f"cannot listen on 127.0.0.1:{port}: address already in use")


def test_cli_errors_serve_metrics_on_a_port_in_use(tmp_path: Path, key_folder: Path) -> None:
    """`opshub serve` whose --metrics-port another program listens on names that port,
    not the agents' port (which it could bind)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = opshub("serve", "--keys", "keys", "--db", "x.db", "--port", "0",
                      "--metrics-port", str(port), cwd=tmp_path)
    _one_line_error(done, "serve", f"cannot listen on 127.0.0.1:{port} (--metrics-port: "
                    f"/healthz and /metrics): address already in use")


def test_cli_errors_serve_database_it_cannot_open(tmp_path: Path, key_folder: Path) -> None:
    """`opshub serve` with a database in a folder that does not exist says so."""
    done = opshub("serve", "--keys", "keys", "--db", "nowhere/x.db", "--port", "0",
                  cwd=tmp_path)
    _one_line_error(done, "serve", "cannot open database")


def _drop_authority_key(keys: Path) -> None:
    (keys / "authority.key").unlink()


def _drop_unit_file(keys: Path) -> None:
    (keys / "units" / "DM-CUSTOMS.json").unlink()


def _corrupt_unit_file(keys: Path) -> None:
    (keys / "units" / "DM-CUSTOMS.json").write_text("{not json")


def _corrupt_roster(keys: Path) -> None:
    (keys / "roster.json").write_text(json.dumps({"people": []}))


def _drop_folder(keys: Path) -> None:
    shutil.rmtree(keys)


@pytest.mark.parametrize(("damage", "says"), [
    (_drop_folder, "no key folder keys"),
    (_drop_authority_key, "keys/authority.key"),
    (_drop_unit_file, "keys/units/DM-CUSTOMS.json"),
    (_corrupt_unit_file, "keys/units/DM-CUSTOMS.json"),
    (_corrupt_roster, "keys/roster.json"),
], ids=["missing", "no-authority-key", "no-unit-file", "corrupt-unit-file", "bad-roster"])
def test_cli_errors_replay_with_a_bad_key_folder(tmp_path: Path, key_folder: Path,
                                                 damage: object, says: str) -> None:
    """`opshub replay --keys` with a folder that cannot sign or act as the participants
    names the folder or file, before contacting any hub."""
    damage(key_folder)  # type: ignore[operator]
    url = f"ws://127.0.0.1:{free_port()}/v1/ws"
    done = opshub("replay", "trigger-vii", "--hub", url, "--keys", "keys", cwd=tmp_path)
    _one_line_error(done, "replay", says)


@pytest.mark.parametrize(("damage", "says"), [
    (_drop_folder, "no key folder keys"),
    (_corrupt_roster, "keys/roster.json"),
], ids=["missing", "bad-roster"])
def test_cli_errors_serve_with_a_bad_key_folder(tmp_path: Path, key_folder: Path,
                                                damage: object, says: str) -> None:
    """`opshub serve --keys` with a missing folder or an unreadable roster names it."""
    damage(key_folder)  # type: ignore[operator]
    done = opshub("serve", "--keys", "keys", "--db", "x.db", "--port", "0", cwd=tmp_path)
    _one_line_error(done, "serve", says)


def test_cli_errors_replay_of_an_unknown_scenario(tmp_path: Path) -> None:
    """`opshub replay` of a scenario that does not exist lists the known ones."""
    done = opshub("replay", "cocair-vi", cwd=tmp_path)
    _one_line_error(done, "replay", "no scenario 'cocair-vi'")
    assert "cocair-v" in done.stderr


def test_cli_errors_replay_hub_without_keys(tmp_path: Path) -> None:
    """`opshub replay --hub` without `--keys` says what is missing."""
    done = opshub("replay", "trigger-vii", "--hub", "ws://127.0.0.1:9/v1/ws", cwd=tmp_path)
    _one_line_error(done, "replay", "--hub needs --keys")


def test_cli_errors_teach_with_a_late_unit_that_is_not_a_participant(tmp_path: Path) -> None:
    """`opshub teach --late` of a unit the scenario does not have names it, before any
    hub starts."""
    done = opshub("teach", "cocair-v", "--late", "XX-NOBODY", "--port", "0", cwd=tmp_path)
    _one_line_error(done, "teach", "no participant XX-NOBODY in COCAIR-V")


def test_cli_errors_teach_with_a_missing_explanations_file(tmp_path: Path) -> None:
    done = opshub("teach", "cocair-v", "--explanations", "texts.fr.yaml", "--port", "0",
                  cwd=tmp_path)
    _one_line_error(done, "teach", "cannot read explanations texts.fr.yaml")
