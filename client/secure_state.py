"""SecureState: a SecureAgent's state kept in its state file, so that a restarted agent goes
on in the epochs it holds, with no rejoin and no new epoch.

What is saved (docs/crypto.md 9): the member's keys and chains (``client.e2ee.snapshot``),
per operation the log position read up to, the schema message ledgers, the messages
decrypted but not yet taken by the application, and the OCU's proposals whose commit or
welcomes may not have reached the hub. The snapshot is taken on the event loop between two
awaits of the agent, so all of it is from one moment: the ratchets have moved exactly as
far as the position read, and a message whose keys are used is either before that position
and in the snapshot as unread, or handed to the application already. A restarted agent
reads each log from the saved position; what follows decrypts with the saved ratchets.

When it is written (sealed and written in a thread, one write at a time, in order):

- ``changed`` (log entries handled): ``debounce`` seconds later, one write for a burst;
- ``flush``, waited for, before something leaves the agent that a lost state would
  contradict: key packages before they are uploaded (the private halves), a directed
  message before its ack (a welcome), a commit before it is sent (its epoch's secrets are
  the admin's alone), a message before its generation reaches the send lease;
- ``close(save=True)`` on a clean close.

A crash at any other moment leaves the last write, which is consistent: the agent reads
again what came after it (the application may see those messages twice: ``Message.seq``
tells them apart). The agent must not do any of this when it has no state file: nothing
here runs on the hot path unless one is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgpack

from client.e2ee.admin import Admin, Proposal
from client.e2ee.channel import Member
from client.e2ee.peer import PEER_FAULTS
from client.e2ee.snapshot import (
    SEND_LEASE,
    SendLease,
    member_state,
    proposal_state,
    restore_member,
    restore_proposal,
    send_leases,
    send_position,
)
from client.identity import UnitIdentity
from client.messages import content as message_content
from client.messages.checks import Ledger, Seen
from client.secure_inbox import Message
from client.state_file import StateFile
from protocol.errors import Code, OpshubError, StateError

#: Seconds from the first change of a burst to its write.
DEBOUNCE = 0.25
_FORMAT = 1  # of the msgpack body inside the state file
#: What reading a state of another shape raises (the file is authenticated, so this is a
#: state written by another version of opshub, not a peer's input)
_STATE_FAULTS: tuple[type[Exception], ...] = (*PEER_FAULTS, OpshubError)


@dataclass(frozen=True, slots=True)
class Restored:
    """What the agent does itself with a loaded state: hand ``unread`` to the application
    again, read each of ``ops`` from the position saved, send the ``proposals`` again."""

    unread: list[Message]
    ops: list[str]
    proposals: list[Proposal]


class SecureState:
    def __init__(self, file: StateFile, member: Member, identity: UnitIdentity, *,
                 read_up_to: dict[str, int], ledgers: dict[str, Ledger],
                 unread: Callable[[], list[Message]], owed: dict[str, Proposal],
                 clock: Callable[[], float],
                 spawn: Callable[[Callable[[], Coroutine[Any, Any, None]], str], bool],
                 wait_until: Callable[[Callable[[], bool]], Awaitable[None]],
                 notify: Callable[[], None], debounce: float = DEBOUNCE) -> None:
        """The agent's own ``read_up_to``, ``ledgers`` and ``owed`` (the OCU's proposals not
        yet through; empty for a member) are read at each snapshot and filled by ``load``;
        ``unread()`` lists the messages the application has not taken. ``spawn``,
        ``wait_until`` and ``notify`` are the agent's (tasks it owns, waits that end when
        it stops)."""
        self.file = file
        self.member = member
        self.identity = identity
        self.read_up_to = read_up_to
        self.ledgers = ledgers
        self.unread = unread
        self.owed = owed
        self.clock = clock
        self.debounce = debounce
        self._spawn = spawn
        self._wait_until = wait_until
        self._notify = notify
        self._leases: dict[str, SendLease] = {}  # as of the last snapshot
        self._extend: set[str] = set()  # operations whose sends wait for a longer lease
        self._durable: dict[str, SendLease] = {}  # as of the last write on disk
        self._requested = self._written = 0  # writes asked for; asked for and done
        self._writer = False  # a writer task is running
        self._timer = False  # a debounce is running
        self._writing: asyncio.Future[None] | None = None  # the write in its thread
        #: the file was loaded, or there was none: only then may it be written (a file that
        #: did not load, with a wrong key say, must stay as it is)
        self._loaded = False

    # --- loading ------------------------------------------------------------------------

    async def load(self) -> Restored | None:
        """Load the state file into the member, ``read_up_to``, ``ledgers`` and ``owed``;
        None if there is none yet. Raises StateError: what ``StateFile.read`` raises, and
        ``state_mismatch`` for another identity key or cipher suite."""
        if not self.file.exists():
            self._loaded = True
            return None
        body = await asyncio.to_thread(self.file.read)
        try:
            state = msgpack.unpackb(body, raw=False)
            if state["v"] != _FORMAT:
                raise ValueError(f"format {state['v']}, expected {_FORMAT}")
            self._check_ours(state)
            restored = self._restore(state)
        except StateError:
            raise
        except _STATE_FAULTS as exc:
            raise StateError(f"state file {self.file.path} holds a state this opshub cannot "
                             f"read: {exc!r}", code=Code.STATE_UNREADABLE) from None
        self._loaded = True
        return restored

    def _check_ours(self, state: dict[str, Any]) -> None:
        key, suite = self.identity.credential.identity_key, self.member.keys.suite.name
        if state["identity_key"] != key:
            raise StateError(f"state file {self.file.path} was written for another identity "
                             f"key of {self.member.unit!r}", code=Code.STATE_MISMATCH)
        if state["member"]["keys"]["suite"] != suite:
            raise StateError(f"state file {self.file.path} holds key packages of suite "
                             f"{state['member']['keys']['suite']}, this agent uses {suite}",
                             code=Code.STATE_MISMATCH)

    def _restore(self, state: dict[str, Any]) -> Restored:
        restore_member(self.member, state["member"])
        self.read_up_to.update(state["read_up_to"])
        for op, seen in state["ledgers"].items():
            self.ledgers[op] = Ledger(seen={i: Seen(t, seq, rev) for i, t, seq, rev in seen})
        proposals = []
        if isinstance(self.member, Admin):
            proposals = [restore_proposal(p, self.member) for p in state["proposals"]]
            self.member.resume(proposals)
            self.owed.update({p.op: p for p in proposals})
        ops = [op for op, ch in self.member.channels.items() if not ch.removed]
        unread = [Message(op, seq, sender, ctype, content, epoch,
                          message_content.decode(content) if ctype == message_content.MESSAGE
                          else None)
                  for op, seq, sender, ctype, content, epoch in state["unread"]]
        return Restored(unread, ops, proposals)

    # --- saving -------------------------------------------------------------------------

    def changed(self) -> None:
        """Something worth saving changed: write it within ``debounce`` seconds, in one
        write with whatever else changes meanwhile."""
        if not self._timer:
            self._timer = self._spawn(self._after_debounce, "state-debounce")

    async def flush(self) -> None:
        """Return once everything up to now is on disk. Raises AgentStopped (a write failed:
        the agent stops on its StateError) or ConnectionClosed (the agent was closed)."""
        self._requested += 1
        target = self._requested
        self._start_writer()
        await self._wait_until(lambda: self._written >= target)

    async def ready_to_send(self, op: str) -> None:
        """Wait, if need be, until this unit's next generation on ``op`` is below the send
        lease on disk (``client.e2ee.snapshot``); once half of it is used, have a longer one
        written without waiting. Raises what ``flush`` raises."""
        while (at := send_position(self.member, op)) is not None:
            lease = self._durable.get(op)
            left = 0 if lease is None or lease.epoch != at[0] else lease.generation - at[1]
            if left > SEND_LEASE // 2:
                return
            self._extend.add(op)
            if left > 0:
                if self._written >= self._requested:  # none under way: one now
                    self._requested += 1
                    self._start_writer()
                return
            await self.flush()

    async def close(self, *, save: bool) -> None:
        """After the agent's tasks are gone: wait for a write still in its thread and, with
        ``save``, write the state once more. Raises StateError if that write fails."""
        if save and self._loaded:
            await self._write(final=True)
        elif self._writing is not None:
            await asyncio.wait([self._writing])

    async def _after_debounce(self) -> None:
        try:
            await asyncio.sleep(self.debounce)
        finally:
            self._timer = False
        self._requested += 1
        self._start_writer()

    def _start_writer(self) -> None:
        if not self._writer:
            self._writer = self._spawn(self._write_requested, "state-writer")

    async def _write_requested(self) -> None:
        """Write until every request made so far is covered by a write on disk. A failed
        write raises StateError: the agent stops (its keys would no longer be saved)."""
        try:
            while self._written < self._requested:
                covered = self._requested
                await self._write()
                self._written = covered
                self._notify()
        finally:
            self._writer = False

    async def _write(self, *, final: bool = False) -> None:
        """``final``: the agent is closing, it sends nothing more (the leases are exact)."""
        assert self._loaded, "a state is written only after it was loaded"
        if self._writing is not None:  # left by a writer that was cancelled: it lands first
            await asyncio.wait([self._writing])
        self._leases = send_leases(self.member, self._leases, extend=self._extend,
                                   exact=final)
        self._extend.clear()
        leases, body = self._leases, self._snapshot()
        # shielded: a cancelled writer must not leave a thread writing behind the next one
        self._writing = asyncio.ensure_future(asyncio.to_thread(self.file.write, body))
        await asyncio.shield(self._writing)
        self._writing = None
        self._durable = leases

    def _snapshot(self) -> bytes:
        state = {
            "v": _FORMAT,
            "unit": self.member.unit,
            "identity_key": self.identity.credential.identity_key,
            "saved_at": self.clock(),
            "member": member_state(self.member, self._leases, now=self.clock()),
            "read_up_to": dict(self.read_up_to),
            "ledgers": {op: [[i, s.type, s.seq, s.revision] for i, s in ledger.seen.items()]
                        for op, ledger in self.ledgers.items()},
            "unread": [[m.op, m.seq, m.sender, m.content_type, m.content, m.epoch]
                       for m in self.unread()],
            "proposals": ([proposal_state(p, self.member) for p in self.owed.values()]
                          if isinstance(self.member, Admin) else []),
        }
        return msgpack.packb(state, use_bin_type=True)  # type: ignore[no-any-return]
