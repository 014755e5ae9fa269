"""Helpers for tests that run the ``opshub`` command as a user would: in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from client.connection import TIMEOUT


def opshub(*args: str, cwd: Path, timeout: float = TIMEOUT * 12
           ) -> subprocess.CompletedProcess[str]:
    """Run ``opshub ARGS`` in ``cwd`` to completion."""
    return subprocess.run([sys.executable, "-m", "opshub", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_port() -> int:
    """A port P for ``opshub serve --port P`` on 127.0.0.1: P and P + 1 (where its /healthz
    and /metrics listen by default) are both free (just now)."""
    while True:
        with socket.socket() as s, socket.socket() as beside:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            try:
                beside.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


@pytest.fixture
def key_folder(tmp_path: Path) -> Path:
    """``opshub keys --out keys`` in ``tmp_path``: the README's default roster."""
    done = opshub("keys", "--out", "keys", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "keys"
