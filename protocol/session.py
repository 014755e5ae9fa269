"""ServerSession: the hub's side of one connection as a sans-I/O state machine.

Bytes in (``receive``), frames out (``data_to_send``), and requests handed to the
broker as decoded frames. It owns the handshake (challenge, credential check,
proof of possession) and refuses every frame but ``hello`` before it. A peer's bad
input never raises out of ``receive``: the session records the error, queues an
error frame and a close code, and the I/O layer closes. Time and randomness are
injected; no sockets, no asyncio, no clock reads here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from protocol import codec
from protocol import frames as f
from protocol.credentials import (
    AuthorityRing,
    Credential,
    SignedCredential,
    check_replaces,
    verify_possession,
)
from protocol.errors import AuthError, Code, ProtocolError, UnexpectedMessage


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The peer proved it holds the identity key of this enrolled credential."""

    credential: Credential
    signed: SignedCredential


Event = Authenticated | f.ClientFrame

#: Looks a unit up in the hub's directory: its enrolled signed credential, or None.
Directory = Callable[[str], SignedCredential | None]


class ServerSession:
    def __init__(
        self,
        *,
        hub_id: str,
        ring: AuthorityRing,
        directory: Directory,
        now: Callable[[], float],
        token_bytes: Callable[[int], bytes],
        limits: codec.Limits = codec.DEFAULT_LIMITS,
        session_id: str = "",
        open_enrollment: bool = False,
    ) -> None:
        self.open_enrollment = open_enrollment
        self.hub_id = hub_id
        self.ring = ring
        self.directory = directory
        self.now = now
        self.limits = limits
        self.session_id = session_id
        self.state = State.AWAIT_HELLO
        self.unit: str | None = None
        self.credential: Credential | None = None
        self.nonce = token_bytes(32)
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: ProtocolError | None = None
        self._out: list[bytes] = [codec.encode(f.Challenge(nonce=self.nonce, hub=hub_id))]

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def send(self, frame: f.ServerFrame) -> None:
        self._out.append(codec.encode(frame))

    def receive(self, data: bytes) -> list[Event]:
        """Feed one WebSocket message. Returns the events it produced; never raises for
        peer errors (see ``error`` and ``close_code`` afterwards)."""
        if self.state is State.CLOSED:
            return []
        try:
            frame = codec.decode(data, self.limits)
            if self.state is State.AWAIT_HELLO:
                if not isinstance(frame, f.Hello):
                    raise UnexpectedMessage(
                        f"expected 'hello' before anything else, got {frame.T!r}")
                return [self._authenticate(frame)]
            if isinstance(frame, f.Hello):
                raise UnexpectedMessage("'hello' after the handshake has completed")
            if not isinstance(frame, f.ClientFrame):
                raise UnexpectedMessage(f"{frame.T!r} is a hub-to-agent frame")
            return [frame]
        except ProtocolError as exc:
            self.fail(exc)
            return []

    def fail(self, exc: ProtocolError) -> None:
        """Queue an error frame and close; used for the peer's protocol violations."""
        self.error = exc
        ref = exc.ref if isinstance(exc.ref, str) else None
        msg = exc.message if ref is None else f"{exc.message} (at {ref})"
        self.send(f.Error(code=exc.code, message=f.bounded(msg)))
        self.state = State.CLOSED
        self.close_code = exc.close_code
        self.close_reason = exc.code

    def _authenticate(self, hello: f.Hello) -> Authenticated:
        signed = SignedCredential(hello.credential, hello.credential_sig)
        presented = self.ring.verify(signed, now=int(self.now()))
        enrolled = self.directory(presented.unit)
        if enrolled is None and not self.open_enrollment:
            raise AuthError(f"unit {presented.unit!r} is not enrolled at this hub",
                            code=Code.UNKNOWN_UNIT)
        check_replaces(signed, enrolled)  # the router enrolls it once authenticated
        verify_possession(presented, hello.signature, nonce=self.nonce, hub=self.hub_id)
        self.state = State.READY
        self.unit = presented.unit
        self.credential = presented
        self.send(f.Ready(unit=presented.unit, session=self.session_id,
                          limits=self.limits.as_dict()))
        return Authenticated(presented, signed)
