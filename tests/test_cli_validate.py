"""``opshub validate`` and ``opshub bench messages``: the command-line face of the schemas."""

from __future__ import annotations

import json
from pathlib import Path

from client.messages.catalog import SCHEMA_DIR
from opshub.cli import main

EXAMPLES = SCHEMA_DIR / "examples"


def test_cli_validate_accepts_every_valid_example(capsys) -> None:
    """Every file of examples/valid is reported ok and the exit status is 0."""
    files = sorted((EXAMPLES / "valid").iterdir())
    assert main(["validate", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(files)


def test_cli_validate_rejects_every_invalid_example(capsys) -> None:
    """Each invalid example alone exits 1 and prints file, JSON path and reason for each
    of its expected problems."""
    for path in sorted((EXAMPLES / "invalid").glob("*.json")):
        assert main(["validate", str(path)]) == 1, path.name
        out = capsys.readouterr().out
        for e in json.loads((EXAMPLES / "expected" / path.name).read_text()):
            assert f"{path}: {e['path'] or '/'}: " in out, (path.name, out)


def test_cli_validate_one_bad_file_fails_the_run(capsys) -> None:
    """A run over valid files and one invalid one exits 1; the valid ones still pass."""
    good = sorted((EXAMPLES / "valid").glob("alert-*.json"))
    bad = EXAMPLES / "invalid" / "feedback-missing-refers-to.json"
    assert main(["validate", "-q", *map(str, good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines() == [f"{bad}: /refers_to: missing: this field is "
                                        f"required here"]


def test_cli_validate_json_output_and_unreadable_file(tmp_path: Path, capsys) -> None:
    """--json gives one record per file; a missing or unparseable file is a problem of
    that file, not a crash."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "alert",')
    rc = main(["validate", "--json", str(broken), str(tmp_path / "absent.json")])
    assert rc == 1
    records = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in records] == [False, False]
    assert "line 1" in records[0]["problems"][0]["message"]
    assert records[1]["problems"][0]["keyword"] == "file"


def test_cli_validate_references_across_files(tmp_path: Path, capsys) -> None:
    """With --references, a feedback naming no warning among the files is refused at
    /refers_to; with its warning beside it, both pass."""
    warning = json.loads(next((EXAMPLES / "valid").glob("warning-cocair-*.json")).read_text())
    feedback = json.loads((EXAMPLES / "valid" / "feedback-cocair-too-late.json").read_text())
    feedback["refers_to"] = warning["id"]
    (tmp_path / "b-feedback.json").write_text(json.dumps(feedback))
    assert main(["validate", "--references", "-q", str(tmp_path)]) == 1
    assert "b-feedback.json: /refers_to: refers to" in capsys.readouterr().out
    (tmp_path / "a-warning.json").write_text(json.dumps(warning))
    assert main(["validate", "--references", str(tmp_path)]) == 0


def test_cli_bench_messages_reports_microseconds(tmp_path: Path, capsys) -> None:
    """The messages benchmark reports per-message costs for the examples."""
    out = tmp_path / "m.json"
    assert main(["bench", "messages", "--number", "5", "--runs", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["examples"] >= 11
    assert 0 < result["schema_us"] <= result["check_max_us"]
