"""HubConfig: every tunable of a hub in one frozen dataclass, with defaults that serve."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from protocol.codec import Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    db: Path = Path("opshub.db")
    #: Where the hub keeps its state: "" for the SQLite file ``db`` (one hub node), or
    #: NATS server URLs "nats://host:port[,nats://host:port...]" for the JetStream store
    #: that several hub nodes share (hub/store/jetstream.py, docs/scale.md).
    store: str = ""
    #: TLS: the hub's certificate (PEM, with any intermediates) and its private key; with
    #: both, agents connect over wss:// and the HTTP API is https:// (hub/tls.py).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hub_id: str = "opshub"
    #: Raw Ed25519 public keys of the operation authorities this hub trusts.
    authorities: tuple[bytes, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: Deliveries queue per connection up to this many bytes; beyond it the subscriber
    #: reads from the store at its own pace instead of from memory.
    max_outbound_bytes: int = 32 * 1024 * 1024
    #: A connection that takes no bytes for this long while bytes wait for it is closed
    #: (1013), or reset if it does not take the close frame either (protocol.md 14.4).
    slow_consumer_timeout: float = 10.0
    #: SO_SNDBUF of each WebSocket connection (the kernel doubles it): what the kernel holds
    #: for a peer, and so what a slow consumer's close frame waits behind. 0 (the default)
    #: leaves it to the kernel's autotuning (up to net.ipv4.tcp_wmem's maximum, 4 MiB by
    #: default): 256 KiB cost a tenth of the hub's peak on loopback (docs/protocol.md 14.4).
    socket_send_buffer: int = 0
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
    #: The node's audit trail (hub/audit.py): None is ``<db>.audit`` beside the database;
    #: its key and anchor file ``audit_key``, None is the audit file's name + ".key".
    audit_db: Path | None = None
    audit_key: Path | None = None
    #: Registrars of the HTTP API (hub/api_auth.py): the units named here, and the units
    #: whose credential has one of these roles, may enroll credentials and see the whole
    #: directory and every operation; any other unit sees only its own operations.
    registrar_units: tuple[str, ...] = ()
    registrar_roles: tuple[str, ...] = ("ocu",)
    #: /healthz and /metrics listen apart from agents and the API, on metrics_host (this
    #: machine only, by default) at metrics_port: None is ``port`` + 1 (a free port when
    #: ``port`` is 0), 0 a free port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    #: Per source address (hub/guard.py): connections open at once, new connections per
    #: second (a token bucket of ``connection_burst``), WebSocket handshakes likewise.
    #: Generous by default, because load tests come from one address (127.0.0.1).
    max_connections_per_source: int = 8192
    connection_rate: float = 1000.0
    connection_burst: int = 8192
    handshake_rate: float = 500.0
    handshake_burst: int = 8192
    #: Rejected requests are logged one WARNING line each, at most this many lines per
    #: second; the rest are counted in one summary line (and in /metrics).
    reject_log_rate: float = 5.0


#: Settings a config file may set (the rest come from flags or are derived).
_FILE_SETTINGS = frozenset({
    "hub_id", "max_outbound_bytes", "slow_consumer_timeout", "max_operations_per_unit",
    "open_enrollment", "handshake_timeout", "cursor_flush_interval", "catchup_page",
    "socket_send_buffer", "registrar_units", "registrar_roles", "max_connections_per_source",
    "connection_rate", "connection_burst", "handshake_rate", "handshake_burst",
    "reject_log_rate",
})


def load_config_file(path: Path, base: HubConfig) -> HubConfig:
    """Apply a TOML file to ``base``: top-level keys from _FILE_SETTINGS, and a [limits]
    table (max_frame, max_batch, max_header, max_payload). Raises ValueError naming an
    unknown key or a value of the wrong type."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config file {path}: {exc}") from None
    limits = data.pop("limits", {})
    unknown = set(data) - _FILE_SETTINGS
    limit_names = {f.name for f in fields(Limits)}
    unknown |= {f"limits.{k}" for k in set(limits) - limit_names}
    if unknown:
        raise ValueError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
    for key, value in list(data.items()):  # TOML arrays are lists; the settings are tuples
        if isinstance(getattr(base, key), tuple) and isinstance(value, list) and all(
                isinstance(v, str) for v in value):
            data[key] = tuple(value)
    for key, value in [*data.items(), *(("limits." + k, v) for k, v in limits.items())]:
        current = getattr(base.limits if key.startswith("limits.") else base,
                          key.removeprefix("limits."))
        if type(value) is not type(current) and not (
                isinstance(current, float) and type(value) is int):
            raise ValueError(f"{path}: {key} must be {type(current).__name__}, "
                             f"got {value!r}")
    return replace(base, **data, limits=replace(base.limits, **limits))
