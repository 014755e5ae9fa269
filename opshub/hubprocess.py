"""``opshub serve`` in a child process, for the tools that start a hub of their own (bench,
replay): it gets a core of its own, and its CPU time and peak memory are its own.

The child is known by the JSON its ``--ready-file`` holds once it listens, never by
parsing its human-readable output. CPU time and memory come from /proc (Linux).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from opshub.tls import TlsFiles
from protocol.errors import OpshubError, UsageError

#: seconds a hub may take from exec to listening (imports, opening the database)
READY_WITHIN = 60.0
#: seconds a hub may take to stop cleanly after SIGTERM before it is killed
STOP_WITHIN = 30.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HubProcess:
    """A hub in a child process: ``with HubProcess(keys, db) as hub: ... hub.url``, or
    ``HubProcess(keys, store="nats://...,nats://...")`` for a node of a cluster. With
    ``tls`` (opshub.tls.write_tls_folder) it serves wss:// and https:// with that folder's
    hub certificate; clients trust its ``tls.ca``. Its /healthz and /metrics listen on a
    free port of 127.0.0.1 of their own: ``metrics`` is their base URL.

    Raises OpshubError if the child exits, or is not listening within READY_WITHIN
    seconds (the child has printed its own reason on stderr)."""

    def __init__(self, keys: Path, db: Path | None = None, *, store: str = "",
                 fanout: str = "coalesced", loop: str = "asyncio",
                 tls: TlsFiles | None = None) -> None:
        if (db is None) == (not store):
            raise UsageError("a hub keeps its state in a database file or in a store "
                             "(nats://...), one of the two")
        self._tmp = tempfile.TemporaryDirectory(prefix="opshub-hub-")
        ready = Path(self._tmp.name) / "ready.json"
        # A hub on a store (a node of a cluster, opshub/cluster.py) has no file of its own:
        # it runs in its temporary folder, so that nothing it writes lands in the caller's.
        state = ["--store", store] if store else ["--db", str(db)]
        if tls is not None:
            state += ["--tls-cert", str(tls.cert.resolve()), "--tls-key", str(tls.key.resolve())]
        # stdout (the human-readable lines) is not needed; stderr stays the user's
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opshub", "serve", "--host", "127.0.0.1", "--port", "0",
             "--metrics-port", "0", *state, "--keys", str(keys.resolve()), "--fanout", fanout,
             "--loop", loop, "--ready-file", str(ready)], stdout=subprocess.DEVNULL,
            cwd=self._tmp.name if store else None)
        try:
            info = self._wait_ready(ready)
        except BaseException:
            self.stop()
            raise
        self.url: str = info["url"]
        self.http: str = info["http"]
        #: where the hub's /healthz and /metrics are (http://127.0.0.1:PORT, a free port)
        self.metrics: str = info["metrics"]

    def _wait_ready(self, ready: Path) -> dict[str, str]:
        deadline = time.monotonic() + READY_WITHIN
        while not ready.exists():
            rc = self.proc.poll()
            if rc is not None:
                raise OpshubError(f"the hub exited with status {rc} before it was ready")
            if time.monotonic() > deadline:
                raise OpshubError(f"the hub was not ready within {READY_WITHIN:g} s")
            time.sleep(0.01)
        info: dict[str, str] = json.loads(ready.read_text())  # written atomically
        return info

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> int:
        """Kill the hub at once (SIGKILL: a crash, nothing flushed or closed) and return its
        exit status; stop() then only cleans up."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def stop(self) -> int:
        """Stop the hub (SIGTERM: a clean shutdown) and return its exit status; killed if
        it has not stopped within STOP_WITHIN seconds."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=STOP_WITHIN)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
