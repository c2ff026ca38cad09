"""A family whose browser speaks Simplified Chinese or Spanish sees the join page in that
language in every state (refused, too early, lobby, live, ended), with no English and no
raw catalogue key left, and the language switch changes it and is remembered. Real
Chromium with the browser's language set, a real server."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from playwright.async_api import Page

from tests.support.browser import end_visit, open_page, served_chromium
from tests.support.server import ROOT, Server, VisitClaim

CATALOGUES = ROOT / "web" / "static" / "i18n"
EARLY_ENTRY_S = 20


def catalogue(code: str) -> dict[str, str | dict[str, str]]:
    return json.loads((CATALOGUES / f"{code}.json").read_text(encoding="utf-8"))


ENGLISH = catalogue("en")
# What would betray an untranslated text: each English text's words between its
# placeholders (long enough not to be a name or a number).
ENGLISH_WORDS = {part.strip() for text in ENGLISH.values()
                 for form in (text.values() if isinstance(text, dict) else [text])
                 for part in re.split(r"\{\w+\}", form) if len(part.strip()) >= 8}


async def shown(page: Page) -> str:
    """Everything a person can see or hear read out: visible text, title, labels."""
    return await page.evaluate(
        "[document.title, document.body.innerText,"
        " ...[...document.querySelectorAll('[aria-label]')].map((el) => el.ariaLabel)]"
        ".join('\\n')")


def fragment(text: str | dict[str, str]) -> str:
    """The longest run of a text's words between its placeholders."""
    form = text["other"] if isinstance(text, dict) else text
    return max(re.split(r"\{\w+\}", form), key=len).strip()


async def assert_speaks(page: Page, code: str, *keys: str) -> None:
    """The page is in ``code``: html lang, the texts of ``keys`` shown, nothing English,
    no raw key."""
    texts = catalogue(code)
    deadline = time.time() + 10
    while missing := [key for key in keys if fragment(texts[key]) not in await shown(page)]:
        assert time.time() < deadline, (code, missing, await shown(page))
        await asyncio.sleep(0.1)
    assert await page.evaluate("document.documentElement.lang") == code
    text = await shown(page)
    assert [w for w in ENGLISH_WORDS if w in text] == [], (code, text)
    assert [k for k in ENGLISH if k in text] == [], (code, text)


def link(server: Server, sub: str, visit: VisitClaim, now: float | None = None) -> str:
    token = server.token(sub, "family", visit, name=f"Sam {sub}", now=now)
    return f"{server.url}/join#token={token}"


async def test_join_page_in_chinese_and_spanish(tmp_path: Path) -> None:
    async with served_chromium(tmp_path, lambda _: None,
                               VISITBRIDGE_EARLY_ENTRY_S=str(EARLY_ENTRY_S)) as (
            server, browser, _):
        now = int(time.time())
        for code in ("zh-CN", "es"):
            over = VisitClaim(f"lang-over-{code}", now - 600, now - 60)
            early = VisitClaim(f"lang-early-{code}", now + 600, now + 1200)
            live = VisitClaim(f"lang-live-{code}", now - 5, now + 600)
            # Refused before the camera: the visit is over.
            page = await open_page(browser, link(server, "f1", over, over.ends_at - 60),
                                   locale=code)
            await assert_speaks(page, code, "refusal.visit_ended", "status.not_connected")
            # A damaged link, refused by the server at the join.
            page = await open_page(browser, f"{server.url}/join#token=a.b.c", locale=code)
            await page.locator("#join:enabled").click()
            await assert_speaks(page, code, "refusal.malformed")
            # Too early: the countdown to the waiting room.
            page = await open_page(browser, link(server, "f2", early), locale=code)
            await page.locator("#join:enabled").click()
            await assert_speaks(page, code, "status.too_early", "clock.opens_in")
            # Lobby, then the live visit waiting for the resident, then its end.
            page = await open_page(browser, link(server, "f3", live), locale=code)
            await page.locator("#join:enabled").wait_for()
            await assert_speaks(page, code, "lobby.title", "lobby.recorded", "lobby.join",
                                "lobby.welcome", "lobby.when")
            await page.locator("#join").click()
            await page.locator("li.placeholder:not([hidden])").wait_for()
            await assert_speaks(page, code, "controls.leave", "stage.waiting_for")
            await end_visit(server, live.id)
            await page.locator("#ended:not([hidden])").wait_for()
            await assert_speaks(page, code, "end.ended_by_officer", "clock.ended")

            # The switch: English at once, and remembered on this device.
            await page.select_option("#language", "en")
            await page.get_by_text(str(ENGLISH["end.ended_by_officer"])).wait_for()
            assert await page.evaluate("document.documentElement.lang") == "en"
            again = await page.context.new_page()
            await again.goto(f"{server.url}/join")
            await again.get_by_text(str(ENGLISH["refusal.no_token"])).wait_for()
            assert await again.locator("#language").input_value() == "en"
