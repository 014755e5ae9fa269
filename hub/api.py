"""The JSON HTTP API beside the WebSocket: health, operations, directory, metrics.

Read-mostly and metadata only: nothing here ever returns a message payload.
Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx status.
"""

from __future__ import annotations

import binascii
from typing import Any

from aiohttp import web

from hub.broker import Broker
from protocol.credentials import SignedCredential
from protocol.errors import AuthError, Code
from protocol.frames import PROTOCOL_VERSION

BROKER = web.AppKey("broker", Broker)


def _error(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return status(text=web.json_response({"error": {"code": code, "message": message}}).text,
                  content_type="application/json")


def _operation(broker: Broker, op: str) -> dict[str, Any]:
    router = broker.router
    st = router.ops[op]
    return {"op": op, "name": st.name, "admin": st.admin, "epoch": st.epoch,
            "members": sorted(st.members), "head": router.heads.get(op, 0),
            "subscribers": len(router.subs.get(op, ()))}


async def health(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    return web.json_response({
        "status": "ok", "hub": broker.config.hub_id, "protocol": PROTOCOL_VERSION,
        "operations": len(broker.router.ops), "connections": broker.metrics.connections,
        "units": len(broker.router.directory)})


async def operations(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    ops = sorted(broker.router.ops)
    return web.json_response({"operations": [_operation(broker, op) for op in ops]})


async def operation(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    op = request.match_info["op"]
    if op not in broker.router.ops:
        raise _error(web.HTTPNotFound, Code.UNKNOWN_OPERATION, f"no operation {op!r}")
    return web.json_response(_operation(broker, op))


async def directory(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    return web.json_response(
        {"units": [broker.router.directory[u].to_json() for u in sorted(broker.router.directory)]})


async def directory_unit(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    unit = request.match_info["unit"]
    signed = broker.router.directory.get(unit)
    if signed is None:
        raise _error(web.HTTPNotFound, Code.UNKNOWN_UNIT, f"no unit {unit!r} in the directory")
    return web.json_response(signed.to_json())


async def enroll(request: web.Request) -> web.Response:
    """Add an authority-signed credential to the directory (it is self-authenticating)."""
    broker = request.app[BROKER]
    try:
        signed = SignedCredential.from_json(await request.json())
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise _error(web.HTTPBadRequest, Code.MALFORMED,
                     f"expected JSON with base64 'credential' and 'signature': {exc}") from None
    try:
        unit = broker.enroll(signed)
    except AuthError as exc:
        raise _error(web.HTTPBadRequest, exc.code, exc.message) from None
    return web.json_response(broker.router.directory[unit].to_json(), status=201)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[BROKER].metrics.render(),
                        content_type="text/plain", charset="utf-8")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", health)
    app.router.add_get("/v1/operations", operations)
    app.router.add_get("/v1/operations/{op}", operation)
    app.router.add_get("/v1/directory", directory)
    app.router.add_get("/v1/directory/{unit}", directory_unit)
    app.router.add_post("/v1/directory", enroll)
    app.router.add_get("/metrics", metrics)
