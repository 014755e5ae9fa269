"""msgpack codec for frames: size limit, unpack, shape check, dataclass. No I/O.

``decode`` is the only door from bytes to frames. Whatever is wrong with the
input (too large, not msgpack, not a map, a missing or mistyped field) becomes a
single ``DecodeError`` whose ``ref`` is the JSON-ish path of the problem; no
other exception escapes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import frames as f
from protocol.errors import DecodeError, FrameTooLarge

#: A signed key package is ~1.3 KiB with the hybrid KEM; an upload carries at most this many.
MAX_KEY_PACKAGE = 2048
MAX_KEY_PACKAGES_PER_FRAME = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one frame may hold. Hub and agents read the same numbers."""

    max_frame: int = 4 * 1024 * 1024
    max_batch: int = 1024
    max_header: int = 1024
    max_payload: int = 256 * 1024

    def as_dict(self) -> dict[str, int]:
        return {
            "max_frame": self.max_frame,
            "max_batch": self.max_batch,
            "max_header": self.max_header,
            "max_payload": self.max_payload,
        }


DEFAULT_LIMITS = Limits()


def encode(frame: f.Frame) -> bytes:
    """Encode a frame to bytes. Raises nothing for frames built from valid values."""
    return msgpack.packb(frame.to_wire(), use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> f.Frame:
    """Decode one frame. Raises DecodeError (FrameTooLarge for oversize input), only."""
    if len(data) > limits.max_frame:
        raise FrameTooLarge(
            f"frame of {len(data)} bytes exceeds the limit of {limits.max_frame}", ref="$"
        )
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"not a msgpack document: {type(exc).__name__}: {exc}", ref="$") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"frame must be a map, got {_kind(obj)}", ref="$")
    r = _Reader(obj, "$", limits)
    t = r.text("t", max_len=16)
    parser = _PARSERS.get(t)
    if parser is None:
        raise DecodeError(f"unknown frame type {t!r}", ref="$.t")
    return parser(r)


def _kind(value: Any) -> str:
    return type(value).__name__


class _Reader:
    """Typed access to one decoded map that reports the path of anything wrong."""

    __slots__ = ("limits", "obj", "path")

    def __init__(self, obj: dict[str, Any], path: str, limits: Limits) -> None:
        self.obj = obj
        self.path = path
        self.limits = limits

    def _get(self, key: str, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            raise DecodeError(f"missing field {key!r}", ref=f"{self.path}.{key}")
        return self.obj[key]

    def text(self, key: str, *, max_len: int = 256, optional: bool = False) -> Any:
        v = self._get(key, optional)
        if v is None and optional:
            return None
        return check_str(v, f"{self.path}.{key}", max_len)

    def id(self, key: str) -> str:
        return check_id(self._get(key), f"{self.path}.{key}")

    def uint(self, key: str, *, optional: bool = False) -> Any:
        v = self._get(key, optional)
        if v is None and optional:
            return None
        return check_uint(v, f"{self.path}.{key}")

    def binary(self, key: str, *, max_len: int) -> bytes:
        return check_bytes(self._get(key), f"{self.path}.{key}", max_len)

    def array(self, key: str, *, max_len: int) -> list[Any]:
        v = self._get(key)
        p = f"{self.path}.{key}"
        if not isinstance(v, list):
            raise DecodeError(f"expected an array, got {_kind(v)}", ref=p)
        if len(v) > max_len:
            raise DecodeError(f"{len(v)} entries exceed the limit of {max_len}", ref=p)
        return v

    def flag(self, key: str) -> bool:
        """An optional boolean, False when absent."""
        v = self._get(key, optional=True)
        if v is None:
            return False
        if type(v) is not bool:
            raise DecodeError(f"expected a boolean, got {_kind(v)}", ref=f"{self.path}.{key}")
        return v

    def mapping(self, key: str) -> dict[str, Any]:
        v = self._get(key)
        if not isinstance(v, dict):
            raise DecodeError(f"expected a map, got {_kind(v)}", ref=f"{self.path}.{key}")
        return v


def check_str(v: Any, path: str, max_len: int) -> str:
    if not isinstance(v, str):
        raise DecodeError(f"expected a string, got {_kind(v)}", ref=path)
    if len(v) > max_len:
        raise DecodeError(f"string of {len(v)} characters exceeds {max_len}", ref=path)
    return v


def check_id(v: Any, path: str) -> str:
    s = check_str(v, path, 64)
    if not f.valid_id(s):
        raise DecodeError(f"invalid identifier {s!r} (expected [A-Za-z0-9._:-], 1-64)", ref=path)
    return s


def check_uint(v: Any, path: str) -> int:
    # bool is an int subclass; a True where a number belongs is a peer bug.
    if not isinstance(v, int) or isinstance(v, bool):
        raise DecodeError(f"expected an integer, got {_kind(v)}", ref=path)
    if v < 0 or v >= 2**63:
        raise DecodeError(f"integer {v} out of range 0..2^63-1", ref=path)
    return v


def check_bytes(v: Any, path: str, max_len: int) -> bytes:
    if not isinstance(v, bytes):
        raise DecodeError(f"expected binary, got {_kind(v)}", ref=path)
    if len(v) > max_len:
        raise DecodeError(f"{len(v)} bytes exceed the limit of {max_len}", ref=path)
    return v


def _tuple_items(r: _Reader, key: str, arity: int) -> list[tuple[str, list[Any]]]:
    out = []
    for i, item in enumerate(r.array(key, max_len=r.limits.max_batch)):
        p = f"{r.path}.{key}[{i}]"
        if not isinstance(item, list) or len(item) != arity:
            raise DecodeError(f"expected an array of {arity} values", ref=p)
        out.append((p, item))
    return out


# --- per-type parsers ---------------------------------------------------------------


def _challenge(r: _Reader) -> f.Challenge:
    return f.Challenge(nonce=r.binary("nonce", max_len=64), hub=r.text("hub"), version=r.uint("v"))


def _ready(r: _Reader) -> f.Ready:
    limits = r.mapping("limits")
    return f.Ready(
        unit=r.id("unit"),
        session=r.text("session"),
        limits={
            check_str(k, f"$.limits.{k}", 32): check_uint(v, f"$.limits.{k}")
            for k, v in limits.items()
        },
    )


def _error(r: _Reader) -> f.Error:
    return f.Error(
        code=r.text("code", max_len=64),
        message=r.text("message", max_len=4096),
        rid=r.uint("rid", optional=True),
        op=r.text("op", optional=True, max_len=64),
        cid=r.uint("cid", optional=True),
    )


def _ok(r: _Reader) -> f.Ok:
    return f.Ok(rid=r.uint("rid"), info=r.mapping("info"))


def _acks(r: _Reader) -> f.Acks:
    items = []
    for i, it in enumerate(r.array("items", max_len=r.limits.max_batch)):
        # Hot path (see _publish): plain type tests, the checked path names the field.
        if type(it) is list and len(it) == 3:
            op, cid, seq = it
            if (type(op) is str and type(cid) is int and type(seq) is int
                    and 0 <= cid < 2**63 and 0 <= seq < 2**63 and len(op) <= 64 and _id_ok(op)):
                items.append((op, cid, seq))
                continue
        p = f"$.items[{i}]"
        if not isinstance(it, list) or len(it) != 3:
            raise DecodeError("expected an array of 3 values", ref=p)
        items.append((check_id(it[0], p + "[0]"), check_uint(it[1], p + "[1]"),
                      check_uint(it[2], p + "[2]")))
    return f.Acks(items=tuple(items))


def _deliver(r: _Reader) -> f.Deliver:
    lim = r.limits
    max_header, max_payload = lim.max_header, lim.max_frame
    items = []
    for i, it in enumerate(r.array("items", max_len=lim.max_batch)):
        if type(it) is list and len(it) == 6:
            seq, sender, kind, header, payload, at_ms = it
            if (type(seq) is int and type(sender) is str and type(kind) is int
                    and type(header) is bytes and type(payload) is bytes and type(at_ms) is int
                    and 0 <= seq < 2**63 and 0 <= kind < 2**63 and 0 <= at_ms < 2**63
                    and len(header) <= max_header and len(payload) <= max_payload
                    and len(sender) <= 64 and _id_ok(sender)):
                items.append(f.Delivery(seq=seq, sender=sender, kind=kind, header=header,
                                        payload=payload, at_ms=at_ms))
                continue
        p = f"$.items[{i}]"
        if not isinstance(it, list) or len(it) != 6:
            raise DecodeError("expected an array of 6 values", ref=p)
        items.append(f.Delivery(
            seq=check_uint(it[0], p + "[0]"),
            sender=check_id(it[1], p + "[1]"),
            kind=check_uint(it[2], p + "[2]"),
            header=check_bytes(it[3], p + "[3]", max_header),
            payload=check_bytes(it[4], p + "[4]", max_payload),
            at_ms=check_uint(it[5], p + "[5]"),
        ))
    return f.Deliver(op=r.id("op"), items=tuple(items))


def _ended(r: _Reader) -> f.Ended:
    return f.Ended(op=r.id("op"), reason=r.text("reason"))


def _directed(r: _Reader) -> f.Directed:
    lim = r.limits
    items = tuple(
        f.DirectedItem(
            id=check_uint(it[0], p + "[0]"),
            op=check_id(it[1], p + "[1]"),
            sender=check_id(it[2], p + "[2]"),
            payload=check_bytes(it[3], p + "[3]", lim.max_frame),
            at_ms=check_uint(it[4], p + "[4]"),
        )
        for p, it in _tuple_items(r, "items", 5)
    )
    return f.Directed(items=items)


def _hello(r: _Reader) -> f.Hello:
    return f.Hello(
        credential=r.binary("cred", max_len=4096),
        credential_sig=r.binary("cred_sig", max_len=64),
        signature=r.binary("sig", max_len=64),
    )


def _publish(r: _Reader) -> f.Publish:
    lim = r.limits
    raw = r.array("items", max_len=lim.max_batch)
    if not raw:
        raise DecodeError("a publish frame needs at least one item", ref="$.items")
    items = []
    max_header, max_payload, id_ok = lim.max_header, lim.max_payload, _id_ok
    for i, it in enumerate(raw):
        # Hot path: one type test per field; anything unusual takes the checked path
        # below, which names the offending field.
        if type(it) is list and len(it) == 4:
            op, cid, header, payload = it
            if (type(op) is str and type(cid) is int and type(header) is bytes
                    and type(payload) is bytes and 0 <= cid < 2**63
                    and len(header) <= max_header and len(payload) <= max_payload
                    and len(op) <= 64 and id_ok(op)):
                items.append(f.PublishItem(op=op, cid=cid, header=header, payload=payload))
                continue
        p = f"$.items[{i}]"
        if not isinstance(it, list) or len(it) != 4:
            raise DecodeError("expected an array of 4 values", ref=p)
        items.append(f.PublishItem(
            op=check_id(it[0], p + "[0]"),
            cid=check_uint(it[1], p + "[1]"),
            header=check_bytes(it[2], p + "[2]", max_header),
            payload=check_bytes(it[3], p + "[3]", max_payload),
        ))
    return f.Publish(items=tuple(items))


@functools.lru_cache(maxsize=4096)
def _id_ok(value: str) -> bool:
    """Cached: a hub sees the same few operation ids in every frame. Callers bound the
    length first, so a peer cannot fill the cache with large strings."""
    return f.valid_id(value)


MAX_SENDERS = 256


def _subscribe(r: _Reader) -> f.Subscribe:
    senders = None
    if r.obj.get("senders") is not None:
        senders = tuple(check_id(v, f"{r.path}.senders[{i}]") for i, v in
                        enumerate(r.array("senders", max_len=MAX_SENDERS)))
    return f.Subscribe(rid=r.uint("rid"), op=r.id("op"), after=r.uint("after", optional=True),
                       senders=senders)


def _unsubscribe(r: _Reader) -> f.Unsubscribe:
    return f.Unsubscribe(rid=r.uint("rid"), op=r.id("op"))


def _ack(r: _Reader) -> f.Ack:
    return f.Ack(op=r.id("op"), seq=r.uint("seq"))


def _commit(r: _Reader) -> f.Commit:
    return f.Commit(
        rid=r.uint("rid"),
        # bounded by the frame, not max_payload: a commit seals the epoch's keys to every
        # member (~1.2 KiB each with the hybrid KEM), so max_payload would cap an
        # operation at ~215 members
        statement=r.binary("stmt", max_len=r.limits.max_frame),
        signature=r.binary("sig", max_len=64),
    )


def _send(r: _Reader) -> f.SendDirected:
    return f.SendDirected(
        rid=r.uint("rid"),
        op=r.id("op"),
        to=r.id("to"),
        payload=r.binary("payload", max_len=r.limits.max_payload),
        cid=r.uint("cid", optional=True),
    )


def _dack(r: _Reader) -> f.DirectedAck:
    ids = r.array("ids", max_len=r.limits.max_batch)
    return f.DirectedAck(ids=tuple(check_uint(v, f"$.ids[{i}]") for i, v in enumerate(ids)))


def _kp_put(r: _Reader) -> f.PutKeyPackages:
    raw = r.array("packages", max_len=MAX_KEY_PACKAGES_PER_FRAME)
    return f.PutKeyPackages(rid=r.uint("rid"), packages=tuple(
        check_bytes(v, f"$.packages[{i}]", MAX_KEY_PACKAGE) for i, v in enumerate(raw)),
        replace=r.flag("replace"))


def _kp_claim(r: _Reader) -> f.ClaimKeyPackages:
    raw = r.array("units", max_len=r.limits.max_batch)
    # op and cid are optional so that an older agent's claim decodes (and is refused by
    # the router with not_admin, the connection kept) instead of closing the connection
    op = None if r.obj.get("op") is None else r.id("op")
    return f.ClaimKeyPackages(rid=r.uint("rid"), units=tuple(
        check_id(v, f"$.units[{i}]") for i, v in enumerate(raw)), op=op,
        cid=r.uint("cid", optional=True))


_PARSERS: dict[str, Callable[[_Reader], f.Frame]] = {
    f.Challenge.T: _challenge,
    f.Ready.T: _ready,
    f.Error.T: _error,
    f.Ok.T: _ok,
    f.Acks.T: _acks,
    f.Deliver.T: _deliver,
    f.Ended.T: _ended,
    f.Directed.T: _directed,
    f.Hello.T: _hello,
    f.Publish.T: _publish,
    f.Subscribe.T: _subscribe,
    f.Unsubscribe.T: _unsubscribe,
    f.Ack.T: _ack,
    f.Commit.T: _commit,
    f.SendDirected.T: _send,
    f.DirectedAck.T: _dack,
    f.PutKeyPackages.T: _kp_put,
    f.ClaimKeyPackages.T: _kp_claim,
}
