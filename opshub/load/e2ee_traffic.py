"""What ``opshub load --e2ee`` encrypts and what its readers check: the content of each
message, the sizes end-to-end encryption allows, the per-sender order check, and the
shapes --e2ee refuses.

Pure. The content (the plaintext a SecureAgent encrypts as opaque application bytes,
content type APPLICATION) is traffic.STAMP (intended and actual send time), then the
sender's counter (0, 1, 2 ... per publishing unit), then FILLER_TEXT repeated up to the
message's size (text a test can look for where only ciphertext may be: the hub's files).
The counter is what lets a reader prove it got every message of each sender once and in
order: log seqs cannot, since the operation's log also holds the key rotations' commits
and a reader never receives its own messages.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from enum import Enum

from client.e2ee.message import SIGNATURE_SIZE, bucket
from opshub.load.spec import MAX_SIZE, Shape
from opshub.load.traffic import STAMP
from protocol.errors import UsageError

COUNTER = struct.Struct(">Q")
#: The smallest content: the stamp and the counter.
MIN_CONTENT = STAMP.size + COUNTER.size
#: AES-GCM's tag, after the padded inner plaintext (client/e2ee/message.py).
_TAG = 16
#: The inner plaintext's length prefix (client/e2ee/message.py).
_LENGTH = 4


def ciphertext_size(content: int) -> int:
    """The ciphertext a SecureAgent publishes for ``content`` bytes: length prefix, content
    and signature, padded (``bucket``), plus the AEAD tag."""
    return bucket(_LENGTH + content + SIGNATURE_SIZE) + _TAG


def max_content(limit: int = MAX_SIZE) -> int:
    """The largest content whose ciphertext fits the hub's max_payload ``limit``."""
    low, high = 0, limit  # ciphertext_size grows with the content: a binary search
    while low < high:
        mid = (low + high + 1) // 2
        if ciphertext_size(mid) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


MAX_CONTENT = max_content()
FILLER_TEXT = b"opshub load --e2ee: plaintext that only the operation's members read. "
FILLER = (FILLER_TEXT * (MAX_CONTENT // len(FILLER_TEXT) + 1))[:MAX_CONTENT]


def content(size: int, intended_ns: int, sent_ns: int, counter: int) -> bytes:
    """The plaintext of one message: at least MIN_CONTENT bytes, at most MAX_CONTENT."""
    size = min(MAX_CONTENT, max(MIN_CONTENT, size))
    return (STAMP.pack(intended_ns, sent_ns) + COUNTER.pack(counter)
            + FILLER[: size - MIN_CONTENT])


def read_content(data: bytes) -> tuple[int, int, int] | None:
    """(intended, sent, counter) of a load message, None for anything shorter."""
    if len(data) < MIN_CONTENT:
        return None
    intended, sent = STAMP.unpack_from(data)
    (counter,) = COUNTER.unpack_from(data, STAMP.size)
    return intended, sent, counter


class Order(Enum):
    IN_ORDER = "in order"
    GAP = "gap"  # in order, but after a message that never came
    DUPLICATE = "duplicate"  # a counter already passed: again, or out of order


class SenderOrder:
    """One reader's check: every sender's counters arrive once each, in order."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}  # sender -> the counter expected next
        self.received: dict[str, int] = {}  # sender -> messages taken (not duplicates)

    def take(self, sender: str, counter: int) -> Order:
        expected = self.next.get(sender, 0)
        if counter < expected:
            return Order.DUPLICATE
        self.next[sender] = counter + 1
        self.received[sender] = self.received.get(sender, 0) + 1
        return Order.GAP if counter > expected else Order.IN_ORDER

    def missing(self, owed: Mapping[str, int]) -> int:
        """Messages still owed: ``owed`` is sender -> messages the hub acknowledged."""
        return sum(max(0, n - self.received.get(s, 0)) for s, n in owed.items())


def check_e2ee(shapes: Sequence[Shape]) -> None:
    """Refuse what --e2ee cannot send. Raises UsageError naming the shape's field."""
    for s in shapes:
        if s.directed:
            raise UsageError(
                f"{s.where}directed: --e2ee sends every message on the operation's "
                f"end-to-end encrypted channel; a SecureAgent sends no directed application "
                f"messages (directed messages carry its welcomes): drop the directed share")
        size = s.size
        if size.kind in ("fixed", "uniform") and size.low < MIN_CONTENT:
            raise UsageError(f"{s.where}size: {size.text!r} is below {MIN_CONTENT} bytes: "
                             f"with --e2ee each message carries its send times and its "
                             f"sender's counter ({MIN_CONTENT} bytes)")
        top = size.high if size.kind == "uniform" else size.low
        if size.kind in ("fixed", "uniform", "lognormal") and top > MAX_CONTENT:
            raise UsageError(f"{s.where}size: {size.text!r} is above {MAX_CONTENT} bytes, the "
                             f"largest message whose ciphertext (padded, signed, sealed) "
                             f"fits the hub's max_payload of {MAX_SIZE}")
