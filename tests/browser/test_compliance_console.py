"""The compliance console in a real browser: find a recording, play every party in sync,
verify, hold and export, accessibly."""

from __future__ import annotations

import asyncio

from axe_playwright_python.async_playwright import Axe

from tests.support.browser import chromium, open_page, until
from tests.support.compliance import VISIT, Recording, audit_rows, compliance_token
from tests.support.server import Server


async def test_console_finds_plays_in_sync_verifies_and_holds(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-ui")
    async with chromium() as browser:
        page = await open_page(browser, f"{server.url}/compliance#token={token}")
        await page.get_by_label("Visitor (name or ID)").fill("casey")
        await page.get_by_role("button", name="Search").click()
        await page.locator(f"tr[data-visit='{VISIT}']").wait_for()
        assert await page.locator("#results tr").count() == 1
        await page.get_by_role("button", name=f"Open recording of visit {VISIT}").click()
        await page.get_by_role("heading", name=f"Recording of visit {VISIT}").wait_for()
        assert await page.evaluate("document.activeElement.id") == "view-title"

        videos = page.locator("#players video")
        assert await videos.count() == 2
        await until(
            page, "[...document.querySelectorAll('#players video')].every(v => v.readyState >= 2)")
        assert await page.get_by_label("Recording of Jordan Reyes (inmate)").count() == 1
        assert (await page.locator("#integrity").text_content()).startswith("Intact")

        # One play button starts every party; they stay together on one timeline.
        await page.get_by_role("button", name="Play all parties").click()
        await page.get_by_role("button", name="Pause all parties").wait_for()
        await asyncio.sleep(1.2)
        state = await page.evaluate("window.replayState()")
        assert state["playing"] and not any(state["paused"]), state
        assert min(state["times"]) > 0.5, state
        assert max(state["times"]) - min(state["times"]) < 0.35, state
        await page.get_by_role("button", name="Pause all parties").click()
        await until(page, "window.replayState().paused.every(p => p)")

        # The single slider seeks every party (keyboard: focus it, press End/Home).
        slider = page.get_by_label("Position in the visit")
        await slider.fill("2")
        await until(page, "window.replayState().times.every(t => Math.abs(t - 2) < 0.3)")
        await slider.focus()
        await page.keyboard.press("Home")
        # The inmate's file is at its start; the visitor's, which starts 0.5 s into the
        # visit, waits at its own start.
        await until(page, "window.replayState().times[0] < 0.3"
                          " && Math.abs(window.replayState().times[1] - 0.5) < 0.05")
        assert "0:00 /" in await page.locator("#time").text_content()

        await page.get_by_role("button", name="Verify integrity").click()
        await page.get_by_text(f"Integrity of visit {VISIT} checked.").wait_for()
        assert await page.locator("#integrity").get_attribute("data-ok") == "true"

        await page.get_by_label("Reason (required to place a hold)").fill("case 55")
        await page.get_by_role("button", name="Place legal hold").click()
        await page.get_by_text("On legal hold (1)").wait_for()
        await page.get_by_role("button", name="Release hold placed by compliance-ui").click()
        await page.get_by_label("Why is it released?").fill("case 55 closed")
        await page.get_by_role("button", name="Release this hold").click()
        await page.get_by_text("Not on hold.").wait_for()

        await page.get_by_role("button", name="Export with chain of custody").click()
        link = page.get_by_role("link", name=f"Download visit-{VISIT}.zip")
        await link.wait_for()
        assert (await link.get_attribute("href")).startswith("blob:")

        results = await Axe().run(page)
        assert results.violations_count == 0, results.generate_report()

        # 200% zoom of a 1024 px window is a 512 px layout: nothing scrolls sideways.
        await page.set_viewport_size({"width": 512, "height": 384})
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth")

    actions = [(r["action"], r["subject"]) for r in audit_rows(recording)
               if r["actor"] == "compliance-ui"]
    assert ("recording_search", None) in actions
    assert ("recording_replay", "inmate-41") in actions
    assert ("recording_hold", None) in actions and ("recording_release", None) in actions
