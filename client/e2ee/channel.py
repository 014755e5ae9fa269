"""One unit's end-to-end state for its operations: epochs, commits, welcomes, messages.

Sans-I/O: methods take bytes and ``now`` and return bytes or results; randomness comes
from the injected ``rand``. ``client.secure`` moves the bytes through the hub.

Epochs. The admin's signed membership statement (``protocol.statements``) carries,
in its ``key_material`` field, the key material of the next epoch::

    km = {"v": 1, "suite": name,
          "sealed": [[unit, key package id, HPKE-sealed commit secret], ...],
          "tag": confirmation tag}

Every member that stays gets the fresh ``commit_secret`` sealed to one of its one-time
key packages; a member that joins gets a *welcome* instead (a directed message holding
the ``joiner_secret`` sealed to its key package). Then, as in RFC 9420 section 8::

    ctx           = msgpack([op, epoch, prev statement hash, roster hash, suite])
    joiner_secret = ExpandWithLabel(Extract(init_secret[n-1], commit_secret), "joiner", ctx)
    epoch_secret  = ExpandWithLabel(joiner_secret, "epoch", ctx)
    encryption_secret, confirmation_key, init_secret[n] = DeriveSecret(epoch_secret,
                                                          "encryption" | "confirm" | "init")
    tag           = HMAC(confirmation_key, ctx || SHA-256(sealed list))

A removed member lacks the commit secret, a joiner lacks the previous init secret; the
tag (inside the admin's signature) proves every member derived the same epoch. A member
accepts an epoch secret from nothing but this: a verified commit plus its own sealed
share or welcome. The bytes of the key material and of a welcome: client.e2ee.commit_format;
the admin that writes them: client.e2ee.admin.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.e2ee import message
from client.e2ee.commit_format import (
    commit_info,
    confirmation_tag,
    context,
    epoch_of,
    joiner_secret_for,
    parse_key_material,
    welcome_info,
)
from client.e2ee.peer import peer_input
from client.e2ee.schedule import (
    PREFIX,
    SecretTree,
    derive_secret,
    expand_with_label,
    hash_size,
)
from client.e2ee.suite import CipherSuite, KeyPackageKeys, Rand, suite_named
from client.identity import UnitIdentity
from protocol.credentials import AuthorityRing, Credential, SignedCredential
from protocol.errors import Code, CryptoError, OpshubError, RequestError
from protocol.signatures import SignatureMemo, VerifyingKey
from protocol.statements import OperationState, Statement, statement_hash

#: A generation more than this far ahead of a sender's ratchet is refused.
MAX_AHEAD = 1000
#: Skipped keys kept per sender and epoch, for messages that arrive out of order.
SKIPPED_WINDOW = 1000
#: How long the previous epoch's receive keys are kept after a rotation (seconds).
GRACE_SECONDS = 120.0

APPLICATION = 1  # default content type
_MAX_WELCOMES = 8  # unused welcomes kept per epoch, and epochs with unused welcomes


@dataclass(slots=True)
class SenderRatchet:
    """One sender leaf's application ratchet in one epoch, out of the tree: a receiver's
    (with the keys it skipped), or this unit's own for sending."""

    secret: bytes
    generation: int
    skipped: OrderedDict[int, tuple[bytes, bytes]] = field(default_factory=OrderedDict)


class Epoch:
    """The keys of one epoch of one operation."""

    def __init__(self, *, op: str, number: int, roster: tuple[str, ...], joiner_secret: bytes,
                 ctx: bytes, suite: CipherSuite) -> None:
        self.op = op
        self.number = number
        self.roster = roster
        self.index = {unit: i for i, unit in enumerate(roster)}
        self.suite = suite  # the joiner secret is used here and not kept
        h = suite.hash_name
        epoch_secret = expand_with_label(joiner_secret, b"epoch", ctx, hash_size(h),
                                         prefix=PREFIX, hash_name=h)
        self.confirmation_key = derive_secret(epoch_secret, b"confirm", prefix=PREFIX,
                                              hash_name=h)
        self.init_secret = derive_secret(epoch_secret, b"init", prefix=PREFIX, hash_name=h)
        encryption_secret = derive_secret(epoch_secret, b"encryption", prefix=PREFIX,
                                          hash_name=h)
        self.tree = SecretTree(encryption_secret, len(roster),
                               prefix=PREFIX, key_size=suite.key_size,
                               nonce_size=suite.nonce_size, hash_name=suite.hash_name)
        self._start()

    @classmethod
    def restored(cls, *, op: str, number: int, roster: tuple[str, ...], suite: CipherSuite,
                 confirmation_key: bytes, init_secret: bytes, tree: SecretTree) -> Epoch:
        """An epoch as a saved agent state kept it (``client.e2ee.snapshot``): its
        derived secrets and tree, since the joiner secret is gone. The caller puts back
        the ratchets taken out of the tree."""
        epoch = cls.__new__(cls)
        epoch.op, epoch.number, epoch.roster, epoch.suite = op, number, roster, suite
        epoch.index = {unit: i for i, unit in enumerate(roster)}
        epoch.confirmation_key, epoch.init_secret, epoch.tree = (confirmation_key,
                                                                init_secret, tree)
        epoch._start()
        return epoch

    def _start(self) -> None:
        """What an epoch holds besides its keys as it starts: no ratchet out of its tree."""
        self.receivers: dict[int, SenderRatchet] = {}
        #: leaf -> (unit, its identity key), filled on first use
        self.verifiers: dict[int, tuple[str, VerifyingKey]] = {}
        self.send: SenderRatchet | None = None
        self.messages = 0  # messages sent or received in this epoch

    def receiver(self, leaf: int) -> SenderRatchet:
        r = self.receivers.get(leaf)
        if r is None:
            secret, generation = self.tree.take_ratchet(leaf)
            r = self.receivers[leaf] = SenderRatchet(secret, generation)
        return r


class Received(NamedTuple):
    """A message that decrypted and whose signature checked. (A NamedTuple: one per
    message on the receive path.)"""

    op: str
    sender: str
    epoch: int
    generation: int
    content_type: int
    content: bytes


@dataclass(frozen=True, slots=True)
class CommitApplied:
    op: str
    epoch: int
    members: frozenset[str]
    keys: bool  # whether this unit holds the new epoch's keys
    removed: bool = False  # this unit was removed by this commit


@dataclass(slots=True)
class PendingEpoch:
    """A verified commit whose keys wait for this unit's welcome."""

    epoch: int
    ctx: bytes
    tag: bytes
    sealed: list[list[Any]]
    roster: tuple[str, ...]
    suite: CipherSuite


class Channel:
    """This unit's view of one operation: the verified chain and the epochs it can read."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.chain: OperationState | None = None
        self.credentials: dict[str, Credential] = {}
        self.current: Epoch | None = None
        self.previous: tuple[Epoch, float] | None = None  # with the time its grace ends
        self.pending: PendingEpoch | None = None
        #: epoch -> candidate welcomes (kp id, sealed); tried against the commit's tag
        self.welcomes: dict[int, list[tuple[bytes, bytes]]] = {}
        self.suite: str | None = None
        self.joined_epoch: int | None = None
        self.removed = False
        #: the epoch that removed this unit, while it is out (entries from then until it
        #: is added back are expected to be unreadable)
        self.removed_at: int | None = None
        #: this unit was removed once (it missed some epochs, even if added back)
        self.ever_removed = False
        self.epoch_started = 0.0

    def epoch(self, number: int, now: float) -> Epoch | None:
        if self.current is not None and self.current.number == number:
            return self.current
        if self.previous is not None and self.previous[0].number == number:
            if now <= self.previous[1]:
                return self.previous[0]
            self.previous = None  # grace over: those keys are gone
        return None


class Member:
    """One unit's end-to-end state across its operations."""

    def __init__(self, identity: UnitIdentity, *, ring: AuthorityRing, keys: KeyPackageKeys,
                 rand: Rand, grace: float = GRACE_SECONDS,
                 signatures: SignatureMemo | None = None) -> None:
        """``signatures``: a memo of verified signatures shared with the other agents of
        this process (a replay's); None verifies every signature itself."""
        self.unit = identity.unit
        self.identity = identity
        self.ring = ring
        self.keys = keys
        self.rand = rand
        self.grace = grace
        self.channels: dict[str, Channel] = {}
        self.signatures = signatures
        self._keys: dict[bytes, VerifyingKey] = {}

    def _public_key(self, raw: bytes) -> VerifyingKey:
        key = self._keys.get(raw)
        if key is None:
            key = self._keys[raw] = (Ed25519PublicKey.from_public_bytes(raw)
                                     if self.signatures is None else self.signatures.key(raw))
        return key

    def channel(self, op: str) -> Channel:
        ch = self.channels.get(op)
        if ch is None:
            ch = self.channels[op] = Channel(op)
        return ch

    # --- commits ------------------------------------------------------------------------

    def on_commit(self, op: str, body: bytes, signature: bytes, *, now: float) -> CommitApplied:
        """Verify a statement from the operation's log and move to its epoch.

        Raises CryptoError (the statement is refused and nothing changes): not signed by
        the admin, not chained, a roster that does not match, a credential the authority
        did not sign, a confirmation tag that does not match."""
        ch = self.channel(op)
        if ch.chain is not None and statement_hash(body) == ch.chain.head:
            # our own accepted commit (an admin applies it when the hub accepts it)
            return CommitApplied(op, ch.chain.epoch, ch.chain.members,
                                 keys=ch.current is not None
                                 and ch.current.number == ch.chain.epoch)
        try:
            stmt = Statement.from_bytes(body)
            if stmt.op != op:
                raise CryptoError(f"statement for {stmt.op!r} in the log of {op!r}",
                                  code=Code.BAD_STATEMENT)
            creds = self._verify_credentials(stmt, now)
            if ch.chain is None:
                admin = creds.get(stmt.admin)
                if admin is None:
                    raise CryptoError(f"epoch-0 statement lacks the credential of its admin "
                                      f"{stmt.admin!r}", code=Code.BAD_STATEMENT)
                state = OperationState.create(stmt, body, signature,
                                              signer_key=admin.identity_key,
                                              signer_role=admin.role)
            else:
                state = ch.chain.apply(stmt, body, signature)
        except RequestError as exc:  # the shared statement rules speak RequestError
            raise CryptoError(f"commit {op}/{epoch_of(body)} refused: {exc.message}",
                              code=exc.code) from None
        km = parse_key_material(stmt.key_material)
        suite = suite_named(km["suite"])
        if ch.suite is not None and suite.name != ch.suite:
            raise CryptoError(f"commit {op}/{stmt.epoch} switches the cipher suite from "
                              f"{ch.suite} to {suite.name}; members refuse a suite change",
                              code=Code.BAD_STATEMENT)
        ctx = context(stmt, suite)
        roster = tuple(sorted(state.members))
        epoch: Epoch | None = None
        member_after = self.unit in state.members and self.unit != stmt.admin
        if member_after:
            mine = [s for s in km["sealed"] if s[0] == self.unit]
            prev = ch.current
            if (mine and prev is not None and prev.number == stmt.epoch - 1
                    and self.keys.holds(mine[0][1])):
                commit_secret = self.keys.open(mine[0][1], mine[0][2],
                                               commit_info(op, stmt.epoch))
                joiner = joiner_secret_for(prev.init_secret, commit_secret, ctx, suite)
                epoch = self._checked_epoch(op, stmt.epoch, roster, joiner, ctx, km["tag"],
                                            km["sealed"], suite)
            # else: a joiner, or a member without the previous epoch's keys (a restarted
            # agent): the chain moves on, the keys wait for a welcome
        # commit accepted: from here on nothing raises
        ch.chain = state
        ch.suite = suite.name
        ch.credentials.update(creds)
        if self.unit in stmt.removes:
            ch.removed, ch.removed_at, ch.ever_removed = True, stmt.epoch, True
        elif member_after and ch.removed:  # added back: readable again from this epoch
            ch.removed, ch.removed_at = False, None
        for old_epoch in [e for e in ch.welcomes if e < stmt.epoch]:
            del ch.welcomes[old_epoch]
        if epoch is not None:
            self._install(ch, epoch, now)
            ch.pending = None
        elif member_after:
            ch.pending = PendingEpoch(stmt.epoch, ctx, km["tag"], km["sealed"], roster, suite)
            self._try_welcome(ch, now)
        else:
            ch.pending = None
        return CommitApplied(op, stmt.epoch, state.members,
                             keys=ch.current is not None and ch.current.number == stmt.epoch,
                             removed=self.unit in stmt.removes)

    def on_welcome(self, payload: bytes, *, now: float) -> str:
        """Keep a welcome (from a directed message) and use it once its commit is verified.
        Returns the operation it is for. Raises CryptoError for a malformed one."""
        with peer_input("malformed welcome", Code.BAD_STATEMENT):
            w = msgpack.unpackb(payload, raw=False)
            op, epoch, kp_id, sealed = w["op"], w["epoch"], w["kp"], w["sealed"]
            if not (isinstance(op, str) and type(epoch) is int and isinstance(kp_id, bytes)
                    and isinstance(sealed, bytes)):
                raise TypeError("wrong field types")
        ch = self.channel(op)
        if ch.chain is not None and epoch < ch.chain.epoch:
            return op  # for an epoch already past: of no use any more
        candidates = ch.welcomes.setdefault(epoch, [])
        if len(candidates) >= _MAX_WELCOMES or len(ch.welcomes) > _MAX_WELCOMES:
            raise CryptoError(f"too many unused welcomes for {op!r}", code=Code.LIMIT)
        candidates.append((kp_id, sealed))
        errors = self._try_welcome(ch, now)
        if errors and ch.pending is not None and ch.pending.epoch == epoch:
            raise errors[-1]  # this one was tried against its verified commit, and failed
        return op

    def _try_welcome(self, ch: Channel, now: float) -> list[CryptoError]:
        """Install the pending epoch from the first welcome whose keys match the commit's
        confirmation tag. Anyone can send a directed message, so every candidate is tried
        and the ones that fail are dropped; returns their errors."""
        p = ch.pending
        errors: list[CryptoError] = []
        if p is None:
            return errors
        for kp_id, sealed in ch.welcomes.pop(p.epoch, []):
            try:
                joiner = self.keys.open(kp_id, sealed, welcome_info(ch.op, p.epoch))
                epoch = self._checked_epoch(ch.op, p.epoch, p.roster, joiner, p.ctx, p.tag,
                                            p.sealed, p.suite)
            except CryptoError as exc:
                errors.append(exc)
                continue
            self._install(ch, epoch, now)
            if ch.joined_epoch is None:
                ch.joined_epoch = p.epoch
            ch.pending = None
            break
        return errors

    @staticmethod
    def _checked_epoch(op: str, number: int, roster: tuple[str, ...], joiner: bytes,
                       ctx: bytes, tag: bytes, sealed: list[list[Any]],
                       suite: CipherSuite) -> Epoch:
        epoch = Epoch(op=op, number=number, roster=roster, joiner_secret=joiner, ctx=ctx,
                      suite=suite)
        expected = confirmation_tag(epoch.confirmation_key, ctx, sealed)
        if not hmac.compare_digest(expected, tag):
            raise CryptoError(f"confirmation tag of {op}/{number} does not match the keys "
                              f"derived: the commit or welcome was altered",
                              code=Code.BAD_CONFIRMATION)
        return epoch

    def _install(self, ch: Channel, epoch: Epoch, now: float) -> None:
        if ch.current is not None:
            ch.previous = (ch.current, now + self.grace)
        ch.current = epoch
        ch.epoch_started = now
        if ch.joined_epoch is None:
            ch.joined_epoch = epoch.number

    def _verify_credentials(self, stmt: Statement, now: float) -> dict[str, Credential]:
        out = {}
        for body, sig in stmt.credentials:
            try:
                cred = self.ring.verify(SignedCredential(body, sig), now=int(now))
            except OpshubError as exc:
                raise CryptoError(f"commit {stmt.op}/{stmt.epoch} carries a credential the "
                                  f"authority did not sign: {exc.message}",
                                  code=Code.BAD_CREDENTIAL) from None
            out[cred.unit] = cred
        return out

    # --- messages -----------------------------------------------------------------------

    def encrypt(self, op: str, content: bytes, *, content_type: int = APPLICATION,
                now: float) -> tuple[bytes, bytes]:
        """(header, ciphertext) of ``content`` for the current epoch of ``op``."""
        ch = self.channels.get(op)
        if ch is None or ch.current is None or ch.removed:
            raise CryptoError(f"no keys to send on {op!r}: not a member, or the welcome has "
                              f"not arrived", code=Code.UNKNOWN_EPOCH)
        epoch = ch.current
        leaf = epoch.index[self.unit]
        if epoch.send is None:
            secret, generation = epoch.tree.take_ratchet(leaf)
            epoch.send = SenderRatchet(secret, generation)
        key, nonce, nxt = epoch.tree.ratchet_step(epoch.send.secret, epoch.send.generation)
        header = message.Header(content_type, epoch.number, leaf, epoch.send.generation,
                                self.rand(4))
        epoch.send.secret, epoch.send.generation = nxt, epoch.send.generation + 1
        epoch.messages += 1
        ct = message.seal(op=op, header=header, content=content, key=key, nonce=nonce,
                          signer=self.identity.key)
        return header.to_bytes(), ct

    def decrypt(self, op: str, header_bytes: bytes, ciphertext: bytes, *,
                now: float) -> Received:
        """Decrypt and verify one message. Raises CryptoError with a specific code:
        unknown_epoch, replayed, too_far_ahead, decrypt_failed, bad_sender_signature.
        A message that fails leaves every ratchet as it was."""
        header = message.Header.from_bytes(header_bytes)
        ch = self.channels.get(op)
        if ch is None:
            epoch = None
        elif ch.current is not None and ch.current.number == header.epoch:
            epoch = ch.current  # the usual case, without a call
        else:
            epoch = ch.epoch(header.epoch, now)
        if epoch is None:
            raise CryptoError(f"no keys for epoch {header.epoch} of {op!r}",
                              code=Code.UNKNOWN_EPOCH)
        if header.sender >= len(epoch.roster):
            raise CryptoError(f"sender leaf {header.sender} is outside the roster of "
                              f"{len(epoch.roster)}", code=Code.BAD_SENDER)
        g = header.generation
        if epoch.roster[header.sender] == self.unit:
            # we never receive our own leaf: a copy of what we sent, or a forgery
            sent = 0 if epoch.send is None else epoch.send.generation
            raise CryptoError(f"message claims to come from this unit ({self.unit!r}) at "
                              f"generation {g}", code=Code.REPLAYED if g < sent
                              else Code.BAD_SENDER)
        leaf = header.sender
        r = epoch.receivers.get(leaf) or epoch.receiver(leaf)
        skipped: list[tuple[int, tuple[bytes, bytes]]] | None = None
        if g < r.generation:
            kn = r.skipped.get(g)
            if kn is None:
                raise CryptoError(f"generation {g} from leaf {leaf} in {op}/"
                                  f"{header.epoch} was already used (replay)",
                                  code=Code.REPLAYED)
            key, nonce = kn
            secret = r.secret
        else:
            if g - r.generation > MAX_AHEAD:
                raise CryptoError(f"generation {g} is more than {MAX_AHEAD} ahead of "
                                  f"{r.generation}", code=Code.TOO_FAR_AHEAD)
            secret, gen = r.secret, r.generation
            step = epoch.tree.ratchet_step
            if gen < g:
                skipped = []
                while gen < g:
                    k, n, secret = step(secret, gen)
                    skipped.append((gen, (k, n)))
                    gen += 1
            key, nonce, secret = step(secret, g)
        aad = header_bytes + op.encode()
        content, signature = message.open_unverified(aad, header, ciphertext, key, nonce)
        verifier = epoch.verifiers.get(leaf)
        if verifier is None:
            sender = epoch.roster[leaf]
            cred = ch.credentials.get(sender) if ch is not None else None
            if cred is None:
                raise CryptoError(f"no credential for {sender!r}", code=Code.BAD_SENDER)
            verifier = epoch.verifiers[leaf] = (sender, self._public_key(cred.identity_key))
        sender, public = verifier
        if ch is not None and ch.chain is not None and sender not in ch.chain.members:
            raise CryptoError(f"message from {sender!r}, who is no longer a member of {op!r}",
                              code=Code.NOT_MEMBER)
        message.verify(aad, content, signature, public, sender)
        # verified: now move the ratchet and forget the key
        if g < r.generation:
            del r.skipped[g]
        else:
            if skipped:
                r.skipped.update(skipped)
                while len(r.skipped) > SKIPPED_WINDOW:
                    r.skipped.popitem(last=False)
            r.secret, r.generation = secret, g + 1
        epoch.messages += 1
        return Received(op, sender, header.epoch, g, header.content_type, content)


    def decrypt_batch(self, op: str, items: list[tuple[bytes, bytes]], *, now: float
                      ) -> list[Received | CryptoError]:
        """Decrypt and verify several messages of ``op`` (header, ciphertext), in log
        order; one result per item, a CryptoError for each that fails (as ``decrypt``
        would raise it). The same outcome as ``decrypt`` on each in turn, faster: the
        common case (current epoch, each sender's next generation) is taken in three
        passes (ratchets and AES for all, then every signature in one tight loop, then
        the ratchets move), so the signature checks run back to back with warm caches.
        Anything else in the batch, or any failure, and the batch is redone one message
        at a time with ``decrypt``."""
        fast = self._decrypt_fast(op, items)
        if fast is not None:
            return fast
        out: list[Received | CryptoError] = []
        for header, ct in items:
            try:
                out.append(self.decrypt(op, header, ct, now=now))
            except CryptoError as exc:
                out.append(exc)
        return out

    def _decrypt_fast(self, op: str, items: list[tuple[bytes, bytes]]
                      ) -> list[Received | CryptoError] | None:
        """``decrypt_batch``'s common case, or None for the careful path. Nothing of the
        channel changes unless every message decrypts and verifies."""
        ch = self.channels.get(op)
        epoch = ch.current if ch is not None else None
        if ch is None or epoch is None or ch.chain is None:
            return None
        members = ch.chain.members
        roster, receivers, verifiers = epoch.roster, epoch.receivers, epoch.verifiers
        states: dict[int, tuple[bytes, int]] = {}  # leaf -> tentative (secret, next gen)
        opened = []
        step = epoch.tree.ratchet_step
        unpack = message.HEADER_STRUCT.unpack
        op_bytes = op.encode()
        number, me, size = epoch.number, self.unit, message.HEADER_SIZE
        for header_bytes, ct in items:
            if len(header_bytes) != size:
                return None
            version, ctype, ep, leaf, gen, guard = unpack(header_bytes)
            if (version != message.VERSION or ep != number or leaf >= len(roster)
                    or roster[leaf] == me):
                return None
            verifier = verifiers.get(leaf)
            if verifier is None or verifier[0] not in members:
                return None
            state = states.get(leaf)
            if state is None:
                r = receivers.get(leaf)
                if r is None:
                    return None
                state = (r.secret, r.generation)
            if gen != state[1]:
                return None  # a skip, a replay or a reorder: the careful path
            key, nonce, nxt = step(state[0], gen)
            states[leaf] = (nxt, gen + 1)
            aad = header_bytes + op_bytes
            head = int.from_bytes(nonce[:4], "big") ^ int.from_bytes(guard, "big")
            try:
                inner = AESGCM(key).decrypt(head.to_bytes(4, "big") + nonce[4:], ct, aad)
            except InvalidTag:
                return None
            n = int.from_bytes(inner[:4], "big")
            if n + 4 + message.SIGNATURE_SIZE > len(inner):
                return None
            opened.append((ctype, gen, aad, inner[4 : 4 + n],
                           inner[4 + n : 4 + n + message.SIGNATURE_SIZE], verifier))
        context = message.SIGN_CONTEXT
        for _ctype, _gen, aad, content, signature, (_sender, public) in opened:
            try:
                public.verify(signature, context + aad + content)
            except InvalidSignature:
                return None
        for leaf, (secret, generation) in states.items():
            r = receivers[leaf]
            r.secret, r.generation = secret, generation
        epoch.messages += len(opened)
        return [Received(op, sender, number, gen, ctype, content)
                for ctype, gen, _aad, content, _sig, (sender, _pub) in opened]
