"""The lesson's web app: one page for the instructor (and the class, on the projector),
its state as JSON, the instructor's actions, and server-sent change notices. Built like
the exercise's app (client/exercise/web.py: plain files from ``static/``, no build step,
no CDN, an unguessable link); it decides nothing: every action goes to the LessonRun.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from client.exercise.web import STATIC as EXERCISE_STATIC
from client.exercise.web import control_response, event_stream, refuse

STATIC = Path(__file__).resolve().parent / "static"


class Lesson(Protocol):
    token: str

    def state(self) -> dict[str, Any]: ...

    async def control(self, action: str, args: dict[str, Any]) -> dict[str, Any]: ...

    def changes(self) -> asyncio.Queue[str]: ...

    def forget(self, queue: asyncio.Queue[str]) -> None: ...


LESSON = web.AppKey("lesson", Lesson)


def _lesson(request: web.Request) -> Lesson:
    lesson = request.app[LESSON]
    if request.match_info.get("token") != lesson.token:
        raise refuse(web.HTTPForbidden, "forbidden", "not this lesson's link")
    return lesson


async def page(request: web.Request) -> web.FileResponse:
    _lesson(request)
    return web.FileResponse(STATIC / "lesson.html")


async def state(request: web.Request) -> web.Response:
    return web.json_response(_lesson(request).state())


async def control(request: web.Request) -> web.Response:
    return await control_response(request, _lesson(request).control)


async def events(request: web.Request) -> web.StreamResponse:
    lesson = _lesson(request)
    return await event_stream(request, lesson.changes(), lesson.forget)


def make_app(lesson: Lesson) -> web.Application:
    app = web.Application()
    app[LESSON] = lesson
    app.router.add_get("/lesson/{token}", page)
    app.router.add_get("/api/lesson/{token}/state", state)
    app.router.add_post("/api/lesson/{token}/control", control)
    app.router.add_get("/api/events/{token}", events)
    app.router.add_static("/static/teach/", STATIC)
    app.router.add_static("/static/", EXERCISE_STATIC)  # common.js, style.css
    return app
