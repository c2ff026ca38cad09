"""Hostile signaling messages: nested past the decoder's recursion limit, or too large.

Each is refused with ``bad_message`` (a first message also closes the socket, a later one
leaves the visit as it was), with a real server; the server logs no traceback and goes
on serving.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.support.server import Participant, Server, module_server, participants, visit_now
from visit.messages import close_code as close_code_of

DEEP = "[" * 100_000 + "]" * 100_000  # 200 kB: under the size limit, past the recursion one
LARGE = json.dumps({"type": "candidate", "candidate": {"candidate": "x" * 300_000}})

server = module_server("hostile-messages")  # each test has a visit of its own


async def first_reply(server: Server, text: str) -> tuple[dict[str, Any], int | None]:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_str(text)
        reply = await ws.receive_json(timeout=10)
        await ws.receive(timeout=10)
        return reply, ws.close_code


async def alive(server: Server) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
        assert resp.status == 200
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("text", [DEEP, LARGE], ids=["deep", "large"])
async def test_a_hostile_first_message_is_refused_as_bad_message(
        server: Server, text: str) -> None:
    reply, close_code = await first_reply(server, text)
    assert reply["code"] == "bad_message"
    assert close_code == close_code_of("bad_message")
    await alive(server)


@pytest.mark.parametrize("text", [DEEP, LARGE], ids=["deep", "large"])
async def test_a_hostile_later_message_gets_bad_message_and_the_page_stays(
        server: Server, text: str) -> None:
    visit = visit_now("hostile-later-" + ("deep" if text is DEEP else "large"))
    page = Participant(server, server.token("family-h", "family", visit), publish=False)
    async with participants(page):
        assert (await page.join())["type"] == "joined"
        assert page._ws is not None
        await page._ws.send_str(text)
        await page.wait_for(lambda: page.error is not None)
        assert page.error is not None and page.error["code"] == "bad_message"
        await page.send({"type": "media_state", "audio": True, "video": False})
        assert page.close_code is None  # still in the visit
    await alive(server)


async def test_an_error_reply_never_echoes_more_than_a_few_dozen_characters(
        server: Server) -> None:
    """A reply that echoed the caller's type would let a page make the server write
    hundreds of kilobytes per message it sends."""
    visit = visit_now("hostile-echo")
    page = Participant(server, server.token("family-e", "family", visit), publish=False)
    async with participants(page):
        assert (await page.join())["type"] == "joined"
        await page.send({"type": "x" * 200_000})
        await page.wait_for(lambda: page.error is not None)
        assert page.error is not None and page.error["code"] == "bad_message"
        assert len(json.dumps(page.error)) < 200, len(json.dumps(page.error))
    await alive(server)
