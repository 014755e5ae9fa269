"""Latency histograms for the load tool: HdrHistogram (the ``hdrhistogram`` package) in
microseconds, 1 us to 1 hour at 3 significant digits, so a percentile is within 0.1 % of
the recorded value and never above the max.

Histograms cross process boundaries encoded (the HdrHistogram V2 compressed, base64 form)
and are merged by adding; merging is exact (the counts add up), so the merge of several
processes' histograms equals one histogram of all their samples. A histogram file is an
HdrHistogram interval log (format 1.2: comment lines, a legend, then one line per interval
``start,length,max,ENCODED``), readable by the HdrHistogram tools; ``merge`` adds every
interval of every file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException
from hdrh.histogram import HdrHistogram

from protocol.errors import UsageError

HIGHEST_US = 3_600_000_000
DIGITS = 3
#: The percentiles every summary shows.
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
#: What the package raises for bytes that are not an encoded histogram (base64 errors are
#: ValueErrors).
_UNDECODABLE = (ValueError, TypeError, zlib.error, HdrCookieException, HdrLengthException,
                HdrHistogramSettingsException)


def new() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, DIGITS)


def record(hist: HdrHistogram, micros: int) -> None:
    """Record one latency; a negative one (clock read before the stamp) counts as 0 and
    one beyond an hour as an hour, so no sample is ever dropped."""
    hist.record_value(min(max(micros, 0), HIGHEST_US))


#: The layout of new()'s histograms: unit magnitude 0 and 2**11 sub-buckets (3 digits).
_SUB_BITS = 11
_HALF = 1 << (_SUB_BITS - 1)


class Recording:
    """Records into a histogram of new() at a third of record_value's cost; the
    histogram's total, min and max are brought up to date by ``histogram()``. Equal,
    sample for sample, to record() (tests/opshub/load/test_histograms.py)."""

    def __init__(self) -> None:
        self.hist = new()
        self._counts = self.hist.counts
        self.total = 0
        self.low = HIGHEST_US
        self.high = 0

    def add(self, micros: int) -> None:
        if micros < 0:
            micros = 0
        elif micros > HIGHEST_US:
            micros = HIGHEST_US
        shift = micros.bit_length() - _SUB_BITS
        if shift < 0:
            shift = 0
        self._counts[((shift + 1) << (_SUB_BITS - 1)) + (micros >> shift) - _HALF] += 1
        self.total += 1
        if micros > self.high:
            self.high = micros
        if micros < self.low:
            self.low = micros

    def histogram(self) -> HdrHistogram:
        h = self.hist
        h.total_count = self.total
        if self.total:
            h.max_value = max(h.max_value, self.high)
            h.min_value = min(h.min_value, self.low)
        return h


def encode(hist: HdrHistogram) -> bytes:
    return hist.encode()  # type: ignore[no-any-return]


def decode(data: bytes | str) -> HdrHistogram:
    """Raises UsageError for bytes that are not an encoded HdrHistogram."""
    try:
        return HdrHistogram.decode(data)
    except _UNDECODABLE as exc:
        raise UsageError(f"not an encoded HdrHistogram ({type(exc).__name__}: {exc})"
                         ) from None


def merge(encoded: Iterable[bytes | str | HdrHistogram]) -> HdrHistogram:
    """One histogram holding every sample of the given ones."""
    out = new()
    for item in encoded:
        other = item if isinstance(item, HdrHistogram) else decode(item)
        if other.get_total_count():
            out.add(other)
    return out


def percentile_ms(hist: HdrHistogram, p: float) -> float:
    return round(float(hist.get_value_at_percentile(p)) / 1000, 3) if hist.total_count else 0.0


def summary_ms(hist: HdrHistogram) -> dict[str, float]:
    """count, p50 .. p99.99, max and mean, in milliseconds (0 for an empty histogram)."""
    out: dict[str, float] = {"count": float(hist.get_total_count())}
    values = (hist.get_percentile_to_value_dict(list(PERCENTILES)) if hist.total_count
              else {})
    for p in PERCENTILES:
        out[f"p{p:g}"] = round(values.get(p, 0) / 1000, 3)
    out["max"] = round(hist.get_max_value() / 1000, 3) if hist.total_count else 0.0
    out["mean"] = round(hist.get_mean_value() / 1000, 3) if hist.total_count else 0.0
    return out


# --- the histogram log file ------------------------------------------------------------


def write_log(path: Path, intervals: Iterable[tuple[float, float, HdrHistogram]],
              comment: str) -> None:
    """Write ``(start s, length s, histogram)`` intervals as an HdrHistogram log; values
    in microseconds, the max column in milliseconds."""
    lines = [f"#{comment}", "#[Histogram log format version 1.2]",
             "#[values in microseconds; Interval_Max in milliseconds]",
             '"StartTimestamp","Interval_Length","Interval_Max",'
             '"Interval_Compressed_Histogram"']
    for start, length, hist in intervals:
        lines.append(f"{start:.3f},{length:.3f},{hist.get_max_value() / 1000:.3f},"
                     f"{encode(hist).decode()}")
    path.write_text("\n".join(lines) + "\n")


def read_log(path: Path) -> list[HdrHistogram]:
    """The interval histograms of an HdrHistogram log. Raises UsageError naming the file
    and line of anything else."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith(("#", '"')):
            continue
        parts = line.split(",")
        if len(parts) != 4:
            raise UsageError(f"{path}:{number}: not an interval line "
                             f"(start,length,max,histogram)")
        try:
            out.append(decode(parts[3].strip()))
        except UsageError as exc:
            raise UsageError(f"{path}:{number}: {exc.message}") from None
    if not out:
        raise UsageError(f"{path}: no histogram in it (is it an opshub load --histogram file?)")
    return out
