"""Relaying one page's WebSocket session to the process that serves its visit.

Used by the front of ``serve --workers N`` (to a worker) and by a node of a Redis
cluster (to the node that owns the visit). Only signaling is relayed: the ICE candidates
in the offer are the serving process's own, so media goes straight to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web

MAX_MESSAGE_BYTES = 256 * 1024


def forwarded_for(request: web.Request) -> str:
    """The X-Forwarded-For the serving process gets: what came in, and the address seen
    here (workers trust the front's loopback address as a proxy, so they name that
    client)."""
    seen = request.headers.get("X-Forwarded-For", "")
    remote = request.remote or ""
    return f"{seen}, {remote}" if seen else remote


async def connect(http: aiohttp.ClientSession, base_url: str,
                  request: web.Request, **headers: str) -> aiohttp.ClientWebSocketResponse:
    """The upstream ``/ws`` of the process at ``base_url``."""
    return await http.ws_connect(
        base_url.replace("http", "ws", 1) + "/ws", heartbeat=10.0,
        max_msg_size=MAX_MESSAGE_BYTES,
        headers={"X-Forwarded-For": forwarded_for(request), **headers})


async def pump(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse,
               first: str, upstream_ended: Callable[[], Awaitable[None]]) -> None:
    """Send the page's first message, then text frames both ways until either side
    closes; ``upstream_ended`` runs when the serving process closed first."""
    async with upstream:
        await upstream.send_str(first)

        async def down() -> None:
            async for msg in upstream:
                if msg.type == WSMsgType.TEXT:
                    await client.send_str(msg.data)
            if not client.closed:
                await upstream_ended()

        task = asyncio.ensure_future(down())
        try:
            async for msg in client:
                if msg.type == WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
        finally:
            if not upstream.closed:
                await upstream.close()
            await task
