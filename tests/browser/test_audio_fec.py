"""Real Chromium pages send their audio as Opus with in-band FEC, because the offer asks.

Two pages join through the join page. Each page's answer (as sent over its WebSocket)
keeps ``useinbandfec=1`` on every Opus m-line, and the page's own statistics show that
its outbound audio is Opus negotiated with FEC: the codec of the ``outbound-rtp`` audio
stream carries ``useinbandfec=1`` in its ``sdpFmtpLine``. The server forwards those
packets unchanged, so the redundancy reaches the other page.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Page, WebSocket

from tests.support.browser import join, join_links, open_page, served_chromium, wait_decoding
from tests.support.sdp import has_fec, opus_fmtp


def record_answers(page: Page) -> list[str]:
    """The SDP of every ``answer`` the page sends from now on."""
    answers: list[str] = []

    def on_frame(payload: str | bytes) -> None:
        message = json.loads(payload)
        if message.get("type") == "answer":
            answers.append(message["sdp"])

    def on_socket(ws: WebSocket) -> None:
        ws.on("framesent", on_frame)

    page.on("websocket", on_socket)
    return answers


async def outbound_audio_codec(page: Page, timeout: float = 10.0) -> dict[str, Any]:
    """The codec stats of the page's outbound audio, once packets have gone out."""
    deadline = time.monotonic() + timeout
    while True:
        stats = {s["id"]: s for s in await page.evaluate("window.visitStats()")}
        sending = [s for s in stats.values() if s.get("type") == "outbound-rtp"
                   and s.get("kind") == "audio" and s.get("packetsSent", 0) > 0]
        if sending and sending[0].get("codecId") in stats:
            return stats[sending[0]["codecId"]]
        if time.monotonic() > deadline:
            raise AssertionError(f"no outbound audio after {timeout} s")
        await asyncio.sleep(0.2)


async def test_pages_send_opus_with_in_band_fec(tmp_path: Path) -> None:
    now = int(time.time())
    requests = [(sub, role, name, "fec-b1", now - 5, now + 600)
                for sub, role, name in (("inmate-f1", "inmate", "Alex Inmate"),
                                        ("family-f1", "family", "Sam Family"))]
    async with served_chromium(tmp_path, lambda server: join_links(server, requests)) as (
            _, browser, links):
        pages = [await open_page(browser, link) for link in links]
        answers = [record_answers(page) for page in pages]
        for page in pages:
            await page.get_by_role("button", name="Join the visit").wait_for()
            await join(page)
        for page in pages:
            await wait_decoding(page, 1, 15)
        for page, sent in zip(pages, answers, strict=True):
            assert len(sent) == 1, sent
            fmtp = opus_fmtp(sent[0])
            assert len(fmtp) == 6 and all(has_fec(f) for f in fmtp), fmtp
            codec = await outbound_audio_codec(page)
            assert codec["mimeType"].lower() == "audio/opus", codec
            assert has_fec(codec.get("sdpFmtpLine", "")), codec
