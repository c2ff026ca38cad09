"""The pages and their static files, served alike by a server and by the front.

Every page is ``web/head.html`` (the head all pages share: charset, viewport, no
referrer, the style sheet, the token helper) followed by ``web/<name>.html`` (the page's
title, its own scripts and its content), joined once when the routes are added.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

WEB_DIR = Path(importlib.util.find_spec("web").origin).resolve().parent  # type: ignore[arg-type,union-attr]
PAGES = ("join", "officer", "compliance")


def add_pages(app: web.Application) -> None:
    """Serve each page at ``/<name>``, ``/`` as a redirect to the join page, and
    ``/static/``."""
    head = (WEB_DIR / "head.html").read_bytes()
    for name in PAGES:
        app.router.add_get(f"/{name}", _page(head + (WEB_DIR / f"{name}.html").read_bytes()))
    app.router.add_get("/", _index)
    app.router.add_static("/static/", WEB_DIR / "static")


def _page(html: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=html, content_type="text/html", charset="utf-8")
    return page


async def _index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/join")
