"""Where a load run's CPU went: the hub's (from its /metrics), the load processes' (each
one's time.process_time from Start to Stop), and with --e2ee the agents' crypto calls
(e2ee.CryptoMeter) and the key rotations; per message, so that runs of different rates
and shapes compare.

Pure: everything comes in as data. Per message means: for the hub, its CPU from the first
/metrics sample (the start of the measurement) to the last (the end of the drain) over
the messages acknowledged in the measured seconds; for the load processes, their CPU over
the messages they sent and received (the warm-up's included, as their CPU is), and how
busy the busiest one was (CPU over wall time, the drain included): near a whole core, the
latency measured is the load process's as much as the hub's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opshub.load import messages as m


def _per(seconds: float | None, n: int) -> float | None:
    """Milliseconds per item, None when there is nothing to divide."""
    if seconds is None or n <= 0:
        return None
    return round(seconds * 1000 / n, 4)


def summary(results: Sequence[m.Result], *, hub: dict[str, Any], acked: int,
            delivered: int) -> dict[str, Any]:
    """The ``cpu`` section of a result. ``acked`` and ``delivered``: the measured
    seconds' messages in and deliveries."""
    hub_s = hub.get("cpu_s")
    out: dict[str, Any] = {"hub": {"cpu_s": hub_s, "ms_per_message": _per(hub_s, acked),
                                   "ms_per_delivery": _per(hub_s, delivered)}}
    processes: dict[str, dict[str, Any]] = {}
    for r in results:
        group = processes.setdefault(r.role or "load", {"processes": 0, "cpu_s": 0.0,
                                                        "busiest": 0.0, "sent": 0,
                                                        "received": 0})
        group["processes"] += 1
        group["cpu_s"] = round(group["cpu_s"] + r.cpu_s, 3)
        # CPU over wall time of its busiest process (1.0: a core all along), drain included
        group["busiest"] = max(group["busiest"], round(r.cpu_s / r.wall_s, 2) if r.wall_s else 0)
        group["sent"] += r.counts.get(m.SENT, 0) + r.counts.get(m.DIRECTED_SENT, 0)
        group["received"] += (r.counts.get(m.DELIVERED, 0)
                              + r.counts.get(m.DIRECTED_DELIVERED, 0))
    for group in processes.values():
        # a message a process handled: one it sent or one it received
        group["ms_per_message"] = _per(group["cpu_s"], group["sent"] + group["received"])
    out["load_processes"] = processes
    crypto: dict[str, list[float]] = {}
    epochs: dict[str, int] = {}
    for r in results:
        for kind, (seconds, count) in r.crypto.items():
            total = crypto.setdefault(kind, [0.0, 0])
            total[0] += seconds
            total[1] += count
        epochs.update(r.epochs)
    if crypto or epochs:
        out["crypto"] = {kind: {"seconds": round(s, 3), "count": int(n),
                                "ms_each": _per(s, int(n))}
                         for kind, (s, n) in sorted(crypto.items())}
        out["epochs"] = epochs
        out["rotations"] = sum(epochs.values())  # epoch 0 is the channel's creation
    return out


def lines(cpu: dict[str, Any]) -> list[str]:
    """The summary's lines about CPU."""
    hub = cpu["hub"]
    out = [f"  cpu per message  hub {_ms(hub['ms_per_message'])} "
           f"({_ms(hub['ms_per_delivery'])} per delivery)"]
    for role, g in cpu["load_processes"].items():
        out.append(f"                   {role} {_ms(g['ms_per_message'])} per message "
                   f"handled ({g['processes']} process(es), {g['cpu_s']:g} s CPU, the "
                   f"busiest {g['busiest']:.0%} of a core; sent {g['sent']:,}, received "
                   f"{g['received']:,})")
    crypto = cpu.get("crypto")
    if crypto is not None:
        names = {"encrypt": "encrypt+sign", "decrypt": "decrypt+verify",
                 "keys": "key schedule (commits, welcomes)"}
        shown = ", ".join(f"{names.get(k, k)} {_ms(v['ms_each'])} x {v['count']:,}"
                          for k, v in crypto.items())
        out.append(f"  crypto (agents)  {shown}; key rotations {cpu['rotations']}")
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f} ms"
