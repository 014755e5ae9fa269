"""Replay of documented operations: scenarios, the traffic generator, agents on a virtual
clock over a real hub, and the OCU's after-action report."""
