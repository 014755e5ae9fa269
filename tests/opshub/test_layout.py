"""Where the tooling lives: client/ is the agent library and never reaches into opshub/,
so the composition root and the library do not import each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_layers import ALL_FILES, ROOT, imports_in_file

CLIENT_FILES = [p for p in ALL_FILES if p.relative_to(ROOT).parts[0] == "client"]


def test_layout_client_files_are_found() -> None:
    """The client glob matches the agent library, so the check below cannot pass vacuously."""
    names = {p.relative_to(ROOT).as_posix() for p in CLIENT_FILES}
    assert {"client/secure.py", "client/replay/engine.py", "client/replay/run.py"} <= names


@pytest.mark.parametrize("path", CLIENT_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_layout_client_never_imports_opshub(path: Path) -> None:
    """No module under client/ imports opshub/: the CLI composes the library, never the
    reverse (no import cycle between them)."""
    bad = sorted(m for m in imports_in_file(path) if m.partition(".")[0] == "opshub")
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("name", ["bench.py", "bench_crypto.py", "bench_messages.py",
                                  "demo.py", "histogram.py"])
def test_layout_tooling_lives_in_opshub(name: str) -> None:
    """Benchmarks and the demo are tools of the composition root, not part of the agent
    library."""
    assert not (ROOT / "client" / name).exists()
    assert (ROOT / "opshub" / name).exists()
