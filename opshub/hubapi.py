"""What the tools ask a running hub over its JSON HTTP API: the directory, the operations,
enrolment of credentials; of one hub, or of every node of a cluster (``HubNodes``), over
http:// or, for a wss:// hub, https://. Every request is signed by the tool's registrar
identity (``registrar``; protocol/http_auth.py), which the hub lets enroll units and see
the whole directory. Every failure of the HTTP client is translated
here, in one place, into an error of one line that names the hub: UsageError (a hub that is
not there, that does not answer, that is not an opshub hub, that refuses a credential) or
TlsError (its certificate does not verify).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from ssl import SSLContext
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from client.connection import TIMEOUT
from client.identity import Authority, UnitIdentity, UnitSpec
from client.tls import tls_error
from protocol.credentials import SignedCredential
from protocol.errors import UsageError

WS_PATH = "/v1/ws"
T = TypeVar("T")
#: the unit id a tool signs its HTTP requests as (never enrolled: it brings its credential)
REGISTRAR = "OPSHUB-REGISTRAR"


def registrar(authority: Authority, *, now: int) -> UnitIdentity:
    """A short-lived ``ocu`` identity for a tool holding the authority key to sign its
    requests with: the hub's default registrar role (hub/config.py registrar_roles).
    Country XX: user-assigned in ISO 3166, no country's."""
    return authority.enroll(UnitSpec(REGISTRAR, "XX", "opshub", "ocu"), now=now - 60,
                            validity=24 * 3600)


def ws_url(url: str) -> str:
    """The WebSocket URL of a hub given as ``ws://host:port[/v1/ws]`` or
    ``http://host:port``. Raises UsageError for anything else."""
    parts = urlsplit(url)
    scheme = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"{url!r} is not a hub URL (expected ws://HOST:PORT{WS_PATH})")
    path = parts.path.rstrip("/") or WS_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def hub_url_list(url: str | Sequence[str]) -> list[str]:
    """The WebSocket URLs of ``--hub``: one URL, a comma-separated list, or several of
    either (``--hub`` repeated), each as ``ws_url`` makes it. Raises UsageError for a bad
    URL or for none."""
    given = [url] if isinstance(url, str) else list(url)
    urls = [ws_url(u.strip()) for text in given for u in text.split(",") if u.strip()]
    if not urls:
        raise UsageError(f"--hub {','.join(given)!r} names no hub URL")
    return urls


def http_url(url: str) -> str:
    """The HTTP base URL of the hub whose WebSocket URL is ``url``."""
    parts = urlsplit(ws_url(url))
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class HubApi:
    """A running hub's HTTP API, for as long as the ``async with`` lasts."""

    def __init__(self, url: str, signer: UnitIdentity, *, timeout: float = TIMEOUT,
                 ssl: SSLContext | None = None) -> None:
        """``signer``: the identity the requests are signed as (``registrar``). ``ssl``:
        for an https:// API (a wss:// hub), what verifies the hub's certificate
        (client.tls.client_context); None trusts the system's CAs."""
        self.signer = signer
        self.url = ws_url(url)
        self.http = http_url(url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HubApi:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=True if self._ssl is None else self._ssl))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def operations(self) -> set[str]:
        """The ids of the operations the hub has."""
        return await self._get("/v1/operations", lambda body: {
            str(op["op"]) for op in body["operations"]})

    async def directory(self) -> dict[str, SignedCredential]:
        """The credential on file for each enrolled unit."""
        def parse(body: Any) -> dict[str, SignedCredential]:
            creds = [SignedCredential.from_json(u) for u in body["units"]]
            return {c.credential.unit: c for c in creds}

        return await self._get("/v1/directory", parse)

    async def enroll(self, identities: Iterable[UnitIdentity]) -> None:
        """Put each credential in the hub's directory (a no-op for one it has). Raises
        UsageError with the hub's reason when it refuses one."""
        assert self._session is not None, "use HubApi in `async with`"
        for ident in identities:
            body = json.dumps(ident.signed.to_json()).encode()
            headers = self._signed("POST", "/v1/directory", body)
            headers["Content-Type"] = "application/json"
            async with self._errors(), self._session.post(
                    f"{self.http}/v1/directory", data=body, headers=headers) as resp:
                if resp.status >= 400:
                    raise UsageError(f"the hub at {self.url} refused the credential of "
                                     f"{ident.unit}: {_reason(await resp.text())}")

    async def _get(self, path: str, parse: Callable[[Any], T]) -> T:
        assert self._session is not None, "use HubApi in `async with`"
        async with self._errors(), self._session.get(
                f"{self.http}{path}", headers=self._signed("GET", path, b"")) as resp:
            if resp.status >= 400:
                raise UsageError(f"the hub at {self.url} answered {path} with HTTP "
                                 f"{resp.status}: {_reason(await resp.text())}")
            return parse(await resp.json())

    def _signed(self, method: str, target: str, body: bytes) -> dict[str, str]:
        """The headers that authenticate one request (with the credential: the signer
        need not be enrolled)."""
        return self.signer.sign_request(method, target, body, at=int(time.time()), bring=True)

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """The one translation of the HTTP client's failures."""
        try:
            yield
        except aiohttp.ClientSSLError as exc:
            raise tls_error(self.url, exc) from None
        except aiohttp.ClientConnectorError as exc:
            error = exc.os_error
            code = error.errno
            reason = (os.strerror(code) if code is not None and code in errno.errorcode
                      else error.strerror or str(error))
            raise UsageError(f"no hub answers at {self.url} ({reason.lower()})") from None
        except TimeoutError:
            raise UsageError(f"the hub at {self.url} did not answer within "
                             f"{self._timeout.total:g} s") from None
        except (aiohttp.ContentTypeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError) as exc:
            raise UsageError(f"{self.url} does not answer like an opshub hub "
                             f"({type(exc).__name__}: {exc})") from None
        except aiohttp.ClientError as exc:
            raise UsageError(f"the hub at {self.url} failed: {exc}") from None


class HubNodes:
    """The HTTP APIs of several nodes of one cluster (or of a single hub), for as long as
    the ``async with`` lasts. Every node is asked, not only the first: a hub node holds the
    directory and the operations in memory (its router), so reading every node's and
    enrolling on each does not rely on how soon one node sees what another stored (a
    credential a node already has is a no-op there), at one request per node."""

    def __init__(self, url: str | Sequence[str], signer: UnitIdentity, *,
                 timeout: float = TIMEOUT, ssl: SSLContext | None = None) -> None:
        """``signer``, ``ssl``: see HubApi. Raises UsageError for a bad URL or for none."""
        self.urls = hub_url_list(url)
        self._nodes = [HubApi(u, signer, timeout=timeout, ssl=ssl) for u in self.urls]
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> HubNodes:
        async with contextlib.AsyncExitStack() as stack:
            for node in self._nodes:
                await stack.enter_async_context(node)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def operations(self) -> set[str]:
        """The ids of the operations any node has."""
        return {op for node in self._nodes for op in await node.operations()}

    async def directory(self) -> dict[str, SignedCredential]:
        """Per unit, the latest credential any node has on file."""
        out: dict[str, SignedCredential] = {}
        for node in self._nodes:
            for unit, signed in (await node.directory()).items():
                held = out.get(unit)
                if held is None or signed.credential.issued_at > held.credential.issued_at:
                    out[unit] = signed
        return out

    async def enroll(self, identities: Iterable[UnitIdentity]) -> None:
        """Put each credential in every node's directory. Raises UsageError with the
        reason of the first node that refuses one."""
        chosen = list(identities)
        for node in self._nodes:
            await node.enroll(chosen)


def _reason(text: str) -> str:
    """The message of the hub's JSON error body, or the start of whatever it sent."""
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip()[:200] or "no reason given"
