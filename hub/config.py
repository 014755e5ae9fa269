"""HubConfig: every tunable of a hub in one frozen dataclass, with defaults that serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hub.protocol.codec import Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    db: Path = Path("opshub.db")
    hub_id: str = "opshub"
    #: Raw Ed25519 public keys of the operation authorities this hub trusts.
    authorities: tuple[bytes, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: Deliveries queue per connection up to this many bytes; beyond it the subscriber
    #: reads from the store at its own pace instead of from memory.
    max_outbound_bytes: int = 32 * 1024 * 1024
    #: A connection that reads nothing for this long while frames wait is closed (1013).
    slow_consumer_timeout: float = 10.0
    max_operations_per_unit: int = 64
    #: Accept any authority-signed credential at handshake and enroll it, instead of
    #: requiring the unit in the directory first (convenient for load tests).
    open_enrollment: bool = False
    handshake_timeout: float = 10.0
    cursor_flush_interval: float = 0.5
    #: "coalesced": one frame per operation and transaction to each subscriber (default).
    #: "per-delivery": one frame, and one awaited send, per entry per subscriber: the
    #: naive design, kept only as the benchmark's reference point.
    fanout: str = "coalesced"
    #: Entries per frame when replaying a log to a subscriber that is behind.
    catchup_page: int = 512
