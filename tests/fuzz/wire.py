"""Wire targets: a peer's bytes into the hub, through ``codec.decode`` and ``ServerSession``.

What must hold (docs/protocol.md 2, 7, 13, 14.1): ``decode`` gives a frame within the
limits or raises DecodeError (FrameTooLarge over ``max_frame``) whose ``ref`` is a "$"
path, never another exception; a valid frame round-trips; ``ServerSession.receive``
never raises for a peer's bytes: a fault is one error frame with a stable code and the
close code that goes with it, then silence.

The hostile inputs are shaped to get past the first checks: a valid frame's map with
fields dropped, retyped, grown past their limits or replaced by raw msgpack that
Python's packer cannot write (invalid UTF-8 in a string, nesting past the unpacker's
depth, timestamps of a wrong length), under the default limits and small ones.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from typing import Any, assert_never

import msgpack
from hypothesis import strategies as st

from client.identity import UnitIdentity
from protocol import codec
from protocol import frames as f
from protocol.credentials import CREDENTIAL_CONTEXT, AuthorityRing, SignedCredential, key_id
from protocol.errors import CloseCode, Code, DecodeError, FrameTooLarge
from protocol.session import Authenticated, ServerSession, State
from tests.fuzz.target import Target
from tests.protocol.router_harness import ISSUED, NOW, SPECS, Keys

#: Limits a sample is decoded under: the hub's, and small ones whose edges are cheap to reach.
LIMITS = {
    "default": codec.DEFAULT_LIMITS,
    "small": codec.Limits(max_frame=16 * 1024, max_batch=4, max_header=16, max_payload=64),
}
#: Re-decoding a decoded frame's encoding: a frame at exactly max_frame may come back a
#: few bytes longer (minimal ints, ``after: nil`` written out), which is not a fault.
ROOMY = codec.Limits(max_frame=2**31, max_batch=2**31, max_header=2**31, max_payload=2**31)
#: Longest string or binary drawn for a field whose limit is larger.
CAP = 300
UINT_MAX = 2**63 - 1
EDGE_INTS = [-1, -(2**63), UINT_MAX, 2**63, 2**64 - 1, -(2**31), 2**32, 0]
#: Lengths around the limits of protocol.md 14.1 and codec (ids 64, texts 256, sigs 64...).
EDGE_LENGTHS = [16, 17, 32, 33, 64, 65, 256, 257, 1024, 1025, 2048, 2049, 4096, 4097]
FRAME_TYPES = sorted(t.T for t in typing.get_args(f.Frame))
CLIENT_FRAMES = typing.get_args(f.ClientFrame)

UNIT_NAMES = sorted(SPECS)
HUB = "hub-fuzz"
NONCE = bytes(range(32))

# --- valid frames ---------------------------------------------------------------------

uints = st.one_of(st.integers(0, 2**20), st.sampled_from([0, 1, 2**32, UINT_MAX]),
                  st.integers(0, UINT_MAX))
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: f.ID_PATTERN, built directly (from_regex is several times slower to draw)
ids = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "._:-", max_size=63))


def texts(max_size: int) -> st.SearchStrategy[str]:
    # lone surrogates cannot be encoded as UTF-8: no peer can send them
    return st.text(st.characters(codec="utf-8"), max_size=min(max_size, CAP))


def blobs(max_size: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=min(max_size, CAP))


def _batch(lim: codec.Limits) -> int:
    return min(lim.max_batch, 6)


# Values Ok.info may carry and get back unchanged (lists, not tuples; no NaN).
info_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | texts(20) | blobs(20)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts(8) | blobs(4), children, max_size=4),
    max_leaves=12,
)


@functools.cache
def valid_frames(lim: codec.Limits) -> st.SearchStrategy[f.Frame]:
    """Any frame of any type whose values are within ``lim`` (and the fixed limits)."""
    batch, hdr, pay = _batch(lim), lim.max_header, lim.max_payload

    def items(s: st.SearchStrategy[Any], min_size: int = 0) -> st.SearchStrategy[tuple[Any, ...]]:
        return st.lists(s, min_size=min_size, max_size=batch).map(tuple)

    return st.one_of(
        st.builds(f.Challenge, nonce=blobs(64), hub=texts(256), version=uints),
        st.builds(f.Ready, unit=ids, session=texts(256),
                  limits=st.dictionaries(texts(32), uints, max_size=5)),
        st.builds(f.Error, code=texts(64), message=texts(4096), rid=st.none() | uints,
                  op=st.none() | texts(64), cid=st.none() | uints),
        st.builds(f.Ok, rid=uints, info=st.dictionaries(texts(8), info_values, max_size=4)),
        st.builds(f.Acks, items=items(st.tuples(ids, uints, uints))),
        st.builds(f.Deliver, op=ids, items=items(st.builds(
            f.Delivery, seq=uints, sender=ids, kind=uints, header=blobs(hdr),
            payload=blobs(lim.max_frame), at_ms=uints))),
        st.builds(f.Ended, op=ids, reason=texts(256)),
        st.builds(f.Directed, items=items(st.builds(
            f.DirectedItem, id=uints, op=ids, sender=ids, payload=blobs(lim.max_frame),
            at_ms=uints))),
        st.builds(f.Hello, credential=blobs(4096), credential_sig=blobs(64),
                  signature=blobs(64)),
        st.builds(f.Publish, items=items(st.builds(
            f.PublishItem, op=ids, cid=uints, header=blobs(hdr), payload=blobs(pay)), 1)),
        st.builds(f.Subscribe, rid=uints, op=ids, after=st.none() | uints,
                  senders=st.none() | st.lists(ids, max_size=4).map(tuple)),
        st.builds(f.Unsubscribe, rid=uints, op=ids),
        st.builds(f.Ack, op=ids, seq=uints),
        st.builds(f.Commit, rid=uints, statement=blobs(lim.max_frame), signature=blobs(64)),
        st.builds(f.SendDirected, rid=uints, op=ids, to=ids, payload=blobs(pay),
                  cid=st.none() | uints),
        st.builds(f.DirectedAck, ids=items(uints)),
        st.builds(f.PutKeyPackages, rid=uints, packages=st.lists(
            blobs(codec.MAX_KEY_PACKAGE), max_size=4).map(tuple), replace=st.booleans()),
        st.builds(f.ClaimKeyPackages, rid=uints, units=items(ids), op=st.none() | ids,
                  cid=st.none() | uints),
    )


limit_names = st.sampled_from(sorted(LIMITS))


@st.composite
def limited_frames(draw: st.DrawFn) -> tuple[str, f.Frame]:
    name = draw(limit_names)
    return name, draw(valid_frames(LIMITS[name]))


# --- hostile values -------------------------------------------------------------------


class Raw(bytes):
    """msgpack bytes put verbatim where a value goes (see ``pack``)."""

    def __repr__(self) -> str:
        return f"Raw({bytes(self)!r})"


def _str_header(n: int) -> bytes:
    if n < 32:
        return bytes([0xA0 | n])
    return b"\xd9" + bytes([n]) if n < 256 else b"\xda" + n.to_bytes(2, "big")


# A str whose bytes are not UTF-8: \xff never is; \xc0\x80 is an overlong NUL; \xed\xa0\x80
# a UTF-16 surrogate.
bad_utf8 = st.tuples(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x80"]),
                     st.binary(max_size=12), st.booleans()).map(
    lambda t: Raw(_str_header(len(t[1]) + len(t[0])) + (t[0] + t[1] if t[2] else t[1] + t[0])))
raw_values = st.one_of(
    bad_utf8,
    # nesting: arrays and maps, up to past msgpack's own depth limit (1024)
    st.integers(1, 1500).map(lambda d: Raw(b"\x91" * d + b"\xc0")),
    st.integers(1, 1500).map(lambda d: Raw(b"\x81\xa1k" * d + b"\x01")),
    # timestamps (ext -1) of a length the unpacker refuses; a reserved byte; a str32 and an
    # array32 claiming far more than the frame holds; float32 NaN; a timestamp before 1970
    st.sampled_from([Raw(b"\xd5\xff\x00\x00"), Raw(b"\xc7\x03\xff\x00\x00\x00"), Raw(b"\xc1"),
                     Raw(b"\xdb\xff\xff\xff\xff"), Raw(b"\xdd\x7f\xff\xff\xff"),
                     Raw(b"\xca\x7f\xc0\x00\x00"), Raw(b"\xd6\xff\xff\xff\xff\xff"),
                     Raw(b"\xd4\xfb\x00")]),  # ext type -5: reserved, no ExtType for it
)
edge_sized = st.tuples(st.sampled_from(EDGE_LENGTHS), st.booleans()).map(
    lambda t: "x" * t[0] if t[1] else b"x" * t[0])
map_keys = (st.sampled_from(["t", "op", "rid", "items", "after", "senders", "cid", "to"])
            | texts(8) | blobs(4) | st.integers(-3, 3) | bad_utf8)
hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EDGE_INTS), st.integers(-(2**63), 2**64 - 1),
    st.floats(), texts(16), blobs(16),
    st.sampled_from(["", "OP-1", "bad id!", "-lead", "a" * 64, "a" * 65, "\x00", *FRAME_TYPES]),
    edge_sized, raw_values,
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
)
hostile = st.recursive(
    hostile_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(map_keys, children,
                                                                      max_size=4),
    max_leaves=10,
)


def pack(obj: Any, *, use_bin_type: bool = True) -> bytes:
    """msgpack bytes of ``obj``, each ``Raw`` inside it written verbatim. (With
    use_bin_type False, Python packs bytes as str: binary fields arrive as strings that are
    usually not UTF-8.)"""
    raws: list[bytes] = []

    def swap(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(bytes(v))
            return _placeholder(len(raws) - 1)
        if isinstance(v, dict):
            return {swap(k): swap(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [swap(x) for x in v]
        return v

    data: bytes = msgpack.packb(swap(obj), use_bin_type=use_bin_type)
    for i, raw in enumerate(raws):
        data = data.replace(b"\xa8" + _placeholder(i).encode(), raw, 1)
    return data


def _placeholder(i: int) -> str:
    return f"\x01raw{i:03d}\x02"  # 8 characters: packed as fixstr 0xa8


def _plain(obj: Any) -> Any:
    """A frame's wire map with every tuple (NamedTuple items included) as a list."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _slots(obj: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) inside ``obj``, in a stable order."""
    out: list[tuple[Any, Any]] = []
    if isinstance(obj, dict):
        for k in list(obj):
            out.append((obj, k))
            out.extend(_slots(obj[k]))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((obj, i))
            out.extend(_slots(v))
    return out


mutations = st.sampled_from(["replace", "replace", "drop", "add", "grow", "retype"])
frame_types = st.sampled_from(FRAME_TYPES)
edge_batches = st.sampled_from([4, 5, 128, 129, 256, 257, 1024, 1025])
any_limits_frames = st.sampled_from(sorted(LIMITS)).flatmap(lambda n: valid_frames(LIMITS[n]))
use_bin_types = st.sampled_from([True, True, True, False])


def _mutate(draw: st.DrawFn, wire: dict[Any, Any]) -> None:
    slots = _slots(wire)
    how = draw(mutations)
    if how == "retype":
        wire["t"] = draw(frame_types | hostile_scalars)
        return
    if how == "add" or not slots:
        wire[draw(map_keys)] = draw(hostile)
        return
    container, key = slots[draw(st.integers(0, len(slots) - 1))]
    if how == "replace":
        container[key] = draw(hostile)
    elif how == "drop":
        del container[key]
    elif isinstance(container[key], list) and container[key]:  # grow an array to an edge
        arr = container[key]
        arr.extend([arr[0]] * (draw(edge_batches) - len(arr)))
    else:
        container[key] = draw(edge_sized)


@st.composite
def plausible_maps(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid frame's map (of either limits) with 1-4 mutations, packed; the limits
    it is decoded under."""
    name = draw(limit_names)
    wire = _plain(draw(any_limits_frames).to_wire())
    for _ in range(draw(st.integers(1, 4))):
        _mutate(draw, wire)
    return name, pack(wire, use_bin_type=draw(use_bin_types))


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A valid frame's encoding with bytes flipped, cut, inserted or repeated."""
    data = bytearray(codec.encode(draw(valid_frames(LIMITS["small"]))))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if how == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[pos:]
        elif how == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


arbitrary_bytes = st.tuples(limit_names, st.binary(max_size=1024) | mutated_bytes())

# --- checks ---------------------------------------------------------------------------


def check_decode(sample: tuple[str, bytes]) -> None:
    """Bytes decode to a frame within the limits that re-encodes stably, or raise
    DecodeError (FrameTooLarge exactly over max_frame) with a "$" path; nothing else."""
    name, data = sample
    lim = LIMITS[name]
    try:
        frame = codec.decode(data, lim)
    except DecodeError as exc:
        _check_decode_error(exc, data, lim)
        return
    assert_within_limits(frame, lim)
    once = codec.encode(frame)
    assert codec.encode(codec.decode(once, ROOMY)) == once, "re-encoding is not stable"


def _check_decode_error(exc: DecodeError, data: bytes, lim: codec.Limits) -> None:
    too_large = len(data) > lim.max_frame
    assert type(exc) is (FrameTooLarge if too_large else DecodeError), exc
    assert isinstance(exc.ref, str), exc.ref
    assert exc.ref.startswith("$"), exc.ref
    assert isinstance(exc.message, str)
    assert exc.message
    expected = ((Code.TOO_LARGE, CloseCode.TOO_LARGE) if too_large
                else (Code.MALFORMED, CloseCode.MALFORMED))
    assert (exc.code, exc.close_code) == expected


def check_round_trip(sample: tuple[str, f.Frame]) -> None:
    """A frame within the limits decodes to itself, and its encoding is stable."""
    name, frame = sample
    lim = LIMITS[name]
    data = codec.encode(frame)
    if len(data) > lim.max_frame:  # an oversized Ok.info or statement: refused, as documented
        check_decode((name, data))
        return
    back = codec.decode(data, lim)
    assert back == frame
    assert codec.encode(back) == data


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= UINT_MAX


def _opt_uint(v: Any) -> bool:
    return v is None or _uint(v)


def _id(v: Any) -> bool:
    return type(v) is str and f.valid_id(v)


def _sized(v: Any, t: type[str | bytes], limit: int) -> bool:
    return type(v) is t and len(v) <= limit


def _within(frame: f.Frame, lim: codec.Limits) -> bool:
    batch, hdr, pay, big = lim.max_batch, lim.max_header, lim.max_payload, lim.max_frame
    match frame:
        case f.Publish(items=items):
            return 1 <= len(items) <= batch and all(
                _id(p.op) and _uint(p.cid) and _sized(p.header, bytes, hdr)
                and _sized(p.payload, bytes, pay) for p in items)
        case f.Acks(items=acks):
            return len(acks) <= batch and all(
                _id(op) and _uint(cid) and _uint(seq) for op, cid, seq in acks)
        case f.Deliver(op=op, items=deliveries):
            return _id(op) and len(deliveries) <= batch and all(
                _uint(d.seq) and _id(d.sender) and _uint(d.kind) and _uint(d.at_ms)
                and _sized(d.header, bytes, hdr) and _sized(d.payload, bytes, big)
                for d in deliveries)
        case f.Directed(items=directed):
            return len(directed) <= batch and all(
                _uint(d.id) and _id(d.op) and _id(d.sender) and _uint(d.at_ms)
                and _sized(d.payload, bytes, big) for d in directed)
        case f.Subscribe(rid=rid, op=op, after=after, senders=senders):
            return _uint(rid) and _id(op) and _opt_uint(after) and (
                senders is None or (len(senders) <= codec.MAX_SENDERS and all(map(_id, senders))))
        case f.Unsubscribe(rid=rid, op=op):
            return _uint(rid) and _id(op)
        case f.Ack(op=op, seq=seq):
            return _id(op) and _uint(seq)
        case f.Commit(rid=rid, statement=stmt, signature=sig):
            return _uint(rid) and _sized(stmt, bytes, big) and _sized(sig, bytes, 64)
        case f.SendDirected(rid=rid, op=op, to=to, payload=payload, cid=cid):
            return (_uint(rid) and _id(op) and _id(to) and _sized(payload, bytes, pay)
                    and _opt_uint(cid))
        case f.DirectedAck(ids=dids):
            return len(dids) <= batch and all(map(_uint, dids))
        case f.PutKeyPackages(rid=rid, packages=packages, replace=replace):
            return (_uint(rid) and type(replace) is bool
                    and len(packages) <= codec.MAX_KEY_PACKAGES_PER_FRAME
                    and all(_sized(p, bytes, codec.MAX_KEY_PACKAGE) for p in packages))
        case f.ClaimKeyPackages(rid=rid, units=units, op=op, cid=cid):
            return (_uint(rid) and len(units) <= batch and all(map(_id, units))
                    and (op is None or _id(op)) and _opt_uint(cid))
        case f.Hello(credential=cred, credential_sig=cred_sig, signature=sig):
            return (_sized(cred, bytes, 4096) and _sized(cred_sig, bytes, 64)
                    and _sized(sig, bytes, 64))
        case f.Challenge(nonce=nonce, hub=hub, version=version):
            return _sized(nonce, bytes, 64) and _sized(hub, str, 256) and _uint(version)
        case f.Ready(unit=unit, session=session, limits=limits):
            return _id(unit) and _sized(session, str, 256) and all(
                _sized(k, str, 32) and _uint(v) for k, v in limits.items())
        case f.Error(code=code, message=message, rid=rid, op=op, cid=cid):
            return (_sized(code, str, 64) and _sized(message, str, 4096) and _opt_uint(rid)
                    and _opt_uint(cid) and (op is None or _sized(op, str, 64)))
        case f.Ok(rid=rid, info=info):
            return _uint(rid) and type(info) is dict
        case f.Ended(op=op, reason=reason):
            return _id(op) and _sized(reason, str, 256)
        case _:
            assert_never(frame)


def assert_within_limits(frame: f.Frame, lim: codec.Limits) -> None:
    """A decoded frame holds only what protocol.md 7 and 14.1 allow (the hot paths of
    the codec check types and sizes themselves: this is a second opinion)."""
    assert _within(frame, lim), f"decoded frame outside the limits {lim}: {frame!r:.2000}"


# --- the session ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identities:
    """An authority, units enrolled at a hub (``directory``) and one that is not."""

    keys: Keys
    directory: dict[str, SignedCredential]
    stranger: UnitIdentity

    def ring(self) -> AuthorityRing:
        return self.keys.ring()


@functools.cache
def identities() -> Identities:
    keys = Keys()
    stranger = keys["INTERPOL-LO"]
    directory = {u: i.signed for u, i in keys.units.items() if u != stranger.unit}
    return Identities(keys, directory, stranger)


@dataclass(frozen=True, slots=True)
class SessionScript:
    """What one peer sends a fresh session, message by message."""

    limits: str
    open_enrollment: bool
    messages: tuple[bytes, ...]


def _hello(ident: UnitIdentity, hub: str = HUB) -> bytes:
    return codec.encode(f.Hello(credential=ident.signed.body,
                                credential_sig=ident.signed.signature,
                                signature=ident.answer(NONCE, hub)))


#: Odd values of each credential field (the authority signs them all the same).
ODD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "unit": ids | st.sampled_from(["", "bad id!", "a" * 65]),
    "country": st.sampled_from(["", "ZZ", "zz", "ABC"]),
    "agency": texts(300),
    "role": st.sampled_from(["", "ocu", "root", "OCU"]),
    "ik": st.binary(min_size=31, max_size=33),
    "iat": st.sampled_from([*EDGE_INTS, int(NOW) + 10_000, ISSUED]),
    "exp": st.sampled_from([*EDGE_INTS, int(NOW), ISSUED]),
    "auth": st.binary(max_size=9),
}
odd_field_names = st.lists(st.sampled_from(sorted(ODD_FIELDS)), min_size=1, max_size=3,
                           unique=True)


@st.composite
def odd_credential_hello(draw: st.DrawFn) -> bytes:
    """A hello whose credential the authority really signed, with fields (mostly) of the
    right type but odd values: past the signature check, into the credential's rules."""
    keys = identities().keys
    ident = keys[draw(st.sampled_from(UNIT_NAMES))]
    cred = ident.credential
    fields: dict[str, Any] = {
        "unit": cred.unit, "country": cred.country, "agency": cred.agency, "role": cred.role,
        "ik": cred.identity_key, "iat": cred.issued_at, "exp": cred.expires_at,
        "auth": key_id(keys.authority.public_key),
    }
    for key in draw(odd_field_names):
        fields[key] = draw(ODD_FIELDS[key] | hostile_scalars)
    body = pack(fields)
    signature = keys.authority.key.sign(CREDENTIAL_CONTEXT + body)
    answer = draw(st.sampled_from([ident.answer(NONCE, HUB), b"\x00" * 64]))
    return codec.encode(f.Hello(credential=body, credential_sig=signature, signature=answer))


good_hellos = st.sampled_from(UNIT_NAMES).map(lambda u: _hello(identities().keys[u]))
first_messages = st.one_of(
    good_hellos,
    st.sampled_from(UNIT_NAMES).map(lambda u: _hello(identities().keys[u], hub="another-hub")),
    odd_credential_hello(),
    st.builds(f.Hello, credential=blobs(4096) | hostile.map(pack), credential_sig=blobs(64),
              signature=blobs(64)).map(codec.encode),
    any_limits_frames.map(codec.encode),
    arbitrary_bytes.map(lambda s: s[1]),
    plausible_maps().map(lambda s: s[1]),
)
later_messages = st.one_of(
    any_limits_frames.map(codec.encode),
    good_hellos,
    arbitrary_bytes.map(lambda s: s[1]),
    plausible_maps().map(lambda s: s[1]),
)
session_scripts = st.builds(
    SessionScript, limits=limit_names, open_enrollment=st.booleans(),
    messages=st.tuples(first_messages, st.lists(later_messages, max_size=6)).map(
        lambda t: (t[0], *t[1])))


#: The close code for each code of a peer's fault (protocol.md 13.3).
CLOSE_CODES = {Code.MALFORMED: CloseCode.MALFORMED, Code.TOO_LARGE: CloseCode.TOO_LARGE,
               Code.UNEXPECTED: CloseCode.UNEXPECTED}
AUTH_CODES = {Code.UNKNOWN_UNIT, Code.BAD_CREDENTIAL, Code.EXPIRED_CREDENTIAL,
              Code.BAD_SIGNATURE, Code.UNKNOWN_AUTHORITY}


def check_session(script: SessionScript) -> None:
    """``receive`` never raises; a hello is answered by ready and passed on as
    Authenticated; after it every frame is passed on unchanged; any fault is one error
    frame with its code and close code, after which nothing is passed on or sent."""
    ids_ = identities()
    lim = LIMITS[script.limits]
    session = ServerSession(hub_id=HUB, ring=ids_.ring(), directory=ids_.directory.get,
                            now=lambda: NOW, token_bytes=lambda n: NONCE[:n], limits=lim,
                            session_id="s-fuzz", open_enrollment=script.open_enrollment)
    assert _sent(session) == [f.Challenge(nonce=NONCE, hub=HUB)]
    for data in script.messages:
        before = session.state
        events = session.receive(data)
        out = _sent(session)
        if before is State.CLOSED:
            assert (events, out) == ([], [])
        elif session.state is State.CLOSED:
            assert events == []
            [error] = out
            _check_fault(session, error)
        elif before is State.AWAIT_HELLO:
            [auth] = events
            assert isinstance(auth, Authenticated)
            assert session.state is State.READY
            assert session.unit == auth.credential.unit
            assert out == [f.Ready(unit=auth.credential.unit, session="s-fuzz",
                                   limits=lim.as_dict())]
        else:
            assert session.state is State.READY
            assert out == []
            assert events == [codec.decode(data, lim)]
            assert isinstance(events[0], CLIENT_FRAMES)
            assert not isinstance(events[0], f.Hello)


def _check_fault(session: ServerSession, error: f.Frame) -> None:
    assert isinstance(error, f.Error), error
    assert (error.rid, error.op, error.cid) == (None, None, None)
    assert len(error.message) <= f.MAX_MESSAGE
    assert session.close_reason == error.code
    if error.code in AUTH_CODES:
        assert session.close_code == CloseCode.AUTH
    else:
        assert session.close_code == CLOSE_CODES.get(error.code), (error.code, session.close_code)


def _sent(session: ServerSession) -> list[f.Frame]:
    return [codec.decode(data, ROOMY) for data in session.data_to_send()]


TARGETS = [
    Target("codec-bytes", arbitrary_bytes, check_decode, 300,
           "tests/fuzz/test_wire.py::test_wire_arbitrary_bytes_decode_or_raise_decode_error"),
    Target("codec-maps", plausible_maps(), check_decode, 400,
           "tests/fuzz/test_wire.py::test_wire_plausible_maps_decode_or_raise_decode_error"),
    Target("codec-round-trip", limited_frames(), check_round_trip, 200,
           "tests/fuzz/test_wire.py::test_wire_valid_frames_round_trip"),
    Target("session", session_scripts, check_session, 150,
           "tests/fuzz/test_wire.py::test_wire_session_answers_every_fault_with_one_error"),
]
