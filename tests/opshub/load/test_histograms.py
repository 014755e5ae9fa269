"""HDR histograms across processes: merging is exact, the fast recorder is the package's,
and the histogram file round-trips through `opshub load merge`."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from opshub.load import histograms


def _samples(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(8, 1.5)) for _ in range(n)]


def test_histograms_merged_equal_one_of_every_sample() -> None:
    """Three processes' encoded histograms, decoded and added, equal one histogram that
    recorded all their samples: same counts, so the same percentiles and max."""
    parts = [_samples(5000, seed) for seed in (1, 2, 3)]
    encoded = []
    for part in parts:
        h = histograms.new()
        for v in part:
            histograms.record(h, v)
        encoded.append(histograms.encode(h))
    single = histograms.new()
    for v in (v for part in parts for v in part):
        histograms.record(single, v)
    merged = histograms.merge(encoded)
    assert merged.equals(single)
    assert histograms.summary_ms(merged) == histograms.summary_ms(single)


def test_histograms_recording_equals_record_value() -> None:
    """The subscribers' fast path puts every sample where record_value does, the
    out-of-range ones (negative, beyond an hour) included."""
    values = [*_samples(20000, 4), 0, -3, 2047, 2048, 2049, histograms.HIGHEST_US * 2]
    fast, slow = histograms.Recording(), histograms.new()
    for v in values:
        fast.add(v)
        histograms.record(slow, v)
    assert fast.histogram().equals(slow)


def test_histograms_percentiles_never_exceed_the_max() -> None:
    """p99.99 <= max, unlike the bench's 6 % buckets."""
    h = histograms.new()
    for v in _samples(10000, 5):
        histograms.record(h, v)
    s = histograms.summary_ms(h)
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["p99.9"] <= s["p99.99"] <= s["max"]


def test_histograms_files_merged_by_the_command(tmp_path: Path) -> None:
    """`opshub load merge` reads the files --histogram writes and prints the percentiles
    of all their samples."""
    files, everything = [], histograms.new()
    for seed in (6, 7):
        h = histograms.new()
        for v in _samples(3000, seed):
            histograms.record(h, v)
            histograms.record(everything, v)
        path = tmp_path / f"run{seed}.hlog"
        histograms.write_log(path, [(0.0, 5.0, h)], f"run {seed}")
        assert histograms.read_log(path)[0].equals(h)
        files.append(str(path))
    done = subprocess.run([sys.executable, "-m", "opshub", "load", "merge", *files],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "6,000 samples" in done.stdout
    shown = {line.split()[0]: float(line.split()[1].replace(",", ""))
             for line in done.stdout.splitlines()[1:]}
    expected = histograms.summary_ms(everything)
    assert shown == {k: v for k, v in expected.items() if k != "count"}
