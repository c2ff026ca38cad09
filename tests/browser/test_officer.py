"""An officer watches two visits at once, unseen, ends one; privileged visits refuse."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from records.dialect import open_database
from tests.support.browser import (
    decoded,
    join,
    join_links,
    open_page,
    served_chromium,
    wait_decoding,
)
from tests.support.postgres import server_database
from tests.support.server import Participant, participants, visit_now


async def visible_remote_tiles(page) -> list[str]:  # type: ignore[no-untyped-def]
    return await page.evaluate(
        "[...document.querySelectorAll('li.remote:not([hidden]) .name')].map(e => e.textContent)")


async def test_officer_monitors_two_visits_and_ends_one(tmp_path: Path) -> None:
    now = int(time.time())
    people = [(f"{role}-{visit}", role, f"{role.title()} {visit[-1].upper()}", visit,
               now - 5, now + 600)
              for visit in ("visit-a", "visit-b") for role in ("inmate", "family")]
    async with served_chromium(tmp_path, lambda server: join_links(server, people)) as (
            server, browser, joined):
        links = dict(zip([p[0] for p in people], joined, strict=True))
        officer_token = server.token("officer-7", "officer", None, name="Officer Seven")
        privileged = Participant(server, server.token(
            "inmate-c", "inmate", visit_now("visit-c", privileged=True)), publish=False)

        async with participants(privileged):
            await privileged.join()
            pages = {sub: await open_page(browser, link) for sub, link in links.items()}
            for page in pages.values():
                await join(page)
            for page in pages.values():
                await wait_decoding(page, 1, 15)

            officer = await open_page(browser, f"{server.url}/officer#token={officer_token}")
            for visit in ("visit-a", "visit-b", "visit-c"):
                await officer.locator(f"tr[data-visit='{visit}']").wait_for()
            await officer.get_by_role("button", name="Watch visit visit-a").click()
            await officer.get_by_role("button", name="Watch visit visit-b").click()
            # The officer decodes all four parties' video, and hears nobody until asking
            # to listen (tests/browser/test_officer_wall.py).
            await wait_decoding(officer, 4, 15)
            assert (await decoded(officer))["samples"] == 0

            # Nobody in either visit sees or hears of the officer.
            await asyncio.sleep(1.0)
            for sub, page in pages.items():
                tiles = await visible_remote_tiles(page)
                assert len(tiles) == 1, (sub, tiles)
                assert "Officer" not in await page.locator("body").inner_text()

            # A privileged visit cannot be monitored; the refusal is clear and audited.
            await officer.get_by_role("button", name="Watch visit visit-c").click()
            await officer.get_by_text("Privileged visits cannot be monitored.").wait_for()

            # The officer ends visit A with a reason; both its pages say so. B goes on.
            await officer.locator("#reason-visit-a").fill("Rule violation")
            await officer.get_by_role("button", name="End visit visit-a").click()
            for sub in ("inmate-visit-a", "family-visit-a"):
                ended = pages[sub].locator("#ended")
                await ended.wait_for(state="visible", timeout=5000)
                text = await ended.text_content()
                assert "An officer ended the visit." in text and "Rule violation" in text
            before = (await decoded(pages["family-visit-b"]))["frames"]
            await asyncio.sleep(1.0)
            assert (await decoded(pages["family-visit-b"]))["frames"] > before

    db = open_database(server_database(tmp_path))
    rows = [tuple(r) for r in db.execute("SELECT action, actor, visit, outcome, reason FROM audit")]
    assert ("monitor_start", "officer-7", "visit-a", "ok", "") in rows
    assert ("monitor_start", "officer-7", "visit-b", "ok", "") in rows
    assert ("monitor_start", "officer-7", "visit-c", "refused", "privileged_visit") in rows
    assert ("end_visit", "officer-7", "visit-a", "ok", "Rule violation") in rows
    assert ("monitor_stop", "officer-7", "visit-a", "ok", "") in rows
