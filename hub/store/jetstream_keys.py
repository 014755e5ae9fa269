"""Key packages in JetStream (hub/store/jetstream.py): one subject per package in
``OPSHUB_KEYPACKAGES``, one-time packages under ``.o.``, the last-resort one under ``.r.``. A
claim deletes the oldest one-time package; the stream's leader orders deletes, so exactly one
of two nodes claiming the same package succeeds, and a package is handed out once.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import errors as jse

from hub.store.jetstream_layout import (
    KP_STREAM,
    NO_MESSAGE_FOUND,
    WRONG_LAST_SEQUENCE,
    hex_id,
)
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
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
        held = await self._one_time(unit)
        for seq in held[:max(0, len(held) - MAX_STORED_PER_UNIT)]:  # keep the newest
            await delete_entry(self.js, KP_STREAM, seq)
        return KeyPackagesStored(min(len(held), MAX_STORED_PER_UNIT))

    async def claim(self, cmd: ClaimKeyPackages) -> KeyPackagesClaimed:
        """The oldest one-time package of each unit, deleted as it is handed out (a delete
        succeeds once, so two nodes never hand out the same package); else the unit's
        last-resort package, kept."""
        out: dict[str, bytes] = {}
        for unit in dict.fromkeys(cmd.units):
            u = hex_id(unit)
            for seq, body in await self._read_raw(KP_STREAM, f"opshub.kp.{u}.o.*"):
                if not await delete_entry(self.js, KP_STREAM, seq):
                    continue  # claimed meanwhile through another node
                out[unit] = body
                break
            else:
                last = await self._read_raw(KP_STREAM, f"opshub.kp.{u}.r.*")
                if last:
                    out[unit] = last[-1][1]
        return KeyPackagesClaimed(out)

    async def _one_time(self, unit_hex: str) -> list[int]:
        """Stream seqs of a unit's one-time packages, oldest first."""
        info = await self.js.stream_info(KP_STREAM, subjects_filter=f"opshub.kp.{unit_hex}.o.*")
        if not info.state.subjects:
            return []
        return [seq for seq, _ in await self._read_raw(KP_STREAM, f"opshub.kp.{unit_hex}.o.*")]

    async def _read_raw(self, stream: str, subject: str) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        seq = 0
        while True:
            try:
                msg = await self.js.get_msg(stream, seq=seq + 1, subject=subject, next=True)
            except jse.NotFoundError:
                return out
            assert msg.seq is not None
            seq = msg.seq
            out.append((seq, msg.data or b""))


async def delete_entry(js: JetStreamContext, stream: str, seq: int) -> bool:
    """Delete one entry; False if it is gone already (another node deleted it: the
    stream's leader orders the deletes, so exactly one of them succeeds)."""
    try:
        return await js.delete_msg(stream, seq)
    except jse.APIError as exc:
        if exc.err_code in (NO_MESSAGE_FOUND, 10037) or exc.code == 404:
            return False
        raise
