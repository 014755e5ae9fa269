"""Where the hub's state lives in JetStream: the names of its streams, subjects and buckets,
and the server's error codes the store tells apart (hub/store/jetstream.py has the why)."""

from __future__ import annotations

from protocol import frames as f

OPS_STREAM = "OPSHUB_OPERATIONS"
DIRECTED_STREAM = "OPSHUB_DIRECTED"
KP_STREAM = "OPSHUB_KEYPACKAGES"
#: the answer of each kp_claim with a cid: subject opshub.kpc.<claimer>.<op>.<cid>
KP_CLAIMS_STREAM = "OPSHUB_KEYPACKAGE_CLAIMS"
DIRECTORY_BUCKET = "opshub_directory"
CURSOR_BUCKET = "opshub_cursors"
#: How long a retried publish is recognised as the same message (``Nats-Msg-Id``). An agent
#: retries an unacknowledged publish on every reconnect; past this window a retry would be
#: stored a second time (under a new seq), which the E2EE agents' replay check drops.
DEDUP_WINDOW = 3600.0
#: Ordered consumers' idle heartbeat: a consumer whose server died is recreated after
#: about two of these (nats-py's ordered consumer does it).
HEARTBEAT = 1.0
#: Entries of each operation kept in memory for subscribers a little behind (1 KiB
#: entries: about 1 MiB an operation).
RECENT = 1024
#: the server's error codes for a failed Nats-Expected-Last-Subject-Sequence check: 10071
#: ("wrong last sequence: N") from a lone server or a check against the store, 10164 ("wrong
#: last sequence", no N) from a replicated stream refusing while another write of the same
#: subject is still in flight. Both mean the same thing: someone else wrote first.
WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
#: ... for a replicated stream that cannot be placed yet ("no suitable peers for placement,
#: peer offline"): a server is starting or restarting and the meta leader does not count it
#: yet. Worth another try, like a missing leader.
NO_SUITABLE_PEERS = 10005
#: ... and for deleting an entry that is not there (any more)
NO_MESSAGE_FOUND = 10057


def hex_id(name: str) -> str:
    """Stream names and subject tokens cannot hold every character of an id ('.', ':');
    hex can, and stays readable enough in `nats stream ls`."""
    return name.encode().hex()


def op_stream(op: str) -> str:
    """The stream holding operation ``op``'s log."""
    return f"OPSHUB_OP_{hex_id(op)}"


def op_subject(op: str, kind: int) -> str:
    """Statements (``.c``) and messages (``.m``) of ``op``'s log."""
    return f"opshub.op.{hex_id(op)}.{'c' if kind == f.KIND_COMMIT else 'm'}"
