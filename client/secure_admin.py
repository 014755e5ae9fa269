"""SecureAdmin: the OCU's duties over the hub for a SecureAgent's operations.

It claims the members' key packages, sends the commits that the sans-I/O
``client.e2ee.channel.Admin`` signs (creating an operation, changing its members,
rotating its keys) with their welcomes, starts the key rotations that are due (message
count, age of the epoch) and answers a member's request for keys after it lost its own
(a rejoin). It holds no state of its own beyond the rotations under way and the
proposals whose commit or welcomes are not yet through (``owed``, which an agent with a
state file saves and, after a restart, sends again: ``resume``): the channel state is the
Admin's, the connection and the agent's tasks are the SecureAgent's, which hands them over
when it makes one (``client.secure``). It must not read the logs or the directed messages:
the agent does, and calls ``answer_rejoin`` and ``maybe_rotate``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from client.connection import AgentConnection, ConnectionClosed
from client.e2ee.admin import Admin, Proposal
from protocol.credentials import SignedCredential
from protocol.errors import Code, CryptoError, OpshubError, RequestError

log = logging.getLogger("opshub.secure")

#: Runs a coroutine function as a task of the agent (named); False if the agent is closed
#: or stopped, so nothing was started.
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]], str], bool]


class SecureAdmin:
    def __init__(self, conn: AgentConnection, admin: Admin, *, clock: Callable[[], float],
                 spawn: Spawn, notify: Callable[[], None],
                 subscribe: Callable[[str], Awaitable[None]],
                 save: Callable[[], Awaitable[None]],
                 rotate_messages: int, rotate_seconds: float) -> None:
        """``notify`` wakes whoever waits for an epoch; ``subscribe`` has the agent read an
        operation's log (once); ``save`` returns once the agent's state (``owed`` with it)
        is on disk, if it keeps one; ``rotate_*``: when an epoch's keys are due to change."""
        self.conn = conn
        self.admin = admin
        self.unit = admin.unit
        self.clock = clock
        self.rotate_messages = rotate_messages
        self.rotate_seconds = rotate_seconds
        self._spawn = spawn
        self._notify = notify
        self._subscribe = subscribe
        self._save = save
        #: op -> the proposal whose commit or welcomes may not have reached the hub yet
        self.owed: dict[str, Proposal] = {}
        self._rotating: set[str] = set()
        #: one proposal at a time per operation: a rotation and a rejoin answer started
        #: together would both propose epoch n + 1, and the hub would refuse one of them
        self._proposing: dict[str, asyncio.Lock] = {}

    def _one_at_a_time(self, op: str) -> asyncio.Lock:
        return self._proposing.setdefault(op, asyncio.Lock())

    async def create_operation(self, op: str, name: str,
                               members: list[SignedCredential]) -> None:
        """Create ``op`` with ``members``, their keys sealed in the commit's welcomes.
        Raises CryptoError (no_key_for_member: a member has no key package on the hub),
        RequestError (the hub refused the commit), TimeoutError."""
        units = [c.credential.unit for c in members if c.credential.unit != self.unit]
        async with self._one_at_a_time(op):
            packages = await self._claim(op, units)
            proposal = self.admin.propose_create(op, name, members, packages,
                                                 now=self.clock())
            await self._send_proposal(proposal)

    async def change(self, op: str, *, add: Sequence[SignedCredential] = (),
                     remove: Sequence[str] = (), rejoin: Sequence[str] = ()) -> int:
        """Add and/or remove members (with neither: rotate the keys); ``rejoin``: members
        that lost their keys get a welcome. Returns the new epoch. Raises what
        ``create_operation`` raises, CryptoError (not_admin) if ``op`` is not live here."""
        added = [c.credential.unit for c in add]
        async with self._one_at_a_time(op):
            needed = self.admin.packages_needed(op, add=added, remove=remove)
            packages = await self._claim(op, needed)
            proposal = self.admin.propose_change(op, add=add, remove=remove, rejoin=rejoin,
                                                 packages=packages, now=self.clock())
            await self._send_proposal(proposal)
        return proposal.state.epoch

    async def answer_rejoin(self, op: str, unit: str) -> None:
        """``unit`` asked for keys (a welcome_request): a new epoch, with a welcome for it.
        Re-sending the current epoch's keys would let it reuse generations it already
        sent under. Raises CryptoError (not_member) for a unit that is not a member: each
        answer costs a seal per member, so only members may ask."""
        ch = self.admin.channels.get(op)
        if ch is None or ch.chain is None or unit not in ch.chain.members:
            raise CryptoError(f"{unit!r} asked for the keys of {op!r} but is not a member",
                              code=Code.NOT_MEMBER)
        await self.change(op, rejoin=[unit])

    def maybe_rotate(self, op: str) -> None:
        """Start a rotation of ``op``'s keys if one is due and none is under way."""
        if op in self._rotating:
            return
        due = self.admin.needs_rotation(op, now=self.clock(),
                                        max_messages=self.rotate_messages,
                                        max_seconds=self.rotate_seconds)
        if due and self._spawn(lambda: self._rotate_on_schedule(op), f"rotate-{op}"):
            self._rotating.add(op)

    async def _rotate_on_schedule(self, op: str) -> None:
        """A rotation the admin starts on its own (message count, age). If the hub or the
        network is why it fails, that is logged, and the next message tries again."""
        try:
            await self.change(op)
        except (OpshubError, TimeoutError, ConnectionClosed) as exc:
            log.warning("%s: rotation of %s failed: %r", self.unit, op, exc)
        finally:
            self._rotating.discard(op)

    async def _claim(self, op: str, units: list[str]) -> dict[str, bytes]:
        packages, missing = await self.conn.claim_key_packages(op, units)
        if missing:
            raise CryptoError(f"no key package on the hub for {', '.join(missing)}: they "
                              f"have not connected since they were enrolled", code=Code.NO_KEY)
        return packages

    def resume(self, proposals: list[Proposal]) -> None:
        """After a restart from a saved state: send each proposal ``owed`` before it again,
        commit and welcomes (the hub answers ``ok`` to its current head sent twice, and a
        joiner ignores a second welcome)."""
        for p in proposals:
            self._spawn(functools.partial(self._send_again, p), f"resend-{p.op}")

    async def _send_again(self, proposal: Proposal) -> None:
        try:
            async with self._one_at_a_time(proposal.op):
                await self._send_proposal(proposal)
        except (OpshubError, TimeoutError, ConnectionClosed) as exc:
            log.warning("%s: sending the commit of %s epoch %d again failed: %r", self.unit,
                        proposal.op, proposal.state.epoch, exc)

    async def _send_proposal(self, proposal: Proposal) -> None:
        # on disk first: the new epoch's secrets are the admin's alone, and once the hub
        # has the commit, members use them
        self.owed[proposal.op] = proposal
        await self._save()
        try:
            await self.conn.commit(proposal.body, proposal.signature)
        except RequestError:
            self.owed.pop(proposal.op, None)  # refused: nothing of it to send again
            raise
        self.admin.accepted(proposal, now=self.clock())
        self._notify()
        await self._subscribe(proposal.op)
        for unit, welcome in proposal.welcomes.items():
            await self.conn.send_directed(proposal.op, unit, welcome)
        if self.owed.get(proposal.op) is proposal:
            del self.owed[proposal.op]
