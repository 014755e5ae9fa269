"""``opshub load``: a load-testing tool for a hub, open loop first.

It runs shapes of traffic (operations x publishers x subscribers, directed messages, sizes
from a distribution, a YAML profile mixing shapes, or one operation shaped like a
scenario) against a hub it starts or a running one, opaque payloads or, with --e2ee, real
SecureAgents signing, encrypting, decrypting, verifying and rotating keys, at constant or
stepped arrival rates per publisher (latency measured from the intended send time, so
coordinated omission is corrected) or closed loop with a window; it records
HdrHistograms in every load process and merges them, verifies that every delivery arrived,
resumes subscribers the hub closes, samples the hub's /metrics, and ends with a summary,
JSON, CSV, an HdrHistogram log and k6-style thresholds.

Modules, pure first: ``spec`` (sizes, rates, shapes, options), ``profile`` (the YAML
file), ``scenario_shape`` (a scenario's participants, shares and sizes; reads the file),
``thresholds``, ``histograms`` (HDR helpers and the log file), ``traffic`` (the schedule
and payloads), ``e2ee_traffic`` (what --e2ee encrypts and its readers check), ``plan``
(units, operations, processes), ``messages`` (what the processes tell each other),
``recorder`` (one process's counts and histograms), ``series`` (per-second and per-step
aggregation), ``cpu`` (where the CPU went, per message), ``results`` (the result); then
the I/O: ``channel``, ``subscriber``, ``publisher``, ``e2ee`` (SecureAgents as
publishers and readers), ``worker`` (a load process), ``processes`` (the parent's side of
them), ``target`` (the hub under test), ``runner`` (the parent), ``report`` and
``command`` (the CLI).
"""
