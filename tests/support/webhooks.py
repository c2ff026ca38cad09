"""A records system's webhook receiver for tests, and reading the server's outbox.

The receiver is what a records system runs: an aiohttp endpoint that checks every
signature with ``records.webhooks.verify_signature`` before it believes a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from records.dialect import open_database
from records.webhooks import verify_signature
from tests.support.postgres import server_database

SECRET = "records-system-webhook-secret"


@dataclass
class Receiver:
    """Accepts every correctly signed event; counts the rest."""

    events: list[dict[str, Any]] = field(default_factory=list)
    header_ids: list[str] = field(default_factory=list)
    header_types: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    runner: web.AppRunner | None = None
    url: str = ""  # where it listens, once started
    delay_s: float = 0.0  # a slow records system takes this long to answer each event

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(self.delay_s)
        signature = request.headers.get("Visitbridge-Signature", "")
        if not verify_signature(SECRET.encode(), signature, body, time.time()):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.events.append(json.loads(body))
        self.header_ids.append(request.headers.get("Visitbridge-Event-Id", ""))
        self.header_types.append(request.headers.get("Visitbridge-Event-Type", ""))
        return web.Response(status=204)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hooks"

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def signed_body(request: web.Request, secret: bytes, now: float) -> bytes:
    """The body of a webhook request, once its signature is checked as of ``now``."""
    body = await request.read()
    assert verify_signature(secret, request.headers["Visitbridge-Signature"], body, now)
    return body


@contextlib.asynccontextmanager
async def serving(handle: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> AsyncIterator[str]:
    """Serve ``handle`` as a records system's webhook endpoint; yields its URL."""
    app = web.Application()
    app.router.add_post("/hooks", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/hooks"))


def webhook_env(port: int) -> dict[str, str]:
    return {"VISITBRIDGE_WEBHOOK_URL": f"http://127.0.0.1:{port}/hooks",
            "VISITBRIDGE_WEBHOOK_SECRET": SECRET}


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def outbox_rows(data_dir: Path) -> list[dict[str, Any]]:
    db = open_database(server_database(data_dir), readonly=True)
    try:
        return [dict(r) for r in db.execute(
            "SELECT seq, id, type, created_at, attempts, next_attempt_at, delivered_at "
            "FROM outbox ORDER BY seq")]
    finally:
        db.close()

