"""TLS on the agents' side: the context that trusts the CA of a hub's certificate (the
tools' ``--tls-ca FILE``), and the one place where the HTTP client's TLS failures become
a TlsError of one line naming the URL and the reason. It makes no certificate
(opshub/tls.py does, for a test setup) and opens no socket.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import aiohttp

from protocol.errors import TlsError, UsageError

#: OpenSSL's wrapping of a reason: "[SSL: WRONG_VERSION_NUMBER] wrong version number
#: (_ssl.c:1000)" -> "wrong version number"
_OPENSSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


def client_context(ca: Path | None = None) -> ssl.SSLContext:
    """A context for wss:// and https:// that checks the hub's certificate chain and host
    name against the CA certificates in ``ca`` (a PEM file), or the system's when None;
    TLS 1.2 at least. Raises UsageError if ``ca`` is not a readable PEM file of
    certificates."""
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except ssl.SSLError as exc:
        raise UsageError(f"{ca}: not a PEM file of CA certificates ({tls_reason(exc)})"
                         ) from None
    except OSError as exc:
        raise UsageError(f"cannot read the CA file {ca}: "
                         f"{(exc.strerror or str(exc)).lower()}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_reason(exc: BaseException) -> str:
    """What went wrong, in words ("certificate verify failed: unable to get local issuer
    certificate"), without aiohttp's and OpenSSL's wrapping."""
    exc = _unwrapped(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (exc.verify_message or "").rstrip(".")
        return f"certificate verify failed: {detail}" if detail else "certificate verify failed"
    if isinstance(exc, ssl.SSLError):
        text = exc.strerror or str(exc)
        return _OPENSSL_NOISE.sub("", text).strip() or (exc.reason or "").lower() or "failed"
    return str(exc) or type(exc).__name__


def tls_error(url: str, exc: BaseException) -> TlsError:
    """The TlsError for ``exc`` (an aiohttp.ClientSSLError, or an ssl.SSLError) met while
    connecting to ``url``."""
    inner = _unwrapped(exc)
    if isinstance(inner, ssl.SSLCertVerificationError):
        why = (inner.verify_message or "").rstrip(".") or "certificate verify failed"
        return TlsError(f"TLS with {url} failed: the hub's certificate does not verify "
                        f"({why}); trust the CA that signed it (--tls-ca FILE)")
    hint = ""
    if isinstance(inner, ssl.SSLError) and inner.reason == "WRONG_VERSION_NUMBER":
        hint = " (the answer was not TLS: a hub without TLS is at ws://)"
    return TlsError(f"TLS with {url} failed: {tls_reason(inner)}{hint}")


def _unwrapped(exc: BaseException) -> BaseException:
    """The ssl module's error inside aiohttp's."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return exc.certificate_error
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error
    return exc
