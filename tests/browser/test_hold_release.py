"""Releasing a legal hold in the compliance console, in Chromium: one hold at a time,
confirmed in a dialog that will not release without a reason; the recording panel
reads as information, not as an error."""

from __future__ import annotations

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

from tests.support.browser import chromium, open_recording
from tests.support.compliance import VISIT, Recording, audit_rows, compliance_token
from tests.support.server import Server

HOLD_STATE = "#hold-state"


async def place(page: Page, reason: str, active: int) -> None:
    await page.get_by_label("Reason (required to place a hold)").fill(reason)
    await page.get_by_role("button", name="Place legal hold").click()
    await page.get_by_text(f"On legal hold ({active})").wait_for()


async def test_a_hold_is_released_alone_only_once_a_reason_is_confirmed(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-rel")
    async with chromium() as browser:
        page = await open_recording(browser, server, token, VISIT)

        # The panel is information: body text on the panel, an accent edge, not the
        # join page's pink "recording" notice.
        style = await page.evaluate("""() => {
            const view = getComputedStyle(document.getElementById('view'));
            const body = getComputedStyle(document.body);
            const accent = body.getPropertyValue('--accent').trim();
            return {color: view.color, body: body.color, edge: view.borderLeftColor,
                    accent: accent};
        }""")
        assert style["color"] == style["body"], style
        assert style["edge"] == "rgb(124, 196, 255)" and style["accent"] == "#7cc4ff", style

        await place(page, "case 55", 1)
        await place(page, "subpoena 12", 2)
        release_first = page.get_by_role("button", name="Release hold placed by "
                                                        "compliance-rel: case 55")
        dialog = page.get_by_role("dialog", name="Release this legal hold?")

        # Asked, not done: the dialog names the hold and wants a reason.
        await release_first.click()
        await dialog.wait_for()
        assert "case 55" in await dialog.text_content()
        assert await page.evaluate("document.activeElement.id") == "release-reason"
        await page.get_by_role("button", name="Release this hold").click()
        await page.get_by_text("Say why the hold is released").wait_for()
        assert await dialog.is_visible()
        await page.get_by_label("Why is it released?").fill("   ")
        await page.get_by_role("button", name="Release this hold").click()
        assert await dialog.is_visible()
        results = await Axe().run(page)  # the open dialog, with its error
        assert results.violations_count == 0, results.generate_report()
        await page.get_by_role("button", name="Cancel").click()
        await dialog.wait_for(state="hidden")
        assert (await page.locator(HOLD_STATE).text_content()).startswith("On legal hold (2)")

        # Confirmed with a reason: that hold alone is released.
        await release_first.click()
        await page.get_by_label("Why is it released?").fill("case 55 closed")
        await page.get_by_role("button", name="Release this hold").click()
        await dialog.wait_for(state="hidden")
        await page.get_by_text("On legal hold (1)").wait_for()
        holds = page.locator("#holds li")
        assert "released" in await holds.nth(0).text_content()
        assert "case 55 closed" in await holds.nth(0).text_content()
        assert await release_first.count() == 0
        assert await page.get_by_role("button", name="Release hold placed by "
                                                    "compliance-rel: subpoena 12").count() == 1

    mine = [r for r in audit_rows(recording) if r["actor"] == "compliance-rel"]
    placed = {r["reason"]: r["detail"]["hold"] for r in mine if r["action"] == "recording_hold"}
    assert [(r["reason"], r["detail"]) for r in mine if r["action"] == "recording_release"] \
        == [("case 55 closed", {"hold": placed["case 55"]})]
