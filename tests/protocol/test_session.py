"""protocol.session.ServerSession driven with bytes only: no sockets, no event loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.identity import Authority, UnitIdentity, UnitSpec
from protocol import codec
from protocol import frames as f
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.errors import (
    AuthError,
    CloseCode,
    Code,
    DecodeError,
    FrameTooLarge,
    UnexpectedMessage,
)
from protocol.session import Authenticated, ServerSession, State

NOW = 1_700_000_000
HUB = "hub-test"
NONCE = b"\x5a" * 32
VALIDITY = 3600


@dataclass
class Setup:
    """An authority, two enrolled units and a directory the session looks units up in."""

    authority: Authority = field(default_factory=Authority.generate)
    units: dict[str, UnitIdentity] = field(default_factory=dict)
    directory: dict[str, SignedCredential] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in (UnitSpec("OCU-BB", "BB", "customs", "ocu"),
                     UnitSpec("JM-CUSTOMS", "JM", "customs")):
            ident = self.authority.enroll(spec, now=NOW, validity=VALIDITY)
            self.units[spec.unit] = ident
            self.directory[spec.unit] = ident.signed

    def session(self, *, now: float = NOW + 10, limits: codec.Limits = codec.DEFAULT_LIMITS,
                drain: bool = True) -> ServerSession:
        session = ServerSession(
            hub_id=HUB,
            ring=AuthorityRing([self.authority.public_key]),
            directory=self.directory.get,
            now=lambda: now,
            token_bytes=lambda n: NONCE[:n],
            limits=limits,
            session_id="s-1",
        )
        if drain:
            session.data_to_send()  # the challenge
        return session


@pytest.fixture(scope="module")
def setup() -> Setup:
    return Setup()


def _hello(ident: UnitIdentity, *, nonce: bytes = NONCE, hub: str = HUB) -> bytes:
    return codec.encode(f.Hello(credential=ident.signed.body,
                                credential_sig=ident.signed.signature,
                                signature=ident.answer(nonce, hub)))


def _sent(session: ServerSession) -> list[f.Frame]:
    return [codec.decode(data) for data in session.data_to_send()]


def _refused(session: ServerSession, close_code: int, code: str) -> f.Error:
    """Assert the session closed with ``close_code`` after one error frame; return it."""
    assert session.state is State.CLOSED
    assert session.close_code == close_code
    assert session.close_reason == code
    [frame] = _sent(session)
    assert isinstance(frame, f.Error)
    assert frame.code == code
    return frame


def _ready(setup: Setup, unit: str = "JM-CUSTOMS") -> ServerSession:
    session = setup.session()
    session.receive(_hello(setup.units[unit]))
    session.data_to_send()  # ready
    return session


def test_session_first_output_is_the_challenge(setup: Setup) -> None:
    """Before any input the session has exactly one frame to send: a challenge with the
    injected nonce."""
    session = setup.session(drain=False)
    assert _sent(session) == [f.Challenge(nonce=NONCE, hub=HUB)]
    assert session.data_to_send() == []
    assert session.state is State.AWAIT_HELLO


def test_session_good_hello_gives_ready_and_authenticated(setup: Setup) -> None:
    """A valid hello yields an Authenticated event and a ready frame with the hub's limits."""
    ident = setup.units["JM-CUSTOMS"]
    session = setup.session()
    events = session.receive(_hello(ident))
    assert events == [Authenticated(ident.credential, ident.signed)]
    assert _sent(session) == [f.Ready(unit="JM-CUSTOMS", session="s-1",
                                      limits=codec.DEFAULT_LIMITS.as_dict())]
    assert session.state is State.READY
    assert session.unit == "JM-CUSTOMS"
    assert session.credential == ident.credential
    assert session.close_code is None


def test_session_frame_before_hello_is_unexpected(setup: Setup) -> None:
    """A client frame other than hello before the handshake closes with 4409."""
    session = setup.session()
    assert session.receive(codec.encode(f.Subscribe(rid=1, op="OP-1"))) == []
    frame = _refused(session, CloseCode.UNEXPECTED, Code.UNEXPECTED)
    assert "'sub'" in frame.message
    assert isinstance(session.error, UnexpectedMessage)


def test_session_unknown_unit_is_refused(setup: Setup) -> None:
    """A valid credential of a unit missing from the directory closes with 4401
    unknown_unit."""
    stranger = setup.authority.enroll(UnitSpec("DM-CUSTOMS", "DM", "customs"), now=NOW)
    session = setup.session()
    assert session.receive(_hello(stranger)) == []
    frame = _refused(session, CloseCode.AUTH, Code.UNKNOWN_UNIT)
    assert "'DM-CUSTOMS'" in frame.message
    assert isinstance(session.error, AuthError)
    assert session.unit is None


@pytest.mark.parametrize(
    ("nonce", "hub"),
    [(b"\x00" * 32, HUB), (NONCE, "other-hub")],
    ids=["other-nonce", "other-hub"],
)
def test_session_bad_signature_over_the_challenge_is_refused(
        setup: Setup, nonce: bytes, hub: str) -> None:
    """A hello whose signature answers another challenge closes with 4401 bad_signature."""
    session = setup.session()
    assert session.receive(_hello(setup.units["JM-CUSTOMS"], nonce=nonce, hub=hub)) == []
    _refused(session, CloseCode.AUTH, Code.BAD_SIGNATURE)


def test_session_hello_with_another_units_credential_is_refused(setup: Setup) -> None:
    """Presenting another unit's credential without its identity key closes with
    bad_signature."""
    victim, thief = setup.units["OCU-BB"], setup.units["JM-CUSTOMS"]
    session = setup.session()
    hello = f.Hello(credential=victim.signed.body, credential_sig=victim.signed.signature,
                    signature=thief.key.sign(b"anything"))
    assert session.receive(codec.encode(hello)) == []
    _refused(session, CloseCode.AUTH, Code.BAD_SIGNATURE)


def test_session_expired_credential_is_refused(setup: Setup) -> None:
    """A hello received after the credential expired closes with 4401 expired_credential."""
    session = setup.session(now=NOW + VALIDITY)
    assert session.receive(_hello(setup.units["JM-CUSTOMS"])) == []
    _refused(session, CloseCode.AUTH, Code.EXPIRED_CREDENTIAL)


def test_session_bad_credential_signature_is_refused(setup: Setup) -> None:
    """A credential whose authority signature does not verify closes with bad_credential."""
    ident = setup.units["JM-CUSTOMS"]
    session = setup.session()
    hello = f.Hello(credential=ident.signed.body, credential_sig=b"\x00" * 64,
                    signature=ident.answer(NONCE, HUB))
    assert session.receive(codec.encode(hello)) == []
    _refused(session, CloseCode.AUTH, Code.BAD_CREDENTIAL)


def test_session_superseded_credential_is_refused(setup: Setup) -> None:
    """A credential older than the one enrolled for the unit closes with bad_credential."""
    ident = setup.units["JM-CUSTOMS"]
    newer = setup.authority.issue(UnitSpec("JM-CUSTOMS", "JM", "customs"),
                                  ident.credential.identity_key, now=NOW + 5)
    directory = dict(setup.directory, **{"JM-CUSTOMS": newer})
    session = ServerSession(hub_id=HUB, ring=AuthorityRing([setup.authority.public_key]),
                            directory=directory.get, now=lambda: NOW + 10,
                            token_bytes=lambda n: NONCE[:n])
    session.data_to_send()
    assert session.receive(_hello(ident)) == []
    _refused(session, CloseCode.AUTH, Code.BAD_CREDENTIAL)


def test_session_malformed_msgpack_closes_with_4400(setup: Setup) -> None:
    """Bytes that are not msgpack close with 4400 malformed_frame and name the path."""
    session = setup.session()
    assert session.receive(b"\xc1") == []
    frame = _refused(session, CloseCode.MALFORMED, Code.MALFORMED)
    assert frame.message.endswith("(at $)")
    assert isinstance(session.error, DecodeError)


def test_session_mistyped_hello_closes_with_4400_at_the_field(setup: Setup) -> None:
    """A hello with a mistyped field closes with 4400 and the error names the field path."""
    session = setup.session()
    data = msgpack.packb({"t": "hello", "cred": "x", "cred_sig": b"", "sig": b""})
    assert session.receive(data) == []
    frame = _refused(session, CloseCode.MALFORMED, Code.MALFORMED)
    assert frame.message.endswith("(at $.cred)")


def test_session_oversize_frame_closes_with_1009(setup: Setup) -> None:
    """A frame over the session's max_frame closes with 1009 frame_too_large."""
    session = setup.session(limits=codec.Limits(max_frame=64))
    assert session.receive(b"\x00" * 65) == []
    _refused(session, CloseCode.TOO_LARGE, Code.TOO_LARGE)
    assert isinstance(session.error, FrameTooLarge)


def test_session_second_hello_after_ready_is_unexpected(setup: Setup) -> None:
    """A hello after the handshake closes with 4409 unexpected_frame."""
    session = _ready(setup)
    assert session.receive(_hello(setup.units["JM-CUSTOMS"])) == []
    _refused(session, CloseCode.UNEXPECTED, Code.UNEXPECTED)


def test_session_client_frames_after_ready_are_events(setup: Setup) -> None:
    """After the handshake every client frame is handed on as an event, nothing is sent."""
    session = _ready(setup)
    frames: list[f.ClientFrame] = [
        f.Publish(items=(f.PublishItem(op="OP-1", cid=1, header=b"", payload=b"x"),)),
        f.Subscribe(rid=1, op="OP-1"),
        f.Ack(op="OP-1", seq=1),
        f.DirectedAck(ids=(1,)),
    ]
    for frame in frames:
        assert session.receive(codec.encode(frame)) == [frame]
    assert session.data_to_send() == []
    assert session.state is State.READY


def test_session_server_frame_from_the_agent_is_unexpected(setup: Setup) -> None:
    """A hub-to-agent frame sent by the agent closes with 4409."""
    session = _ready(setup)
    assert session.receive(codec.encode(f.Ok(rid=1))) == []
    frame = _refused(session, CloseCode.UNEXPECTED, Code.UNEXPECTED)
    assert "'ok'" in frame.message


def test_session_receive_after_closed_returns_nothing(setup: Setup) -> None:
    """Once closed, the session ignores input: no events, no output, same close code."""
    session = setup.session()
    session.receive(b"\xc1")
    session.data_to_send()
    assert session.receive(_hello(setup.units["JM-CUSTOMS"])) == []
    assert session.data_to_send() == []
    assert session.state is State.CLOSED
    assert session.close_code == CloseCode.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=256), min_size=1, max_size=4))
def test_session_arbitrary_bytes_never_raise(setup: Setup, messages: list[bytes]) -> None:
    """Arbitrary messages never raise out of receive, and all output decodes as frames."""
    session = setup.session(drain=False)
    for data in messages:
        session.receive(data)
    for data in session.data_to_send():
        codec.decode(data)
    assert session.state in (State.AWAIT_HELLO, State.CLOSED)


def test_session_error_frames_stay_within_the_codec_limits(setup: Setup) -> None:
    """The error frame for a credential with a huge invalid role still decodes as a frame."""
    cred = setup.units["JM-CUSTOMS"].credential
    wire = msgpack.unpackb(cred.to_bytes())
    wire["role"] = "\x00" * 3500  # repr() turns each NUL into 4 characters
    hello = f.Hello(credential=msgpack.packb(wire), credential_sig=b"\x00" * 64,
                    signature=b"\x00" * 64)
    session = setup.session()
    session.receive(codec.encode(hello))
    assert session.close_code == CloseCode.AUTH
    [frame] = _sent(session)  # decodes: the message was cut to the codec's limit
    assert isinstance(frame, f.Error)
    assert frame.code == Code.BAD_CREDENTIAL
