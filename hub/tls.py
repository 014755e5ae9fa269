"""The hub's TLS: the server context of ``opshub serve --tls-cert FILE --tls-key FILE``.
It reads PEM files and makes no certificate (opshub/tls.py makes a test CA).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with ``cert`` (a PEM certificate, optionally followed by the
    intermediates that chain it to the CA clients trust) and its private ``key``; TLS 1.2
    at least (1.3 is negotiated with every client that has it), no client certificates
    (agents authenticate in the protocol, with their credentials). Raises OSError for a
    file that cannot be read, ssl.SSLError for one that is not PEM or a key that does not
    match the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
