"""SecureAgent: an agent whose operation traffic is end-to-end encrypted.

The application publishes and reads plaintext; on the wire and in the hub there is
only the routing header and ciphertext. This is the I/O shell around the sans-I/O
``client.e2ee.channel`` (Member, or Admin for OCU units): it publishes key packages,
reads commits and messages from the operation logs and welcomes from directed
messages. It delegates, and must not do itself, two jobs: an OCU unit's duties (claiming
key packages, sending commits and welcomes, rotating keys, answering rejoins) to
``client.secure_admin.SecureAdmin``, and the checks and ids of schema messages to
``client.secure_messages.MessageLedgers``.

A peer's bad input (a message or commit that fails a check, a malformed directed
message: CryptoError or SchemaError, nothing broader) is dropped, recorded in
``rejected`` with its stable code, and the agent goes on with the next one. Any other
exception in the agent's tasks is a bug (or the hub refusing this unit): the agent
stops, logs it with its traceback, keeps it in ``failure``, and every later call raises
AgentStopped caused by it. Nothing is recorded as the peer's fault for it.

With a state file (``state_path``, ``state_key``) the agent keeps its keys, chains, read
positions, ledgers and unread messages on disk (``client.secure_state``): restarted, it
goes on in the epochs it holds, reading each log from where it stopped, with no rejoin and
no new epoch. Without one, nothing of that runs.

Schema messages (schemas/) go through ``send``, which checks them before anything is
encrypted, so an invalid message never reaches the wire; a receiver checks each one again
after decrypting (schema, rules, references to earlier messages, and that the content's
sender is the member who signed it) and rejects it with ``invalid_message`` otherwise.

Tasks and queues. The agent owns its tasks (the log and directed readers, and the key
rotations and key package top-ups they start) in one set: the first that fails stops the
others, ``close`` cancels and awaits them all. Decrypted messages wait for the application
in a queue of at most ``max_unread``; when it is full, the log reader waits, the
connection's own bounded queue fills behind it and the connection stops reading the
socket (see client.connection: the hub may close it as a slow consumer, and it resumes
without loss once the application reads again). Commits wait behind unread messages
too: an application that waits for an epoch must keep reading.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from ssl import SSLContext
from typing import Any

import msgpack

from client.connection import TIMEOUT, AgentConnection, ConnectionClosed, HubUrls
from client.e2ee import message
from client.e2ee.admin import Admin
from client.e2ee.channel import APPLICATION, CommitApplied, Member, Received
from client.e2ee.peer import commit_entry, directed_kind
from client.e2ee.suite import HYBRID, CipherSuite, KeyPackageKeys, Rand
from client.identity import UnitIdentity
from client.messages import content as message_content
from client.messages import default_catalog
from client.messages.catalog import Catalog, Problem
from client.messages.checks import Ledger
from client.secure_admin import SecureAdmin
from client.secure_inbox import Inbox, Message, Rejected
from client.secure_messages import MessageLedgers
from client.secure_packages import KeyPackageSupply
from client.secure_state import Restored, SecureState
from client.state_file import StateFile, StateKey
from protocol import frames as f
from protocol.agent_session import Delivered, SubscriptionEnded
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.errors import (
    Code,
    CryptoError,
    OpshubError,
    RequestError,
    SchemaError,
)
from protocol.signatures import SignatureMemo

# Message and Rejected (client.secure_inbox) are imported from here too
__all__ = ["AgentStopped", "Message", "Rejected", "SecureAgent"]

log = logging.getLogger("opshub.secure")


class AgentStopped(Exception):
    """The agent stopped on an error that is not a peer's bad input: a bug, or the hub
    refusing this unit. ``__cause__`` is that error (also in ``SecureAgent.failure``)."""


class SecureAgent:
    def __init__(self, url: HubUrls, identity: UnitIdentity, authority_keys: list[bytes], *,
                 suite: CipherSuite = HYBRID, rand: Rand = os.urandom,
                 clock: Callable[[], float] = time.time, packages: int = 16,
                 rotate_messages: int = 10_000, rotate_seconds: float = 3600.0,
                 reconnect: bool = True, catalog: Catalog | None = None,
                 reads: frozenset[str] | None = None, max_unread: int = 10_000,
                 signatures: SignatureMemo | None = None,
                 ssl: SSLContext | None = None, state_path: Path | None = None,
                 state_key: StateKey | None = None) -> None:
        """``ssl``: for wss:// URLs, what verifies the hub's certificate (see
        AgentConnection). ``state_path``: keep the agent's state in that file (the module's
        doc), sealed under ``state_key`` (None: the passphrase in OPSHUB_STATE_PASSPHRASE).
        Raises UsageError for a state file without a key, or a key file beside it."""
        self.identity = identity
        self.unit = identity.unit
        self.clock = clock
        self.conn = AgentConnection(url, identity, reconnect=reconnect, now=clock, ssl=ssl)
        self.keys = KeyPackageKeys(self.unit, identity.key, suite, rand)
        self.authority_keys = list(authority_keys)
        ring = AuthorityRing(authority_keys, signatures=signatures)
        self.member: Member = (
            Admin(identity, ring=ring, keys=self.keys, rand=rand, suite=suite,
                  signatures=signatures)
            if identity.credential.role == "ocu"
            else Member(identity, ring=ring, keys=self.keys, rand=rand,
                        signatures=signatures))
        self._admin = None if not isinstance(self.member, Admin) else SecureAdmin(
            self.conn, self.member, clock=clock, spawn=self._spawn, notify=self._notify,
            subscribe=self._subscribe, save=self._save_state, rotate_messages=rotate_messages,
            rotate_seconds=rotate_seconds)
        self.catalog = catalog if catalog is not None else default_catalog()
        #: whose application messages this agent reads (None: everyone's). The hub is
        #: asked to send only those (and every commit): its log seqs then skip.
        self.reads = reads
        #: per operation, the last log seq this agent has handled
        self.read_up_to: dict[str, int] = {}
        self._ledgers = MessageLedgers(self.unit, self.catalog, reads=reads,
                                       every_epoch=self._every_epoch)
        #: per operation, the schema messages its channel carried (for references)
        self.ledgers: dict[str, Ledger] = self._ledgers.ledgers
        self.rejected: list[Rejected] = []
        self.skipped_before_join = 0  # entries of epochs before this unit joined
        self.decrypted = 0  # others' messages decrypted and verified (then checked)
        #: what stopped the agent, if anything did (see AgentStopped)
        self.failure: BaseException | None = None
        # bounded: see "Tasks and queues" above; None, once queued, says the agent stopped
        self._inbox = Inbox(max_unread)
        self._changed = asyncio.Event()  # set and replaced whenever chains or epochs move
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing_conn: asyncio.Task[None] | None = None  # after a failure
        self._closed = False
        self._subscribed: set[str] = set()
        self._packages = KeyPackageSupply(self.conn, self.keys, target=packages, clock=clock,
                                          spawn=self._spawn, save=self._save_state)
        self._state = None if state_path is None else SecureState(
            StateFile(state_path, StateKey.from_env() if state_key is None else state_key,
                      self.unit),
            self.member, identity, read_up_to=self.read_up_to, ledgers=self.ledgers,
            unread=self._inbox.unread_messages,
            owed={} if self._admin is None else self._admin.owed, clock=clock,
            spawn=self._spawn, wait_until=self._wait_until, notify=self._notify)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, publish key packages (and a last-resort one), start reading. With a
        state file that exists: load it first and go on from it (``_resume``) instead,
        publishing packages only to top them up. Raises StateError if the state file does
        not load (nothing else is done), what AgentConnection.connect raises, RequestError
        if the packages are refused."""
        restored = None if self._state is None else await self._state.load()
        if restored is not None:
            self._inbox.handing.extend(restored.unread)  # before any write, which lists them
        await self.conn.connect()
        if restored is None:
            await self._packages.publish()
        elif self._packages.low():
            await self._packages.top_up()
        self._spawn(self._read_log, f"log-{self.unit}")
        self._spawn(self._read_directed, f"directed-{self.unit}")
        if restored is not None:
            await self._resume(restored)

    async def _resume(self, restored: Restored) -> None:
        """Go on from a loaded state: read each operation's log after the position saved
        (the ratchets saved decrypt what follows); the OCU sends again what it owed."""
        for op in restored.ops:
            try:
                await self._subscribe(op)
            except RequestError as exc:  # removed while away, or a hub that lost it
                log.warning("%s: cannot read %s again: %s (%s)", self.unit, op,
                            exc.message, exc.code)
        if self._admin is not None:
            self._admin.resume(restored.proposals)

    async def close(self) -> None:
        """Cancel and await every task of the agent, write its state file a last time
        (unless it stopped), then close its connection. Does not raise what stopped the
        agent, if something did: the calls after it did. Raises StateError if that last
        write fails (the connection is closed all the same)."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._closing_conn is not None:
            await self._closing_conn
        try:
            if self._state is not None:
                # after a failure, the last write stands (it is consistent; see
                # client.secure_state): what the failure left in memory may not be
                await self._state.close(save=self.failure is None)
        finally:
            await self.conn.close()
            self._wake()

    async def __aenter__(self) -> SecureAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> bool:
        """Run ``work()`` as a task of this agent, unless it is closed or stopped."""
        if self._closed or self.failure is not None:
            return False
        task = asyncio.get_running_loop().create_task(work(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("%s stopped: task %s failed with %r", self.unit, task.get_name(), exc,
                  exc_info=exc)
        if self.failure is not None:
            return
        self.failure = exc
        for other in self._tasks:
            other.cancel()
        # the connection goes too, so that the hub sees the unit leave; close() awaits it
        self._closing_conn = asyncio.get_running_loop().create_task(
            self.conn.close(), name=f"close-{self.unit}")
        self._wake()

    def _check_running(self) -> None:
        if self.failure is not None:
            raise AgentStopped(f"{self.unit} stopped: {self.failure!r}") from self.failure
        if self._closed:
            raise ConnectionClosed(f"{self.unit} is closed")

    def _notify(self) -> None:
        """Wake whoever waits for a chain or an epoch (``_wait_until``)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _wake(self) -> None:
        """The agent stopped or closed: wake every waiter, which then raises why."""
        self._notify()
        self._inbox.stop()

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        """Wait (callers bound it with a timeout) until ``done()``; raises AgentStopped
        or ConnectionClosed if the agent stops first."""
        while not done():
            self._check_running()
            await self._changed.wait()

    # --- sending and receiving ------------------------------------------------------------

    async def publish(self, op: str, content: bytes, *, content_type: int = APPLICATION,
                      within: float = TIMEOUT) -> int:
        """Encrypt, sign and publish ``content``; returns its seq once the hub stored it.
        Raises CryptoError (no keys for ``op``), UsageError (limit_exceeded: its ciphertext
        is too large for the hub; AgentSession checks it), RequestError (the hub refused
        it), TimeoutError (not acknowledged ``within`` seconds; it may still be stored: see
        AgentConnection.publish), AgentStopped."""
        self._check_running()
        if self._state is not None:
            await self._state.ready_to_send(op)
        header, ciphertext = self.member.encrypt(op, content, content_type=content_type,
                                                 now=self.clock())
        seq = await self.conn.publish(op, ciphertext, header=header, within=within)
        self._maybe_rotate(op)
        return seq

    async def send(self, op: str, message: dict[str, Any], *,
                   within: float = TIMEOUT) -> int:
        """Check, encrypt, sign and publish a schema message; returns its seq. Raises
        SchemaError listing every problem (nothing is sent): schema, rules, a reference
        to a message this operation has not carried, an operation or sender that is not
        this agent's; then what ``publish`` raises.

        The message's id is taken once it passes the checks, so that sends pipelined
        behind this one may refer to it and may not reuse it. A send that fails with
        nothing stored (no keys, too large, refused by the hub) frees the id again. One
        not acknowledged in time keeps it, since the hub may still store it: the hub's
        answer, when it comes, takes the id for good (its seq) or frees it."""
        self._check_running()
        self._ledgers.check_to_send(op, message)
        taken = self._ledgers.take(op, message)
        try:
            if self._state is not None:
                await self._state.ready_to_send(op)
            header, ciphertext = self.member.encrypt(op, message_content.encode(message),
                                                     content_type=message_content.MESSAGE,
                                                     now=self.clock())
            stored = self.conn.publish_nowait(op, ciphertext, header=header)
        except BaseException:
            taken.give_back()  # nothing of it left this agent
            raise
        stored.add_done_callback(lambda done: taken.settle(
            None if done.cancelled() or done.exception() is not None else done.result()))
        async with asyncio.timeout(within):
            # shielded: giving up waiting leaves the publish queued (see the docstring)
            seq = await asyncio.shield(stored)
        self._maybe_rotate(op)
        return seq

    def _senders(self) -> list[str] | None:
        return None if self.reads is None else sorted(self.reads)

    def problems(self, op: str, message: Any) -> list[Problem]:
        """What ``send`` would refuse ``message`` for (schema, rules, references, its
        operation and sender), every problem at once; empty: it would go. Sends nothing
        (a form shows these next to its fields before anything is sent)."""
        try:
            self._ledgers.check_to_send(op, message)
        except SchemaError as exc:
            return list(exc.problems)
        return []

    def ledger(self, op: str) -> Ledger:
        """The schema messages ``op``'s channel has carried as far as this agent knows
        (what it sent and read); what a message may refer to."""
        return self._ledgers.ledger(op)

    def _every_epoch(self, op: str) -> bool:
        ch = self.member.channels.get(op)
        return ch is not None and ch.joined_epoch == 0 and not ch.ever_removed

    @property
    def unread(self) -> int:
        """Messages decrypted and waiting for ``next_message``."""
        return self._inbox.unread

    async def next_message(self, within: float = TIMEOUT) -> Message:
        """The next decrypted message. Raises TimeoutError if none comes ``within``
        seconds, AgentStopped once the agent has stopped, ConnectionClosed once closed."""
        async with asyncio.timeout(within):
            return await self._inbox.take(self._check_running)

    async def messages(self) -> AsyncIterator[Message]:
        """Every decrypted message, in log order per operation, until the agent is closed.
        Raises AgentStopped if the agent stops."""
        while True:
            try:
                m = await self._inbox.take(self._check_running)
            except ConnectionClosed:
                return
            yield m

    def epoch(self, op: str) -> int | None:
        """The epoch of ``op`` whose keys this agent holds, if any."""
        ch = self.member.channels.get(op)
        return None if ch is None or ch.current is None else ch.current.number

    async def wait_for_epoch(self, op: str, epoch: int, within: float = TIMEOUT) -> None:
        """Wait until this agent holds the keys of ``epoch`` (or a later one) of ``op``.
        Raises TimeoutError, AgentStopped, ConnectionClosed."""
        async with asyncio.timeout(within):
            await self._wait_until(lambda: self._holds(op, epoch))

    def _holds(self, op: str, epoch: int) -> bool:
        current = self.epoch(op)
        return current is not None and current >= epoch

    async def request_welcome(self, op: str) -> None:
        """Ask the operation's admin for keys after losing one's own (a restarted agent).
        The admin answers with a new epoch whose welcome is sealed to this unit."""
        self._check_running()
        ch = self.member.channels.get(op)
        if ch is None or ch.chain is None:
            raise CryptoError(f"{op!r} is not known to this agent", code=Code.UNKNOWN_OPERATION)
        await self._packages.top_up(force=True)
        await self.conn.send_directed(op, ch.chain.admin, msgpack.packb(
            {"t": "welcome_request", "op": op}, use_bin_type=True))

    async def rejoin(self, op: str, within: float = TIMEOUT) -> int:
        """For an agent restarted without its state: read ``op``'s membership chain from
        the start, ask the admin for keys, and wait for the epoch they come in. Returns
        that epoch. Messages of earlier epochs stay unreadable to it."""
        self._check_running()
        async with asyncio.timeout(within):
            await self._subscribe(op)
            # the chain fills as the log is read, the epoch when the welcome comes
            await self._wait_until(lambda: (ch := self.member.channels.get(op)) is not None
                                   and ch.chain is not None)
            await self.request_welcome(op)
            await self._wait_until(lambda: self.epoch(op) is not None)
        epoch = self.epoch(op)
        assert epoch is not None
        return epoch

    async def _subscribe(self, op: str) -> None:
        """Read ``op``'s log from the start (to verify its chain from epoch 0), or from
        where this agent stopped reading it; once."""
        if op in self._subscribed:
            return
        self._subscribed.add(op)
        # an agent that holds the chain already (a member added back after a removal)
        # goes on from where it stopped; a new one verifies the chain from epoch 0
        ch = self.member.channels.get(op)
        after = self.read_up_to.get(op, 0) if ch is not None and ch.chain is not None else 0
        try:
            await self.conn.subscribe(op, after=after, senders=self._senders())
        except BaseException:
            self._subscribed.discard(op)  # so that the next welcome or rejoin tries again
            raise

    # --- the admin's side: client.secure_admin does it -----------------------------------

    @property
    def admin(self) -> Admin:
        if not isinstance(self.member, Admin):
            raise CryptoError(f"{self.unit!r} is not an OCU unit", code=Code.NOT_ADMIN)
        return self.member

    def _ocu(self) -> SecureAdmin:
        self._check_running()
        if self._admin is None:
            raise CryptoError(f"{self.unit!r} is not an OCU unit", code=Code.NOT_ADMIN)
        return self._admin

    async def create_operation(self, op: str, name: str,
                               members: list[SignedCredential]) -> None:
        """SecureAdmin.create_operation; also raises CryptoError (not_admin), AgentStopped."""
        await self._ocu().create_operation(op, name, members)

    async def change(self, op: str, *, add: Sequence[SignedCredential] = (),
                     remove: Sequence[str] = (), rejoin: Sequence[str] = ()) -> int:
        """SecureAdmin.change (returns the new epoch); also raises CryptoError (not_admin),
        AgentStopped."""
        return await self._ocu().change(op, add=add, remove=remove, rejoin=rejoin)

    async def rotate(self, op: str) -> int:
        return await self.change(op)

    def _maybe_rotate(self, op: str) -> None:
        if self._admin is not None:
            self._admin.maybe_rotate(op)

    # --- reading ---------------------------------------------------------------------------

    async def _read_log(self) -> None:
        """Entries in log order. Consecutive application messages of one operation are
        decrypted as a batch (``Member.decrypt_batch``: the signature checks run back to
        back); commits, one at a time, between the batches."""
        await self._inbox.hand_over()  # what a saved state had not handed over yet
        while True:
            run: list[Delivered] = []
            for item in await self.conn.next_deliveries():
                if (isinstance(item, Delivered) and item.kind != f.KIND_COMMIT
                        and item.sender != self.unit
                        and (self.reads is None or item.sender in self.reads)):
                    if run and run[0].op != item.op:
                        await self._receive_run(run)
                        run = []
                    run.append(item)
                    continue
                if run:
                    await self._receive_run(run)
                    run = []
                self._entry(item)
            if run:
                await self._receive_run(run)
            if self._state is not None:
                self._state.changed()

    def _entry(self, item: Delivered | SubscriptionEnded) -> None:
        """A commit, the end of a subscription, or an entry this agent does not read
        (its own message, stored; a sender it did not ask for)."""
        if isinstance(item, SubscriptionEnded):
            self._subscribed.discard(item.op)
            return
        if item.kind == f.KIND_COMMIT:
            try:
                body, signature = commit_entry(item.payload)
                applied = self.member.on_commit(item.op, body, signature, now=self.clock())
            except CryptoError as exc:  # the admin's, or the hub's, bad input
                self._reject(item.op, item.seq, item.sender, exc)
            else:
                self._committed(applied)
        self.read_up_to[item.op] = item.seq

    async def _receive_run(self, run: list[Delivered]) -> None:
        """The whole run is decrypted, checked and read up to before its messages wait for
        room in the inbox, so that the state is consistent at that wait (a saved state
        takes it there: client.secure_state)."""
        op = run[0].op
        results = self.member.decrypt_batch(op, [(i.header, i.payload) for i in run],
                                            now=self.clock())
        for item, got in zip(run, results, strict=True):
            if isinstance(got, CryptoError):
                if got.code == Code.UNKNOWN_EPOCH and self._before_join(item):
                    self.skipped_before_join += 1
                else:
                    self._reject(item.op, item.seq, item.sender, got)
            else:
                self._accept(item, got)
        self.read_up_to[op] = run[-1].seq
        await self._inbox.hand_over()

    def _accept(self, item: Delivered, got: Received) -> None:
        self.decrypted += 1
        body = None
        if got.content_type == message_content.MESSAGE:
            body = self._checked(item.op, item.seq, got.sender, got.content)
            if body is None:
                self._maybe_rotate(item.op)
                return
        self._inbox.handing.append(Message(item.op, item.seq, got.sender, got.content_type,
                                     got.content, got.epoch, body))
        self._maybe_rotate(item.op)

    def _checked(self, op: str, seq: int, sender: str, content: bytes) -> dict[str, Any] | None:
        """The decrypted schema message, or None after recording why it is rejected."""
        try:
            return self._ledgers.check_received(op, seq, sender, content)
        except SchemaError as exc:
            self._reject(op, seq, sender, exc)
            return None

    def _before_join(self, item: Delivered) -> bool:
        """An entry of an epoch before this unit joined, or of one while it was removed:
        expected to be unreadable."""
        ch = self.member.channels.get(item.op)
        if ch is None:
            return False
        epoch = message.Header.from_bytes(item.header).epoch  # decrypt parsed it already
        if ch.removed_at is not None and epoch >= ch.removed_at:
            return True
        first = ch.joined_epoch
        if first is None and ch.pending is not None:
            first = ch.pending.epoch
        if first is None and ch.welcomes:
            first = min(ch.welcomes)
        return first is not None and epoch < first

    def _committed(self, applied: CommitApplied) -> None:
        self._notify()
        self._packages.after_commit()

    async def _read_directed(self) -> None:
        async for item in self.conn.directed():
            try:
                await self._directed(item)
            except CryptoError as exc:  # the sender's bad input
                self._reject(item.op, None, item.sender, exc)
            except (RequestError, TimeoutError) as exc:
                # the hub refused, or did not answer, a request that handling it needed
                # (a subscribe, the admin's commit for a rejoin): neither the sender's
                # fault nor a bug; the sender may ask again
                log.warning("%s could not handle a directed message from %s in %s: %r",
                            self.unit, item.sender, item.op, exc)
            await self._save_state()  # what it changed (a welcome) outlives the hub's copy
            self.conn.ack_directed(item.id)

    async def _directed(self, item: f.DirectedItem) -> None:
        kind = directed_kind(item.payload)
        if kind == "welcome":
            op = self.member.on_welcome(item.payload, now=self.clock())
            self._notify()
            await self._subscribe(op)
        elif kind == "welcome_request" and self._admin is not None:
            await self._admin.answer_rejoin(item.op, item.sender)
        else:
            raise CryptoError(f"unknown directed message type {kind!r}",
                              code=Code.BAD_STATEMENT)

    def _reject(self, op: str, seq: int | None, sender: str, exc: OpshubError) -> None:
        log.warning("%s rejected %s entry %s from %s: %s (%s)", self.unit, op, seq, sender,
                    exc.message, exc.code)
        self.rejected.append(Rejected(op, seq, sender, exc.code, exc.message,
                                      list(getattr(exc, "problems", []))))

    async def _save_state(self) -> None:
        """Return once the state is on disk, if the agent keeps one (``SecureState.flush``)."""
        if self._state is not None:
            await self._state.flush()
