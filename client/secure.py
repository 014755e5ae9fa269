"""SecureAgent: an agent whose operation traffic is end-to-end encrypted.

The application publishes and reads plaintext; on the wire and in the hub there is
only the routing header and ciphertext. This is the I/O shell around the sans-I/O
``client.e2ee.channel`` (Member, or Admin for OCU units): it publishes key packages,
reads commits and messages from the operation logs and welcomes from directed
messages, and, for an admin, claims key packages, signs commits and sends welcomes.

A message or commit that fails a check is dropped, recorded in ``rejected`` with its
stable code, and the agent goes on with the next one.

Schema messages (schemas/) go through ``send``, which checks them before anything is
encrypted, so an invalid message never reaches the wire; a receiver checks each one again
after decrypting (schema, rules, references to earlier messages, and that the content's
sender is the member who signed it) and rejects it with ``invalid_message`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from client.connection import TIMEOUT, AgentConnection
from client.e2ee import message
from client.e2ee.channel import APPLICATION, Admin, CommitApplied, Member, Proposal, Received
from client.e2ee.suite import HYBRID, CipherSuite, KeyPackageKeys, Rand
from client.identity import UnitIdentity
from client.messages import content as message_content
from client.messages import default_catalog
from client.messages.catalog import Catalog, Problem
from client.messages.checks import Ledger, problems
from protocol import frames as f
from protocol.agent_session import Delivered, SubscriptionEnded
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.errors import Code, CryptoError, OpshubError, SchemaError, UsageError

log = logging.getLogger("opshub.secure")


@dataclass(frozen=True, slots=True)
class Message:
    """A decrypted, signature-checked message, with its place in the operation's log."""

    op: str
    seq: int
    sender: str
    content_type: int
    content: bytes
    epoch: int
    #: the checked message (a dict) when content_type is MESSAGE
    body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A log entry or directed message this agent refused, and why."""

    op: str
    seq: int | None
    sender: str
    code: str
    reason: str
    problems: list[Problem] = field(default_factory=list)


class SecureAgent:
    def __init__(self, url: str, identity: UnitIdentity, authority_keys: list[bytes], *,
                 suite: CipherSuite = HYBRID, rand: Rand = os.urandom,
                 clock: Callable[[], float] = time.time, packages: int = 16,
                 rotate_messages: int = 10_000, rotate_seconds: float = 3600.0,
                 reconnect: bool = True, catalog: Catalog | None = None,
                 reads: frozenset[str] | None = None) -> None:
        self.identity = identity
        self.unit = identity.unit
        self.clock = clock
        self.packages = packages
        self.rotate_messages = rotate_messages
        self.rotate_seconds = rotate_seconds
        self.conn = AgentConnection(url, identity, reconnect=reconnect, now=clock)
        self.keys = KeyPackageKeys(self.unit, identity.key, suite, rand)
        self.authority_keys = list(authority_keys)
        ring = AuthorityRing(authority_keys)
        self.member: Member = (
            Admin(identity, ring=ring, keys=self.keys, rand=rand, suite=suite)
            if identity.credential.role == "ocu"
            else Member(identity, ring=ring, keys=self.keys, rand=rand))
        self.catalog = catalog if catalog is not None else default_catalog()
        #: whose application messages this agent reads (None: everyone's). The hub is
        #: asked to send only those (and every commit): its log seqs then skip.
        self.reads = reads
        #: per operation, the last log seq this agent has handled
        self.read_up_to: dict[str, int] = {}
        #: per operation, the schema messages its channel carried (for references)
        self.ledgers: dict[str, Ledger] = {}
        self.rejected: list[Rejected] = []
        self.skipped_before_join = 0  # entries of epochs before this unit joined
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._epoch_changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed: set[str] = set()
        self._rotating: set[str] = set()
        self._topping_up = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, publish key packages (and a last-resort one), start reading."""
        await self.conn.connect()
        # replace: this agent holds no private half of any package published before it
        await self.conn.put_key_packages(
            self.keys.generate(self.packages, now=int(self.clock()), last_resort=True),
            replace=True)
        self._tasks = [asyncio.create_task(self._read_log(), name=f"log-{self.unit}"),
                       asyncio.create_task(self._read_directed(), name=f"dir-{self.unit}")]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.conn.close()

    async def __aenter__(self) -> SecureAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- sending and receiving ------------------------------------------------------------

    async def publish(self, op: str, content: bytes, *,
                      content_type: int = APPLICATION) -> int:
        """Encrypt, sign and publish ``content``; returns its seq once the hub stored it."""
        header, ciphertext = self.member.encrypt(op, content, content_type=content_type,
                                                 now=self.clock())
        if len(ciphertext) > self.conn.limits.max_payload:
            raise UsageError(f"{len(content)} bytes of content make a {len(ciphertext)}-byte "
                             f"ciphertext, over the hub's max_payload of "
                             f"{self.conn.limits.max_payload}", code=Code.LIMIT)
        seq = await self.conn.publish(op, ciphertext, header=header)
        self._maybe_rotate(op)
        return seq

    async def send(self, op: str, message: dict[str, Any]) -> int:
        """Check, encrypt, sign and publish a schema message; returns its seq. Raises
        SchemaError listing every problem (nothing is sent): schema, rules, a reference
        to a message this operation has not carried, an operation or sender that is not
        this agent's."""
        found = self._sender_problems(op, self.unit, message)
        found += problems(self.catalog, message, self.ledger(op))
        if found:
            kind = message.get("type") if isinstance(message, dict) else None
            raise SchemaError(f"{self.unit} will not send this {kind or 'message'}: "
                              + "; ".join(map(str, found)), problems=found)
        # recorded before the hub's ack (seq 0: not yet stored), so that sends pipelined
        # behind this one may refer to it and may not reuse its id; the seq follows
        self.ledger(op).record(message, 0)
        seq = await self.publish(op, message_content.encode(message),
                                 content_type=message_content.MESSAGE)
        self.ledger(op).record(message, seq)
        return seq

    def _senders(self) -> list[str] | None:
        return None if self.reads is None else sorted(self.reads)

    def ledger(self, op: str) -> Ledger:
        """The schema messages ``op``'s channel has carried as far as this agent knows
        (what it sent and read); what a message may refer to."""
        ledger = self.ledgers.get(op)
        if ledger is None:
            ch = self.member.channels.get(op)
            # a member that joined after epoch 0 has not seen what came before
            # and one that skips some senders (``reads``) has not either
            complete = (ch is None or ch.joined_epoch in (None, 0)) and self.reads is None
            ledger = self.ledgers[op] = Ledger(complete=complete)
        return ledger

    @staticmethod
    def _sender_problems(op: str, sender: str, message: Any) -> list[Problem]:
        if not isinstance(message, dict):
            return []
        out = []
        if "operation" in message and message["operation"] != op:
            out.append(Problem("/operation", "rule", f"{message['operation']!r} is not the "
                               f"operation it is sent in ({op!r})"))
        unit = message.get("sender", {}).get("unit") if isinstance(
            message.get("sender"), dict) else None
        if unit is not None and unit != sender:
            out.append(Problem("/sender/unit", "rule", f"{unit!r} is not the member who "
                               f"signed the message ({sender!r})"))
        return out

    @property
    def unread(self) -> int:
        """Messages decrypted and waiting for ``next_message``."""
        return self._inbox.qsize()

    async def next_message(self, within: float = TIMEOUT) -> Message:
        async with asyncio.timeout(within):
            return await self._inbox.get()

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            yield await self._inbox.get()

    def epoch(self, op: str) -> int | None:
        """The epoch of ``op`` whose keys this agent holds, if any."""
        ch = self.member.channels.get(op)
        return None if ch is None or ch.current is None else ch.current.number

    async def wait_for_epoch(self, op: str, epoch: int, within: float = TIMEOUT) -> None:
        """Wait until this agent holds the keys of ``epoch`` (or a later one) of ``op``."""
        async with asyncio.timeout(within), self._epoch_changed:
            await self._epoch_changed.wait_for(lambda: self._holds(op, epoch))

    def _holds(self, op: str, epoch: int) -> bool:
        current = self.epoch(op)
        return current is not None and current >= epoch

    async def request_welcome(self, op: str) -> None:
        """Ask the operation's admin for keys after losing one's own (a restarted agent).
        The admin answers with a new epoch whose welcome is sealed to this unit."""
        ch = self.member.channels.get(op)
        if ch is None or ch.chain is None:
            raise CryptoError(f"{op!r} is not known to this agent", code=Code.UNKNOWN_OPERATION)
        await self._top_up(force=True)
        await self.conn.send_directed(op, ch.chain.admin, msgpack.packb(
            {"t": "welcome_request", "op": op}, use_bin_type=True))

    async def rejoin(self, op: str, within: float = TIMEOUT) -> int:
        """For an agent restarted without its state: read ``op``'s membership chain from
        the start, ask the admin for keys, and wait for the epoch they come in. Returns
        that epoch. Messages of earlier epochs stay unreadable to it."""
        self._subscribed.add(op)
        await self.conn.subscribe(op, after=0, senders=self._senders())
        async with asyncio.timeout(within):
            # the chain fills as the log is read, the epoch when the welcome comes
            while (ch := self.member.channels.get(op)) is None or ch.chain is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await self.request_welcome(op)
            while (epoch := self.epoch(op)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return epoch

    # --- the admin's side ------------------------------------------------------------------

    @property
    def admin(self) -> Admin:
        if not isinstance(self.member, Admin):
            raise CryptoError(f"{self.unit!r} is not an OCU unit", code=Code.NOT_ADMIN)
        return self.member

    async def create_operation(self, op: str, name: str,
                               members: list[SignedCredential]) -> None:
        """Create ``op`` with ``members``, their keys sealed in the commit's welcomes."""
        units = [c.credential.unit for c in members if c.credential.unit != self.unit]
        packages = await self._claim(units)
        proposal = self.admin.propose_create(op, name, members, packages, now=self.clock())
        await self._send_proposal(proposal)

    async def change(self, op: str, *, add: list[SignedCredential] = [],  # noqa: B006
                     remove: list[str] = [], rejoin: list[str] = []) -> int:  # noqa: B006
        """Add and/or remove members (with neither: rotate the keys); ``rejoin``: members
        that lost their keys get a welcome. Returns the new epoch."""
        added = [c.credential.unit for c in add]
        packages = await self._claim(self.admin.packages_needed(op, add=added, remove=remove))
        proposal = self.admin.propose_change(op, add=add, remove=remove, rejoin=rejoin,
                                             packages=packages, now=self.clock())
        await self._send_proposal(proposal)
        return proposal.state.epoch

    async def rotate(self, op: str) -> int:
        return await self.change(op)

    async def _claim(self, units: list[str]) -> dict[str, bytes]:
        packages, missing = await self.conn.claim_key_packages(units)
        if missing:
            raise CryptoError(f"no key package on the hub for {', '.join(missing)}: they "
                              f"have not connected since they were enrolled", code=Code.NO_KEY)
        return packages

    async def _send_proposal(self, proposal: Proposal) -> None:
        await self.conn.commit(proposal.body, proposal.signature)
        self.admin.accepted(proposal, now=self.clock())
        await self._notify()
        if proposal.op not in self._subscribed:
            self._subscribed.add(proposal.op)
            await self.conn.subscribe(proposal.op, after=0, senders=self._senders())
        for unit, welcome in proposal.welcomes.items():
            await self.conn.send_directed(proposal.op, unit, welcome)

    def _maybe_rotate(self, op: str) -> None:
        if not isinstance(self.member, Admin) or op in self._rotating:
            return
        if self.member.needs_rotation(op, now=self.clock(), max_messages=self.rotate_messages,
                                      max_seconds=self.rotate_seconds):
            self._rotating.add(op)
            task = asyncio.create_task(self.rotate(op))
            task.add_done_callback(lambda t: self._rotated(op, t))

    def _rotated(self, op: str, task: asyncio.Task[int]) -> None:
        self._rotating.discard(op)
        if not task.cancelled() and task.exception() is not None:
            log.warning("rotation of %s failed: %r", op, task.exception())

    # --- reading ---------------------------------------------------------------------------

    async def _read_log(self) -> None:
        """Entries in log order. Consecutive application messages of one operation are
        decrypted as a batch (``Member.decrypt_batch``: the signature checks run back to
        back); commits, one at a time, between the batches."""
        while True:
            run: list[Delivered] = []
            for item in await self.conn.next_deliveries():
                if (isinstance(item, Delivered) and item.kind != f.KIND_COMMIT
                        and item.sender != self.unit
                        and (self.reads is None or item.sender in self.reads)):
                    if run and run[0].op != item.op:
                        self._receive_run(run)
                        run = []
                    run.append(item)
                    continue
                if run:
                    self._receive_run(run)
                    run = []
                await self._entry(item)
            if run:
                self._receive_run(run)

    async def _entry(self, item: Delivered | SubscriptionEnded) -> None:
        """A commit, the end of a subscription, or an entry this agent does not read
        (its own message, stored; a sender it did not ask for)."""
        if isinstance(item, SubscriptionEnded):
            self._subscribed.discard(item.op)
            return
        try:
            if item.kind == f.KIND_COMMIT:
                body, signature = msgpack.unpackb(item.payload)
                applied = self.member.on_commit(item.op, body, signature, now=self.clock())
                await self._committed(applied)
        except CryptoError as exc:
            self._reject(item.op, item.seq, item.sender, exc)
        except Exception as exc:  # a malformed entry must not stop the agent
            self._reject(item.op, item.seq, item.sender,
                         CryptoError(f"unreadable entry: {exc!r}", code=Code.DECRYPT_FAILED))
        self.read_up_to[item.op] = item.seq

    def _receive_run(self, run: list[Delivered]) -> None:
        op = run[0].op
        results = self.member.decrypt_batch(op, [(i.header, i.payload) for i in run],
                                            now=self.clock())
        for item, got in zip(run, results, strict=True):
            try:
                if isinstance(got, CryptoError):
                    if got.code == Code.UNKNOWN_EPOCH and self._before_join(item):
                        self.skipped_before_join += 1
                    else:
                        self._reject(item.op, item.seq, item.sender, got)
                else:
                    self._accept(item, got)
            except Exception as exc:  # a malformed entry must not stop the agent
                self._reject(item.op, item.seq, item.sender,
                             CryptoError(f"unreadable entry: {exc!r}", code=Code.DECRYPT_FAILED))
            self.read_up_to[item.op] = item.seq

    def _accept(self, item: Delivered, got: Received) -> None:
        body = None
        if got.content_type == message_content.MESSAGE:
            body = self._checked(item.op, item.seq, got.sender, got.content)
            if body is None:
                self._maybe_rotate(item.op)
                return
        self._inbox.put_nowait(Message(item.op, item.seq, got.sender, got.content_type,
                                       got.content, got.epoch, body))
        self._maybe_rotate(item.op)

    def _checked(self, op: str, seq: int, sender: str, content: bytes) -> dict[str, Any] | None:
        """The decrypted schema message, or None after recording why it is rejected."""
        try:
            body = message_content.decode(content)
        except SchemaError as exc:
            self._reject(op, seq, sender, exc)
            return None
        found = self._sender_problems(op, sender, body)
        found += problems(self.catalog, body, self.ledger(op))
        if found:
            self._reject(op, seq, sender, SchemaError(
                "invalid message: " + "; ".join(map(str, found)), problems=found))
            return None
        self.ledger(op).record(body, seq)
        return body  # type: ignore[no-any-return]

    def _before_join(self, item: Delivered) -> bool:
        """An entry of an epoch before this unit joined: expected to be unreadable."""
        ch = self.member.channels.get(item.op)
        if ch is None:
            return False
        epoch = message.Header.from_bytes(item.header).epoch  # decrypt parsed it already
        first = ch.joined_epoch
        if first is None and ch.pending is not None:
            first = ch.pending.epoch
        if first is None and ch.welcomes:
            first = min(ch.welcomes)
        return first is not None and epoch < first

    async def _committed(self, applied: CommitApplied) -> None:
        await self._notify()
        if len(self.keys) < self.packages // 2:
            await self._top_up()

    async def _read_directed(self) -> None:
        while True:
            try:
                item = await self.conn.next_directed(within=3600)
            except TimeoutError:
                continue
            try:
                await self._directed(item)
            except CryptoError as exc:
                self._reject(item.op, None, item.sender, exc)
            except Exception as exc:
                self._reject(item.op, None, item.sender,
                             CryptoError(f"unreadable directed message: {exc!r}",
                                         code=Code.DECRYPT_FAILED))
            self.conn.ack_directed(item.id)

    async def _directed(self, item: f.DirectedItem) -> None:
        kind = msgpack.unpackb(item.payload, raw=False).get("t")
        if kind == "welcome":
            op = self.member.on_welcome(item.payload, now=self.clock())
            await self._notify()
            if op not in self._subscribed:
                self._subscribed.add(op)
                # from 0: verify the chain from epoch 0
                await self.conn.subscribe(op, after=0, senders=self._senders())
        elif kind == "welcome_request" and isinstance(self.member, Admin):
            # a new epoch, with a welcome for the requester: re-sending the current epoch's
            # keys would let it reuse generations it already sent under
            await self.change(item.op, rejoin=[item.sender])
        else:
            raise CryptoError(f"unknown directed message type {kind!r}",
                              code=Code.BAD_STATEMENT)

    def _reject(self, op: str, seq: int | None, sender: str, exc: OpshubError) -> None:
        log.warning("%s rejected %s entry %s from %s: %s (%s)", self.unit, op, seq, sender,
                    exc.message, exc.code)
        self.rejected.append(Rejected(op, seq, sender, exc.code, exc.message,
                                      list(getattr(exc, "problems", []))))

    async def _notify(self) -> None:
        async with self._epoch_changed:
            self._epoch_changed.notify_all()

    async def _top_up(self, force: bool = False) -> None:
        if self._topping_up and not force:
            return
        self._topping_up = True
        try:
            await self.conn.put_key_packages(
                self.keys.generate(max(1, self.packages - len(self.keys)),
                                   now=int(self.clock())))
        finally:
            self._topping_up = False
