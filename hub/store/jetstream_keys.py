"""Key packages in JetStream (hub/store/jetstream.py): one subject per package in
``OPSHUB_KEYPACKAGES``, one-time packages under ``.o.``, the last-resort one under ``.r.``. A
claim deletes the oldest one-time package; the stream's leader orders deletes, so exactly one
of two nodes claiming the same package succeeds, and a package is handed out once.

A claim with a cid records its answer in ``OPSHUB_KEYPACKAGE_CLAIMS``, one subject per
(claimer, op, cid), published only if the subject is still empty
(``Nats-Expected-Last-Subject-Sequence: 0``): of two nodes serving the same claim at once,
the first writer wins, the other answers the winner's record and puts back the one-time
packages it took. A retry reads the record and takes nothing.
"""

from __future__ import annotations

import msgpack
from nats.js import JetStreamContext
from nats.js import errors as jse

from hub.store.jetstream_layout import (
    KP_CLAIMS_STREAM,
    KP_STREAM,
    NO_MESSAGE_FOUND,
    WRONG_LAST_SEQUENCE,
    hex_id,
)
from protocol.errors import StoreError
from protocol.keypackages import MAX_STORED_PER_UNIT
from protocol.store import (
    ClaimKeyPackages,
    KeyPackagesClaimed,
    KeyPackagesStored,
    PutKeyPackages,
)


class KeyPackages:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def put(self, cmd: PutKeyPackages) -> KeyPackagesStored:
        unit = hex_id(cmd.unit)
        if cmd.replace:
            await self.js.purge_stream(KP_STREAM, subject=f"opshub.kp.{unit}.*.*")
        for kp_id, body, last_resort in cmd.packages:
            kind = "r" if last_resort else "o"
            if last_resort:
                await self.js.purge_stream(KP_STREAM, subject=f"opshub.kp.{unit}.r.*")
            try:  # a known id is ignored: the subject must still be empty
                await self.js.publish(f"opshub.kp.{unit}.{kind}.{kp_id.hex()}", body,
                                      headers={"Nats-Expected-Last-Subject-Sequence": "0"})
            except jse.APIError as exc:
                if exc.err_code not in WRONG_LAST_SEQUENCE:
                    raise
        held = await self._one_time(unit)
        for seq in held[:max(0, len(held) - MAX_STORED_PER_UNIT)]:  # keep the newest
            await delete_entry(self.js, KP_STREAM, seq)
        return KeyPackagesStored(min(len(held), MAX_STORED_PER_UNIT))

    async def claim(self, cmd: ClaimKeyPackages) -> KeyPackagesClaimed:
        """The oldest one-time package of each unit, deleted as it is handed out (a delete
        succeeds once, so two nodes never hand out the same package); else the unit's
        last-resort package, kept. With a cid: the recorded answer if there is one, else
        this one, recorded (module docstring)."""
        record = None
        if cmd.cid is not None:
            record = f"opshub.kpc.{hex_id(cmd.claimer)}.{hex_id(cmd.op)}.{cmd.cid}"
            first = await self._recorded(record)
            if first is not None:
                return first
        out: dict[str, bytes] = {}
        taken: dict[str, bytes] = {}  # subject -> body of the one-time packages deleted
        for unit in dict.fromkeys(cmd.units):
            u = hex_id(unit)
            for seq, subject, body in await self._read_raw(KP_STREAM, f"opshub.kp.{u}.o.*"):
                if not await delete_entry(self.js, KP_STREAM, seq):
                    continue  # claimed meanwhile through another node
                out[unit] = taken[subject] = body
                break
            else:
                last = await self._read_raw(KP_STREAM, f"opshub.kp.{u}.r.*")
                if last:
                    out[unit] = last[-1][2]
        missing = tuple(u for u in dict.fromkeys(cmd.units) if u not in out)
        if record is None:
            return KeyPackagesClaimed(out, missing)
        try:
            # No Nats-Msg-Id: within its window the server would acknowledge the loser's
            # copy as a duplicate, and the loser would take itself for the winner.
            await self.js.publish(record, msgpack.packb([out, list(missing)], use_bin_type=True),
                                  headers={"Nats-Expected-Last-Subject-Sequence": "0"})
        except jse.APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise  # stored or not, nothing is put back: lost packages, never doubled
            first = await self._recorded(record)
            if first is None:
                raise StoreError(f"claim {cmd.cid} of {cmd.claimer!r} for {cmd.op!r} was "
                                 f"recorded by another node but cannot be read") from None
            handed = set(first.packages.values())
            for subject, body in taken.items():
                if body not in handed:
                    await self._put_back(subject, body)
            return first
        return KeyPackagesClaimed(out, missing)

    async def _recorded(self, subject: str) -> KeyPackagesClaimed | None:
        """The answer recorded under ``subject``, if any."""
        try:
            msg = await self.js.get_last_msg(KP_CLAIMS_STREAM, subject)
        except jse.NotFoundError:
            return None
        packages, missing = msgpack.unpackb(msg.data or b"")
        return KeyPackagesClaimed(packages, tuple(missing), duplicate=True)

    async def _put_back(self, subject: str, body: bytes) -> None:
        """Store a one-time package again (after the oldest ones now: it is handed out
        last), unless it was uploaded again meanwhile."""
        try:
            await self.js.publish(subject, body,
                                  headers={"Nats-Expected-Last-Subject-Sequence": "0"})
        except jse.APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise

    async def _one_time(self, unit_hex: str) -> list[int]:
        """Stream seqs of a unit's one-time packages, oldest first."""
        info = await self.js.stream_info(KP_STREAM, subjects_filter=f"opshub.kp.{unit_hex}.o.*")
        if not info.state.subjects:
            return []
        return [seq for seq, _, _ in await self._read_raw(KP_STREAM,
                                                          f"opshub.kp.{unit_hex}.o.*")]

    async def _read_raw(self, stream: str, subject: str) -> list[tuple[int, str, bytes]]:
        """(stream seq, subject, data) of the entries on ``subject``, oldest first."""
        out: list[tuple[int, str, bytes]] = []
        seq = 0
        while True:
            try:
                msg = await self.js.get_msg(stream, seq=seq + 1, subject=subject, next=True)
            except jse.NotFoundError:
                return out
            assert msg.seq is not None
            seq = msg.seq
            out.append((seq, msg.subject or subject, msg.data or b""))


async def delete_entry(js: JetStreamContext, stream: str, seq: int) -> bool:
    """Delete one entry; False if it is gone already (another node deleted it: the
    stream's leader orders the deletes, so exactly one of them succeeds)."""
    try:
        return await js.delete_msg(stream, seq)
    except jse.APIError as exc:
        if exc.err_code in (NO_MESSAGE_FOUND, 10037) or exc.code == 404:
            return False
        raise
