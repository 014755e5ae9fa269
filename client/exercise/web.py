"""The exercise's web app: the director's console and the players' seats, over HTTP.

aiohttp serves plain HTML, CSS and JavaScript from ``static/`` (no build step, no CDN),
JSON for the state and the actions, and server-sent events that tell a page when to
fetch again. It decides nothing: every request goes to the ``Exercise`` runtime
(client/exercise/runtime.py), which holds the seats' keys and runs the engine. The
director's pages need the director's token; a seat's pages its own one-time token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from client.exercise.forms import form
from client.messages import default_catalog
from protocol.errors import OpshubError, UsageError

STATIC = Path(__file__).resolve().parent / "static"


class Runtime(Protocol):
    """What the web app needs of the exercise runtime."""

    director_token: str

    def seat_units(self) -> dict[str, str]:
        """token -> unit of every seat."""

    def state(self) -> dict[str, Any]:
        """The console's view: clock, injects, traffic, expectations, seats."""

    def seat_state(self, unit: str) -> dict[str, Any]:
        """A seat's view: its inbox (rendered), what it may send, its open expectations."""

    async def control(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """A director's action (pause, resume, step, speed, deliver, cancel, inject,
        validate, reset, end). Raises OpshubError naming what is wrong."""

    def check(self, unit: str, message: dict[str, Any]) -> list[dict[str, str]]:
        """The problems the seat's message has (the checks SecureAgent.send runs)."""

    async def send(self, unit: str, message: dict[str, Any]) -> dict[str, Any]:
        """Send the seat's message; raises SchemaError (problems) or OpshubError."""

    def changes(self, who: str = "") -> asyncio.Queue[str]:
        """A queue that gets a word each time something a page shows changed."""

    def forget(self, queue: asyncio.Queue[str]) -> None: ...

    def review_file(self, name: str) -> Path | None:
        """A file of the latest after-action review, or None."""


RUNTIME = web.AppKey("runtime", Runtime)
#: an action by name, with its arguments: what it did, as JSON (raises OpshubError)
Control = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def refuse(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": {"code": code, "message": message}}),
                  content_type="application/json")


def _director(request: web.Request) -> Runtime:
    rt = request.app[RUNTIME]
    if request.match_info.get("token") != rt.director_token:
        raise refuse(web.HTTPForbidden, "forbidden", "not the director's link")
    return rt


def _seat(request: web.Request) -> tuple[Runtime, str]:
    rt = request.app[RUNTIME]
    unit = rt.seat_units().get(request.match_info.get("token", ""))
    if unit is None:
        raise refuse(web.HTTPForbidden, "forbidden", "no seat has this link")
    return rt, unit


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(web.HTTPBadRequest, "malformed", f"expected a JSON object: {exc}"
                      ) from None
    if not isinstance(body, dict):
        raise refuse(web.HTTPBadRequest, "malformed", "expected a JSON object")
    return body


async def console_page(request: web.Request) -> web.FileResponse:
    _director(request)
    return web.FileResponse(STATIC / "console.html")


async def review_file(request: web.Request) -> web.FileResponse:
    path = _director(request).review_file(request.match_info["name"])
    if path is None:
        raise refuse(web.HTTPNotFound, "not_found", "no such review file (end the exercise "
                      "or ask for a review first)")
    return web.FileResponse(path)


async def seat_page(request: web.Request) -> web.FileResponse:
    _seat(request)
    return web.FileResponse(STATIC / "seat.html")


async def console_state(request: web.Request) -> web.Response:
    return web.json_response(_director(request).state())


async def console_control(request: web.Request) -> web.Response:
    return await control_response(request, _director(request).control)


async def control_response(request: web.Request, control: Control) -> web.Response:
    """Carry out the request's ``{"action": ..., ...}`` with ``control``: its answer as
    JSON, or 409 with the error's code and message (400 for a body that is not one)."""
    body = await json_body(request)
    action = body.get("action")
    if not isinstance(action, str):
        raise refuse(web.HTTPBadRequest, "malformed", "'action' must name an action")
    try:
        return web.json_response(await control(action, body))
    except OpshubError as exc:
        raise refuse(web.HTTPConflict, exc.code, exc.message) from None


async def seat_state(request: web.Request) -> web.Response:
    rt, unit = _seat(request)
    return web.json_response(rt.seat_state(unit))


async def seat_check(request: web.Request) -> web.Response:
    rt, unit = _seat(request)
    message = (await json_body(request)).get("message")
    if not isinstance(message, dict):
        raise refuse(web.HTTPBadRequest, "malformed", "'message' must be a JSON object")
    return web.json_response({"problems": rt.check(unit, message)})


async def seat_send(request: web.Request) -> web.Response:
    rt, unit = _seat(request)
    message = (await json_body(request)).get("message")
    if not isinstance(message, dict):
        raise refuse(web.HTTPBadRequest, "malformed", "'message' must be a JSON object")
    problems = rt.check(unit, message)
    if problems:
        return web.json_response({"sent": False, "problems": problems}, status=422)
    try:
        return web.json_response({"sent": True, **await rt.send(unit, message)})
    except OpshubError as exc:
        found = [{"path": str(getattr(p, "path", "")), "message": str(p)}
                 for p in getattr(exc, "problems", [])]
        return web.json_response({"sent": False, "error": exc.message, "problems": found},
                                 status=422)


async def seat_form(request: web.Request) -> web.Response:
    """The form of one message type, field by field (client/exercise/forms.py)."""
    _seat(request)
    try:
        return web.json_response(form(default_catalog(), request.match_info["type"]))
    except UsageError as exc:
        raise refuse(web.HTTPNotFound, "unknown_type", exc.message) from None


async def events(request: web.Request) -> web.StreamResponse:
    """The exercise's change notices to a director's or a seat's page (``event_stream``)."""
    token = request.match_info.get("token", "")
    rt = request.app[RUNTIME]
    if token != rt.director_token and token not in rt.seat_units():
        raise refuse(web.HTTPForbidden, "forbidden", "not a link of this exercise")
    return await event_stream(request, rt.changes(rt.seat_units().get(token, "")), rt.forget)


async def event_stream(request: web.Request, queue: asyncio.Queue[str],
                       forget: Callable[[asyncio.Queue[str]], None]) -> web.StreamResponse:
    """Server-sent events: one ``change`` event per change (the page fetches again), and
    a comment every 15 s so that proxies keep the stream open. ``forget(queue)`` when the
    page goes away."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        await response.write(b"event: change\ndata: hello\n\n")
        while True:
            try:
                async with asyncio.timeout(15):
                    what = await queue.get()
                while not queue.empty():  # coalesce: one fetch covers them all
                    what = queue.get_nowait()
                await response.write(f"event: change\ndata: {what}\n\n".encode())
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the page went away
    finally:
        forget(queue)
        with contextlib.suppress(Exception):
            await response.write_eof()
    return response


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application()
    app[RUNTIME] = runtime
    app.router.add_get("/director/{token}", console_page)
    app.router.add_get("/api/director/{token}/state", console_state)
    app.router.add_post("/api/director/{token}/control", console_control)
    app.router.add_get("/director/{token}/review/{name}", review_file)
    app.router.add_get("/seat/{token}", seat_page)
    app.router.add_get("/api/seat/{token}/state", seat_state)
    app.router.add_post("/api/seat/{token}/check", seat_check)
    app.router.add_post("/api/seat/{token}/send", seat_send)
    app.router.add_get("/api/seat/{token}/form/{type}", seat_form)
    app.router.add_get("/api/events/{token}", events)
    app.router.add_static("/static/", STATIC)
    return app
