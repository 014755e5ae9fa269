"""RawWebSocket: a WebSocket client written byte by byte over a bare TCP socket, for tests
that must control what a library would not let them: how fast the peer reads (down to a
steady number of bytes a second, inside one frame), and frames a library refuses to send
(text with invalid UTF-8, RSV bits, unknown opcodes). RFC 6455 framing, nothing else."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time

from client.connection import TIMEOUT
from client.identity import UnitIdentity
from protocol import agent_session as s
from protocol import codec
from protocol import frames as f

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
#: Bytes the reader takes from the socket at a time when throttled.
CHUNK = 4096


class RawWebSocket:
    """One client connection. ``rate`` (bytes a second, None: as fast as it comes) paces
    every read from the socket, frame headers and payloads alike."""

    def __init__(self, sock: socket.socket, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.sock = sock
        self.reader = reader
        self.writer = writer
        self.rate: float | None = None
        self.bytes_read = 0
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/v1/ws", *,
                      rcvbuf: int | None = None) -> RawWebSocket:
        """Open the TCP connection (with a receive buffer of ``rcvbuf`` bytes, set before
        connecting so the window starts small) and do the HTTP upgrade."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        async with asyncio.timeout(TIMEOUT):
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            # A small stream buffer: what the test does not read stays in the kernel.
            reader, writer = await asyncio.open_connection(sock=sock, limit=CHUNK)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                         .encode())
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(sock, reader, writer)

    @property
    def local_port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    # --- sending -------------------------------------------------------------------------

    def send_frame(self, payload: bytes, *, opcode: int = OP_BINARY, rsv: int = 0,
                   fin: bool = True, masked: bool = True) -> None:
        """One frame, masked as RFC 6455 5.3 requires of a client (unless ``masked`` is
        false). ``rsv``: the three RSV bits (0-7)."""
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        bit = 0x80 if masked else 0
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", first, bit | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, bit | 127, n)
        if masked:
            mask = os.urandom(4)
            header += mask
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + payload)

    def send(self, frame: f.Frame) -> None:
        self.send_frame(codec.encode(frame))

    # --- receiving -----------------------------------------------------------------------

    async def _take(self, n: int) -> bytes:
        """Exactly n bytes of the stream, read from the socket at ``rate``. Raises
        EOFError at end of stream, ConnectionError on a reset."""
        while len(self._buffer) < n:
            if self.rate is None:
                chunk = await self.reader.read(1 << 16)
            else:
                started = time.monotonic()
                chunk = await self.reader.read(CHUNK)
                await asyncio.sleep(max(0.0, len(chunk) / self.rate
                                        - (time.monotonic() - started)))
            if not chunk:
                raise EOFError("the hub closed the connection")
            self.bytes_read += len(chunk)
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def read_frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (the hub's frames are never masked)."""
        first, second = await self._take(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._take(8))
        return first & 0x0F, await self._take(n)

    async def frame(self) -> f.Frame:
        """The next binary frame, decoded (within TIMEOUT)."""
        async with asyncio.timeout(TIMEOUT):
            opcode, payload = await self.read_frame()
        assert opcode == OP_BINARY, f"expected a binary frame, got opcode {opcode}: {payload!r}"
        return codec.decode(payload)

    async def until_close(self) -> tuple[int, str, int]:
        """Read on to the hub's close frame: its code, its reason, and how many other
        frames came before it. Raises EOFError or ConnectionError if the connection ends
        without one."""
        skipped = 0
        while True:
            opcode, payload = await self.read_frame()
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode(), skipped
            skipped += 1

    async def handshake(self, identity: UnitIdentity) -> f.Ready:
        """Authenticate as ``identity``."""
        session = s.AgentSession(credential=identity.signed, answer=identity.answer)
        session.connection_made()
        async with asyncio.timeout(TIMEOUT):
            while True:
                opcode, payload = await self.read_frame()
                assert opcode == OP_BINARY, f"handshake: opcode {opcode}: {payload!r}"
                events = session.receive(payload)
                for data in session.data_to_send():
                    self.send_frame(data)
                for event in events:
                    if isinstance(event, s.Connected):
                        return event.ready

    def close(self) -> None:
        """Drop the TCP connection (no close frame)."""
        self.writer.close()
