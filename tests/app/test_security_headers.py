"""Every answer of the server and of the front carries the security headers: pages, static
files, API JSON, redirects, and the errors aiohttp makes from raised exceptions."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.server import SECURITY_HEADERS, add_security_headers
from tests.support.compliance import VISIT, Recording
from tests.support.server import Server, running_server

# (method, path, token role or None, expected status)
KINDS = [
    ("GET", "/join", None, 200),                          # page
    ("GET", "/static/join.js", None, 200),                # static file
    ("GET", "/static/missing.js", None, 404),             # static 404
    ("GET", "/", None, 302),                              # redirect
    ("GET", "/healthz", None, 200),                       # JSON
    ("GET", "/no/such/page", None, 404),                  # router 404
    ("DELETE", "/join", None, 405),                       # router 405
    ("GET", "/api/visits", None, 401),                    # bearer refused: 401 JSON
    ("GET", "/api/recordings", "officer", 403),           # wrong role: 403 JSON
    ("GET", f"/api/recordings/{VISIT}", "compliance", 200),
    ("GET", "/api/recordings/nope", "compliance", 404),   # raised JSON 404
    ("GET", "/ws", None, 400),                            # WebSocket refused: no upgrade
]


def assert_secured(headers: aiohttp.typedefs.LooseHeaders, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (what, name, headers.get(name))


async def check_kinds(server: Server, kinds: list[tuple[str, str, str | None, int]]) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path, role, status in kinds:
            headers = {"Authorization": f"Bearer {server.token('h-1', role, None)}"} if role else {}
            async with http.request(method, server.url + path, headers=headers,
                                    allow_redirects=False) as resp:
                assert resp.status == status, (method, path, resp.status)
                assert_secured(resp.headers, f"{method} {path}")


def test_csp_confines_connections_framing_and_forms() -> None:
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["object-src"] == "'none'"


async def test_every_kind_of_answer_carries_the_headers(
        recorded: tuple[Server, Recording]) -> None:
    server, _ = recorded
    await check_kinds(server, KINDS)


async def test_the_front_answers_carry_the_headers(tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_WORKERS="2") as server:
        await check_kinds(server, [k for k in KINDS if VISIT not in k[1]])


async def test_an_unexpected_error_carries_the_headers() -> None:
    # The server's own hook on an app of its own: create_app would install the codec
    # guard in this process, and the tests' own peers must still decode.
    app = web.Application()
    app.on_response_prepare.append(add_security_headers)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/broken", broken)
    async with TestServer(app) as server, aiohttp.ClientSession() as http, \
            http.get(server.make_url("/broken")) as resp:
        assert resp.status == 500
        assert_secured(resp.headers, "500")
