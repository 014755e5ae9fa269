"""Fuzzing the codec and ServerSession with hostile bytes, bounded for the suite
(scripts/fuzz runs the same targets for minutes)."""

from __future__ import annotations

import typing
from typing import Any

from hypothesis import given, settings

from protocol import frames as f
from tests.fuzz import wire
from tests.fuzz.target import SUITE
from tests.fuzz.wire import LIMITS, SessionScript

BYTES, MAPS, ROUND_TRIP, SESSION = wire.TARGETS


@BYTES.suite_settings()
@given(BYTES.strategy)
def test_wire_arbitrary_bytes_decode_or_raise_decode_error(sample: tuple[str, bytes]) -> None:
    """Random and mutated bytes decode to a frame within the limits or raise DecodeError."""
    wire.check_decode(sample)


@MAPS.suite_settings()
@given(MAPS.strategy)
def test_wire_plausible_maps_decode_or_raise_decode_error(sample: tuple[str, bytes]) -> None:
    """Frame maps with fields dropped, retyped, oversized, deeply nested or not UTF-8
    decode to a frame within the limits or raise DecodeError, never anything else."""
    wire.check_decode(sample)


@ROUND_TRIP.suite_settings()
@given(ROUND_TRIP.strategy)
def test_wire_valid_frames_round_trip(sample: tuple[str, f.Frame]) -> None:
    """Every frame within the limits decodes to itself."""
    wire.check_round_trip(sample)


@SESSION.suite_settings()
@given(SESSION.strategy)
def test_wire_session_answers_every_fault_with_one_error(script: SessionScript) -> None:
    """ServerSession never raises for a peer's bytes and answers a fault with one error
    frame and its close code."""
    wire.check_session(script)


def test_wire_valid_frames_cover_every_frame_type() -> None:
    """The fuzzers' frame strategy draws frames of every type of the Frame union."""
    seen: set[type[Any]] = set()

    @settings(SUITE, max_examples=300, derandomize=True, database=None)
    @given(wire.valid_frames(LIMITS["small"]))
    def draw(frame: f.Frame) -> None:
        seen.add(type(frame))

    draw()
    assert seen == set(typing.get_args(f.Frame))


def test_wire_pack_writes_raw_values_verbatim() -> None:
    """``pack`` puts a Raw value's bytes where the value goes, in a map or an array."""
    raw = wire.Raw(b"\xa2\xff\xfe")
    assert wire.pack({"t": raw}) == b"\x81\xa1t" + bytes(raw)
    assert wire.pack([raw, 1]) == b"\x92" + bytes(raw) + b"\x01"
