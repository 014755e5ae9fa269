"""The JSON HTTP API beside the WebSocket: operations and the directory, for signed callers;
and, on a listener of their own, health and metrics.

Read-mostly and metadata only: nothing here ever returns a message payload. Every
``/v1/`` request but the OpenAPI document (``/v1/openapi.json``, docs/openapi.json) is
signed by a unit (protocol/http_auth.py) and sees what hub/api_auth.py lets it see.
Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx status, each
rejection is one rate-limited WARNING line (hub/guard.py) and a count in /metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.api_auth import ApiError, Caller, authenticate
from hub.broker import Broker
from hub.guard import RejectLog
from hub.openapi import document
from protocol.credentials import SignedCredential
from protocol.errors import AuthError, Code
from protocol.frames import PROTOCOL_VERSION
from protocol.http_auth import parse_authorization
from protocol.router import Router
from protocol.router_audit import Kind

BROKER = web.AppKey("broker", Broker)
REJECTS = web.AppKey("rejects", RejectLog)
CALLER = web.RequestKey("caller", Caller)
#: paths under /v1/ that need no signature: the contract, and the WebSocket (which
#: authenticates in its own handshake)
PUBLIC = frozenset({"/v1/openapi.json", "/v1/ws"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def signed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate ``/v1/`` requests; turn every refusal into the JSON error body, one
    log line and a count."""
    broker = request.app[BROKER]
    try:
        if request.path.startswith("/v1/") and request.path not in PUBLIC \
                and request.match_info.http_exception is None:
            request[CALLER] = authenticate(
                method=request.method, target=request.raw_path, headers=request.headers,
                body=await request.read(), ring=broker.router.ring, lookup=broker.lookup,
                config=broker.config, now=int(time.time()))
        return await handler(request)
    except ApiError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(exc.status, _HTTP_CODES.get(exc.status, Code.MALFORMED), exc.reason)
    broker.metrics.reject(f"http_{error.status}")
    if error.status in (401, 403):  # not who it says, or not allowed
        broker.audit.record(Kind.AUTH_FAILURE, unit=_claimed_unit(request), source=request.remote,
                            code=error.code, transport="http")
    request.app[REJECTS].warn(request.remote, f"{request.method} {request.path[:100]}: "
                              f"{error.status} {error.code}: {error.message}")
    response = _json_error(error.status, error.code, error.message)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Opshub-Ed25519 realm="opshub"'
    return response


def _claimed_unit(request: web.Request) -> str | None:
    """The unit an unauthenticated request claimed to be, for the audit (not verified)."""
    try:
        return parse_authorization(request.headers.get("Authorization", "")).unit[:64]
    except AuthError:
        return None


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: Code.TOO_LARGE,
               429: Code.RATE_LIMITED}


def _visible_operations(router: Router, caller: Caller) -> list[str]:
    if caller.registrar:
        return sorted(router.ops)
    unit = caller.unit
    return sorted(op for op, st in router.ops.items()
                  if unit in st.members or st.admin == unit)


def _visible_units(router: Router, caller: Caller) -> set[str]:
    if caller.registrar:
        return set(router.directory)
    units = {caller.unit}
    for op in _visible_operations(router, caller):
        st = router.ops[op]
        units.update(st.members)
        units.add(st.admin)
    return units & set(router.directory)


def _operation(router: Router, op: str) -> dict[str, Any]:
    st = router.ops[op]
    return {"op": op, "name": st.name, "admin": st.admin, "epoch": st.epoch,
            "members": sorted(st.members), "head": router.heads.get(op, 0),
            "subscribers": len(router.subs.get(op, ()))}


async def operations(request: web.Request) -> web.Response:
    router = request.app[BROKER].router
    ops = _visible_operations(router, request[CALLER])
    return web.json_response({"operations": [_operation(router, op) for op in ops]})


async def operation(request: web.Request) -> web.Response:
    router = request.app[BROKER].router
    op = request.match_info["op"]
    if op not in _visible_operations(router, request[CALLER]):
        raise ApiError(404, Code.UNKNOWN_OPERATION,
                       f"no operation {op[:100]!r} that you belong to")
    return web.json_response(_operation(router, op))


async def directory(request: web.Request) -> web.Response:
    router = request.app[BROKER].router
    units = sorted(_visible_units(router, request[CALLER]))
    return web.json_response({"units": [router.directory[u].to_json() for u in units]})


async def directory_unit(request: web.Request) -> web.Response:
    router = request.app[BROKER].router
    unit = request.match_info["unit"]
    if unit not in _visible_units(router, request[CALLER]):
        raise ApiError(404, Code.UNKNOWN_UNIT,
                       f"no unit {unit[:100]!r} in the part of the directory you may see")
    return web.json_response(router.directory[unit].to_json())


async def enroll(request: web.Request) -> web.Response:
    """Add an authority-signed credential to the directory: registrars only."""
    broker = request.app[BROKER]
    caller = request[CALLER]
    if not caller.registrar:
        raise ApiError(403, Code.FORBIDDEN,
                       f"{caller.unit} may not enroll credentials: only registrars may "
                       "(registrar_units, registrar_roles in the hub's configuration)")
    try:
        signed = SignedCredential.from_json(json.loads(await request.read()))
    except RecursionError:
        raise ApiError(400, Code.MALFORMED, "the JSON body is nested too deeply") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, Code.MALFORMED, "expected a JSON object with base64 'credential' "
                       f"and 'signature': {type(exc).__name__}: {exc}") from None
    try:
        unit = broker.enroll(signed, by=caller.unit)
    except AuthError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    return web.json_response(broker.router.directory[unit].to_json(), status=201)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


async def health(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    return web.json_response({
        "status": "ok", "hub": broker.config.hub_id, "protocol": PROTOCOL_VERSION,
        "operations": len(broker.router.ops), "connections": broker.metrics.connections,
        "units": len(broker.router.directory)})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[BROKER].metrics.render(),
                        content_type="text/plain", charset="utf-8")


def add_routes(app: web.Application) -> None:
    """The API of the agents' listener (the WebSocket route is added by hub.app)."""
    app.middlewares.append(signed)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/operations", operations)
    app.router.add_get("/v1/operations/{op}", operation)
    app.router.add_get("/v1/directory", directory)
    app.router.add_get("/v1/directory/{unit}", directory_unit)
    app.router.add_post("/v1/directory", enroll)


def monitoring_app(broker: Broker) -> web.Application:
    """The second listener's app: /healthz and /metrics, for operators, unauthenticated."""
    app = web.Application()
    app[BROKER] = broker
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics)
    return app
