"""Tests of protocol.codec: round-trips, limits, and "only DecodeError escapes"."""

from __future__ import annotations

import gc
import tracemalloc
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol import frames as f
from protocol.errors import CloseCode, Code, DecodeError, FrameTooLarge

FAST = settings(max_examples=200, deadline=None)

# --- one example of every frame type ------------------------------------------------

EXAMPLES: list[f.Frame] = [
    f.Challenge(nonce=b"\x01" * 32, hub="hub-1"),
    f.Ready(unit="JM-CUSTOMS", session="s-1", limits=codec.DEFAULT_LIMITS.as_dict()),
    f.Error(code=Code.NOT_MEMBER, message="not a member", rid=7, op="OP-1", cid=3),
    f.Error(code=Code.MALFORMED, message="bad"),
    f.Ok(rid=1, info={"seq": 4, "name": "x", "raw": b"\x00", "nested": [1, None, {"a": True}]}),
    f.Acks(items=(("OP-1", 1, 10), ("OP-2", 2, 11))),
    f.Deliver(op="OP-1", items=(
        f.Delivery(seq=1, sender="OCU-BB", kind=f.KIND_COMMIT, header=b"", payload=b"s", at_ms=5),
        f.Delivery(seq=2, sender="JM-CUSTOMS", kind=f.KIND_MESSAGE, header=b"h", payload=b"p",
                   at_ms=6),
    )),
    f.Ended(op="OP-1", reason="removed"),
    f.Directed(items=(f.DirectedItem(id=1, op="OP-1", sender="OCU-BB", payload=b"w", at_ms=9),)),
    f.Hello(credential=b"cred", credential_sig=b"s" * 64, signature=b"t" * 64),
    f.Publish(items=(f.PublishItem(op="OP-1", cid=1, header=b"h", payload=b"p"),)),
    f.Subscribe(rid=2, op="OP-1"),
    f.Subscribe(rid=3, op="OP-1", after=0),
    f.Unsubscribe(rid=4, op="OP-1"),
    f.Ack(op="OP-1", seq=12),
    f.Commit(rid=5, statement=b"stmt", signature=b"g" * 64),
    f.SendDirected(rid=6, op="OP-1", to="TT-POLICE", payload=b"secret"),
    f.DirectedAck(ids=(1, 2, 3)),
    f.PutKeyPackages(rid=8, packages=(b"kp-1", b"kp-2")),
    f.PutKeyPackages(rid=10, packages=(), replace=True),
    f.ClaimKeyPackages(rid=9, units=("JM-CUSTOMS", "TT-POLICE")),
    f.ClaimKeyPackages(rid=11, units=("JM-CUSTOMS",), op="OP-1", cid=7),
]


def _wire(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def test_codec_examples_cover_every_frame_type() -> None:
    """The example list holds at least one frame of every type in the Frame union."""
    assert {type(fr) for fr in EXAMPLES} == set(typing.get_args(f.Frame))


@pytest.mark.parametrize("frame", EXAMPLES, ids=lambda fr: type(fr).__name__)
def test_codec_round_trips_every_frame_type(frame: f.Frame) -> None:
    """decode(encode(frame)) gives back an equal frame for every frame type."""
    assert codec.decode(codec.encode(frame)) == frame


# --- strategies of valid frames -----------------------------------------------------

ids = st.from_regex(f.ID_PATTERN, fullmatch=True)
uints = st.integers(min_value=0, max_value=2**63 - 1)
small_uints = st.integers(min_value=0, max_value=2**20)


def texts(max_size: int) -> st.SearchStrategy[str]:
    # Lone surrogates cannot be UTF-8 encoded, so they are not valid frame values.
    return st.text(st.characters(codec="utf-8"), max_size=max_size)


def blobs(max_size: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


# Values a peer can legitimately put in Ok.info: msgpack types that survive a round-trip
# unchanged (lists, not tuples; no NaN, which never equals itself).
info_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | texts(20) | blobs(20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts(8), children, max_size=4),
    max_leaves=12,
)

deliveries = st.builds(f.Delivery, seq=uints, sender=ids, kind=uints, header=blobs(64),
                       payload=blobs(64), at_ms=uints)
directed_items = st.builds(f.DirectedItem, id=uints, op=ids, sender=ids, payload=blobs(64),
                           at_ms=uints)
publish_items = st.builds(f.PublishItem, op=ids, cid=uints, header=blobs(64),
                          payload=blobs(64))

valid_frames: st.SearchStrategy[f.Frame] = st.one_of(
    st.builds(f.Challenge, nonce=blobs(64), hub=texts(256), version=uints),
    st.builds(f.Ready, unit=ids, session=texts(256),
              limits=st.dictionaries(texts(32), uints, max_size=6)),
    st.builds(f.Error, code=texts(64), message=texts(300), rid=st.none() | uints,
              op=st.none() | texts(64), cid=st.none() | uints),
    st.builds(f.Ok, rid=uints, info=st.dictionaries(texts(8), info_values, max_size=4)),
    st.builds(f.Acks, items=st.lists(st.tuples(ids, uints, uints), max_size=5).map(tuple)),
    st.builds(f.Deliver, op=ids, items=st.lists(deliveries, max_size=5).map(tuple)),
    st.builds(f.Ended, op=ids, reason=texts(256)),
    st.builds(f.Directed, items=st.lists(directed_items, max_size=5).map(tuple)),
    st.builds(f.Hello, credential=blobs(4096), credential_sig=blobs(64), signature=blobs(64)),
    st.builds(f.Publish, items=st.lists(publish_items, min_size=1, max_size=5).map(tuple)),
    st.builds(f.Subscribe, rid=uints, op=ids, after=st.none() | uints),
    st.builds(f.Unsubscribe, rid=uints, op=ids),
    st.builds(f.Ack, op=ids, seq=uints),
    st.builds(f.Commit, rid=uints, statement=blobs(512), signature=blobs(64)),
    st.builds(f.SendDirected, rid=uints, op=ids, to=ids, payload=blobs(512)),
    st.builds(f.DirectedAck, ids=st.lists(uints, max_size=8).map(tuple)),
)


@FAST
@given(valid_frames)
def test_codec_round_trips_any_valid_frame(frame: f.Frame) -> None:
    """Any frame built from values within the limits round-trips exactly."""
    assert codec.decode(codec.encode(frame)) == frame


# --- hostile input ------------------------------------------------------------------


def _decode_or_decode_error(data: bytes) -> None:
    """Decode ``data``: a frame comes back, or a DecodeError whose ref is a path."""
    try:
        frame = codec.decode(data)
    except DecodeError as exc:
        ref = exc.ref
    else:
        assert isinstance(frame, typing.get_args(f.Frame))
        return
    assert isinstance(ref, str)
    assert ref.startswith("$")


@FAST
@given(st.binary(max_size=512))
def test_codec_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    """Arbitrary bytes either decode to a frame or raise DecodeError, never anything else."""
    _decode_or_decode_error(data)


FRAME_TYPES = sorted({fr.T for fr in EXAMPLES})
FIELD_NAMES = sorted({key for fr in EXAMPLES for key in fr.to_wire()} - {"t"})

# Everything msgpack can carry, including map keys that strict_map_key refuses. Frame type
# names and field names are mixed in so that random maps often reach the per-type parsers.
msgpack_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats() | texts(16) | blobs(16) | st.sampled_from(FRAME_TYPES)
)
msgpack_keys = (
    st.sampled_from(["t", *FIELD_NAMES]) | texts(8) | blobs(8)
    | st.integers(min_value=-5, max_value=5)
)
msgpack_objects = st.recursive(
    msgpack_scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(msgpack_keys, children, max_size=6),
    max_leaves=20,
)


@FAST
@given(msgpack_objects)
def test_codec_arbitrary_msgpack_objects_only_raise_decode_error(obj: Any) -> None:
    """Any msgpack document decodes to a frame or raises DecodeError, never anything else."""
    _decode_or_decode_error(_wire(obj))


# Shallow values shaped like frame fields: scalars, arrays of them, arrays of arrays.
shallow = st.one_of(
    msgpack_scalars,
    st.lists(msgpack_scalars, max_size=6),
    st.lists(st.lists(msgpack_scalars, max_size=6), max_size=3),
    st.dictionaries(msgpack_keys, msgpack_scalars, max_size=3),
)


@st.composite
def frame_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A known frame's wire map where each field is kept, dropped or replaced."""
    wire = draw(st.sampled_from(EXAMPLES)).to_wire()
    for key in sorted(wire.keys() - {"t"}):
        action = draw(st.sampled_from(["keep", "drop", "replace"]))
        if action == "drop":
            del wire[key]
        elif action == "replace":
            wire[key] = draw(shallow)
    return wire


@FAST
@given(frame_shaped())
def test_codec_frame_shaped_maps_only_raise_decode_error(obj: dict[str, Any]) -> None:
    """A known frame type with fields kept, dropped or replaced never escapes DecodeError."""
    _decode_or_decode_error(_wire(obj))


@FAST
@given(st.sampled_from(EXAMPLES), st.data())
def test_codec_one_corrupted_field_only_raises_decode_error(frame: f.Frame,
                                                             data: st.DataObject) -> None:
    """A valid frame with one field replaced by an arbitrary value never escapes DecodeError."""
    wire = frame.to_wire()
    key = data.draw(st.sampled_from(sorted(wire)))
    wire[key] = data.draw(shallow | msgpack_objects)
    _decode_or_decode_error(_wire(wire))


# --- limits -------------------------------------------------------------------------


def test_codec_oversize_frame_raises_frame_too_large() -> None:
    """A frame over max_frame raises FrameTooLarge naming its size and the limit."""
    with pytest.raises(FrameTooLarge) as info:
        codec.decode(b"\x00" * 101, codec.Limits(max_frame=100))
    exc = info.value
    assert exc.message == "frame of 101 bytes exceeds the limit of 100"
    assert exc.ref == "$"
    assert exc.code == Code.TOO_LARGE
    assert exc.close_code == CloseCode.TOO_LARGE


def test_codec_frame_at_the_size_limit_is_not_too_large() -> None:
    """A frame of exactly max_frame bytes is parsed, not refused for its size."""
    data = codec.encode(f.Ack(op="OP-1", seq=1))
    assert codec.decode(data, codec.Limits(max_frame=len(data))) == f.Ack(op="OP-1", seq=1)


def test_codec_batch_over_max_batch_raises_decode_error() -> None:
    """A publish with more items than max_batch is refused at its items path."""
    items = tuple(f.PublishItem(op="OP-1", cid=i, header=b"", payload=b"") for i in range(3))
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode(f.Publish(items=items)), codec.Limits(max_batch=2))
    assert info.value.ref == "$.items"
    assert info.value.message == "3 entries exceed the limit of 2"


def test_codec_batch_at_max_batch_is_accepted() -> None:
    """A publish with exactly max_batch items decodes."""
    frame = f.Publish(items=tuple(
        f.PublishItem(op="OP-1", cid=i, header=b"", payload=b"") for i in range(2)))
    assert codec.decode(codec.encode(frame), codec.Limits(max_batch=2)) == frame


def test_codec_directed_ack_over_max_batch_raises_decode_error() -> None:
    """A directed ack with more ids than max_batch is refused at $.ids."""
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode(f.DirectedAck(ids=(1, 2, 3))), codec.Limits(max_batch=2))
    assert info.value.ref == "$.ids"


def test_codec_header_over_max_header_raises_decode_error() -> None:
    """A publish item whose header exceeds max_header is refused at that item's header."""
    frame = f.Publish(items=(f.PublishItem(op="OP-1", cid=1, header=b"h" * 9, payload=b""),))
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode(frame), codec.Limits(max_header=8))
    assert info.value.ref == "$.items[0][2]"


def test_codec_payload_over_max_payload_raises_decode_error() -> None:
    """A publish item whose payload exceeds max_payload is refused at that item's payload."""
    frame = f.Publish(items=(f.PublishItem(op="OP-1", cid=1, header=b"", payload=b"p" * 9),))
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode(frame), codec.Limits(max_payload=8))
    assert info.value.ref == "$.items[0][3]"


def _decode_rejected_publishes(count: int, op_len: int) -> None:
    for i in range(count):
        data = _wire({"t": "pub", "items": [[f"{i}" + "x" * op_len, 1, b"", b""]]})
        try:
            codec.decode(data)
        except DecodeError:
            pass
        else:
            raise AssertionError("an over-long operation id was accepted")


def test_codec_rejected_frames_leave_no_memory_behind() -> None:
    """Decoding publishes with over-long operation ids retains none of their strings."""
    _decode_rejected_publishes(1, 100)  # warm up lazily allocated parser state
    gc.collect()
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _decode_rejected_publishes(20, 200_000)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not already_tracing:
            tracemalloc.stop()
    assert retained < 1_000_000, f"{retained} bytes retained after 4 MB of rejected frames"


# --- shape errors and their paths ---------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "ref"),
    [
        ({"t": "acks", "items": [["OP-1", "1", 2]]}, "$.items[0][1]"),
        ({"t": "acks", "items": [["OP-1", 1, 2], ["OP-2", 1, -2]]}, "$.items[1][2]"),
        ({"t": "pub", "items": [["OP-1", 1, "header", b""]]}, "$.items[0][2]"),
        ({"t": "pub", "items": [["bad id!", 1, b"", b""]]}, "$.items[0][0]"),
        ({"t": "pub", "items": [["OP-1", 1, b""]]}, "$.items[0]"),
        ({"t": "pub", "items": {"op": "OP-1"}}, "$.items"),
        ({"t": "pub", "items": []}, "$.items"),
        ({"t": "deliver", "op": "OP-1", "items": [[1, "", 0, b"", b"", 0]]}, "$.items[0][1]"),
        ({"t": "directed", "items": [[1, "OP-1", "A", b"", 1.5]]}, "$.items[0][4]"),
        ({"t": "sub", "rid": "1", "op": "OP-1"}, "$.rid"),
        ({"t": "sub", "rid": 1, "op": "OP-1", "after": -1}, "$.after"),
        ({"t": "ack", "op": "OP-1", "seq": True}, "$.seq"),
        ({"t": "ack", "op": "OP-1", "seq": 2**63}, "$.seq"),
        ({"t": "ack", "seq": 1}, "$.op"),
        ({"t": "dack", "ids": [1, "2"]}, "$.ids[1]"),
        ({"t": "hello", "cred": "text", "cred_sig": b"", "sig": b""}, "$.cred"),
        ({"t": "hello", "cred": b"", "cred_sig": b"x" * 65, "sig": b""}, "$.cred_sig"),
        ({"t": "ready", "unit": "A", "session": "s", "limits": {"max_frame": -1}},
         "$.limits.max_frame"),
        ({"t": "ok", "rid": 1, "info": []}, "$.info"),
        ({"t": "error", "code": "x", "message": "m", "op": 5}, "$.op"),
        ({"t": "kp_claim", "rid": 1, "units": [], "op": "bad id!"}, "$.op"),
        ({"t": "kp_claim", "rid": 1, "units": [], "op": "OP-1", "cid": -1}, "$.cid"),
    ],
)
def test_codec_wrong_field_raises_decode_error_with_path(wire: dict[str, Any], ref: str) -> None:
    """A missing or mistyped field raises DecodeError whose ref is that field's path."""
    with pytest.raises(DecodeError) as info:
        codec.decode(_wire(wire))
    assert info.value.ref == ref
    assert info.value.code == Code.MALFORMED
    assert info.value.close_code == CloseCode.MALFORMED


def test_codec_unknown_frame_type_raises_decode_error() -> None:
    """An unknown ``t`` raises DecodeError at $.t naming the type."""
    with pytest.raises(DecodeError) as info:
        codec.decode(_wire({"t": "nope"}))
    assert info.value.ref == "$.t"
    assert info.value.message == "unknown frame type 'nope'"


def test_codec_missing_frame_type_raises_decode_error() -> None:
    """A map without ``t`` raises DecodeError at $.t."""
    with pytest.raises(DecodeError) as info:
        codec.decode(_wire({"op": "OP-1"}))
    assert info.value.ref == "$.t"


def test_codec_non_map_document_raises_decode_error() -> None:
    """A msgpack document that is not a map raises DecodeError at $ naming its type."""
    with pytest.raises(DecodeError) as info:
        codec.decode(_wire([1, 2]))
    assert info.value.ref == "$"
    assert info.value.message == "frame must be a map, got list"


def test_codec_trailing_bytes_raise_decode_error() -> None:
    """A valid frame followed by extra bytes is not a single msgpack document."""
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode(f.Ack(op="OP-1", seq=1)) + b"\x00")
    assert info.value.ref == "$"


def test_codec_deep_nesting_raises_decode_error() -> None:
    """Nesting deeper than msgpack's stack limit is a DecodeError, not a RecursionError."""
    with pytest.raises(DecodeError):
        codec.decode(b"\x91" * 5000 + b"\xc0")


def test_codec_non_string_map_keys_raise_decode_error() -> None:
    """Integer map keys (refused by strict_map_key) raise DecodeError at $."""
    with pytest.raises(DecodeError) as info:
        codec.decode(_wire({"t": "ok", "rid": 1, "info": {1: 2}}))
    assert info.value.ref == "$"
