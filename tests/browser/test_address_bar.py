"""Tokens leave the address bar: every page reads its token from the fragment and removes
it at once, so Back, Forward or the address of a shared kiosk never shows the link again;
the join page still joins and reconnects with the token it keeps in memory."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.async_api import Page

from auth.tokens import VisitClaim
from tests.support.browser import cli_token, open_page, served_chromium, until, wait_decoding
from tests.support.server import Participant, in_visit


async def assert_no_token_anywhere(page: Page) -> None:
    """Neither the address nor any entry of the tab's history holds the token."""
    assert await page.evaluate("location.hash") == ""
    assert "token" not in page.url
    for _ in range(await page.evaluate("history.length")):
        if await page.go_back() is None:
            break
        assert "token" not in page.url, page.url
    while await page.go_forward() is not None:
        assert "token" not in page.url, page.url


async def test_tokens_leave_the_address_bar_and_the_visit_still_reconnects(
        tmp_path: Path) -> None:
    now = int(time.time())
    visit = VisitClaim("ab-visit", now - 5, now + 600)
    async with served_chromium(tmp_path, lambda server: cli_token(
            server, "family-ab", "family", "Sam", visit.id, visit.starts_at,
            visit.ends_at)) as (server, browser, family_token):
        inmate = Participant(server, server.token("inmate-ab", "inmate", visit))
        link = f"{server.url}/join?kiosk#token={family_token}"
        officer = server.token("officer-ab", "officer", None, name="Officer Ab")
        compliance = server.token("compliance-ab", "compliance", None, name="Auditor")
        async with in_visit(inmate):
            page = await open_page(browser, link)
            # Gone as soon as the page has loaded, the kiosk flag (a query) kept.
            assert await page.evaluate("location.hash") == ""
            assert page.url == f"{server.url}/join?kiosk"
            await wait_decoding(page, 1, 15)  # the kiosk joins on its own

            # The connection drops: the page rejoins with the token it kept in memory.
            await page.evaluate("window.before = ws; ws.close()")
            await until(page, "ws !== window.before && pc && pc.connectionState === 'connected'",
                        15)
            await wait_decoding(page, 1, 15)
            joins = [e for e in inmate.events if e["type"] == "participant_joined"]
            assert [e["participant"]["id"] for e in joins] == ["family-ab", "family-ab"]

            # The next kiosk user goes elsewhere, then Back: the link does not come back.
            await page.goto(f"{server.url}/healthz")
            await page.go_back()
            assert page.url == f"{server.url}/join?kiosk"
            await page.get_by_text("This page needs your visit link.").wait_for()
            await assert_no_token_anywhere(page)

            # The staff consoles too; they keep working with the token in memory.
            console = await open_page(browser, f"{server.url}/officer#token={officer}")
            await console.locator("tr[data-visit='ab-visit']").wait_for()
            await assert_no_token_anywhere(console)
            records = await open_page(browser, f"{server.url}/compliance#token={compliance}")
            assert await records.evaluate("location.hash") == ""
            await records.get_by_role("button", name="Search").click()
            await records.get_by_text(re.compile(r"^\d+ recordings? found\.$")).wait_for()
            await assert_no_token_anywhere(records)

