"""The hub over TLS: a RunningHub with a certificate listens with TLS 1.3 (1.2 at least),
names wss:// and https:// URLs, and does not start on a key that does not match."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from client.tls import client_context
from hub.app import RunningHub
from hub.tls import server_context
from opshub.tls import TlsFiles, write_tls_folder
from tests.conftest import Keys


async def _negotiated(hub: RunningHub, context: ssl.SSLContext) -> str | None:
    """The TLS version a client with ``context`` and the hub agree on."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", hub.port, ssl=context)
    try:
        version: str | None = writer.get_extra_info("ssl_object").version()
        return version
    finally:
        writer.close()
        await writer.wait_closed()


def test_tls_hub_urls_are_wss_and_https(keys: Keys, db_path: Path,
                                        tls_files: TlsFiles) -> None:
    """A hub configured with a certificate names wss:// and https:// URLs."""
    running = RunningHub(keys.config(db_path, port=8765, tls_cert=tls_files.cert,
                                     tls_key=tls_files.key))
    assert running.url == "wss://127.0.0.1:8765/v1/ws"
    assert running.http == "https://127.0.0.1:8765"


async def test_tls_hub_negotiates_tls_1_3(tls_hub: RunningHub, tls_files: TlsFiles) -> None:
    """A client that offers TLS 1.3 gets it."""
    assert await _negotiated(tls_hub, client_context(tls_files.ca)) == "TLSv1.3"


async def test_tls_hub_accepts_a_tls_1_2_client(tls_hub: RunningHub,
                                                tls_files: TlsFiles) -> None:
    """TLS 1.2 is the minimum, and is accepted."""
    context = client_context(tls_files.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await _negotiated(tls_hub, context) == "TLSv1.2"


def test_tls_server_context_refuses_tls_below_1_2(tls_files: TlsFiles) -> None:
    """The server context's floor is TLS 1.2."""
    assert server_context(tls_files.cert, tls_files.key).minimum_version == \
        ssl.TLSVersion.TLSv1_2


async def test_tls_hub_with_a_key_that_does_not_match_does_not_start(
        keys: Keys, db_path: Path, tls_files: TlsFiles, tmp_path: Path) -> None:
    """A certificate with another certificate's key raises ssl.SSLError before the hub
    opens its store or listens."""
    other = write_tls_folder(tmp_path / "other")
    running = RunningHub(keys.config(db_path, tls_cert=tls_files.cert, tls_key=other.key))
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        await running.start()
    await running.stop()
