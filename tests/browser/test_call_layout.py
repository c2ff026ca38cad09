"""The join page as a family sees it, on a phone, a laptop and a kiosk: the call fills the
screen without scrolling, every state says what is going on, the camera is let go, and
axe-core finds nothing to fix. Real Chromium with fake camera and microphone, a real
server, a real aiortc resident."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.async_api import Page

from tests.support.browser import (
    camera_tracks,
    chromium,
    end_visit,
    join,
    officer_call,
    open_page,
    until,
    wait_decoding,
)
from tests.support.call_layout import assert_accessible, check_call_layout
from tests.support.server import BLUE, Participant, Server, VisitClaim, in_visit, running_server

EARLY_ENTRY_S = 20
VIEWPORTS = ((390, 844, True), (1280, 720, False), (1366, 768, False))


def link(server: Server, sub: str, visit: VisitClaim, query: str = "") -> str:
    token = server.token(sub, "family", visit, name=f"Sam {sub}",
                         now=min(time.time(), visit.ends_at - 60))
    return f"{server.url}/join{query}#token={token}"


async def lobby_then_call(page: Page, sub: str, remotes: int) -> None:
    """The lobby greets by name with a live microphone meter; Join enters the call."""
    await page.get_by_text(f"Welcome, Sam {sub}.").wait_for()
    await page.get_by_text("This visit is recorded").wait_for()
    await until(page, "document.getElementById('mic-level').value > 0", 10)
    await assert_accessible(page, "lobby")
    await join(page)
    await wait_decoding(page, 1, 15)
    await check_call_layout(page, remotes)
    await assert_accessible(page, "live")


async def test_call_layout_and_states(tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_EARLY_ENTRY_S=str(EARLY_ENTRY_S)) as server:
        now = int(time.time())
        live = VisitClaim("lay-live", now - 5, now + 600)
        early = VisitClaim("lay-early", now + EARLY_ENTRY_S + 6, now + 600)
        inmate = Participant(server, server.token("inmate-lay", "inmate", live))
        async with chromium() as browser, in_visit(inmate):
            # A kiosk opened before the waiting room: it counts down, then enters by itself.
            kiosk = await open_page(browser, link(server, "kiosk", early, "?kiosk&reset=1"))
            await kiosk.get_by_text("Waiting room opens in").wait_for()

            # Phone, portrait then landscape: the resident fills the screen.
            width, height, mobile = VIEWPORTS[0]
            phone = await open_page(browser, link(server, "f0", live), width, height, mobile)
            # Turned sideways in the lobby, Join is still on screen.
            await phone.set_viewport_size({"width": height, "height": width})
            await phone.get_by_text("Welcome, Sam f0.").wait_for()
            box = await phone.get_by_role("button", name="Join the visit").bounding_box()
            assert box is not None and box["y"] + box["height"] <= width, box
            assert await phone.evaluate("document.scrollingElement.scrollHeight <= innerHeight")
            await phone.set_viewport_size({"width": width, "height": height})
            await lobby_then_call(phone, "f0", 1)
            await phone.set_viewport_size({"width": height, "height": width})
            await check_call_layout(phone, 1)
            # Leave asks first, then offers Rejoin; the camera is let go meanwhile.
            await phone.get_by_role("button", name="Leave the visit").click()
            await phone.get_by_role("button", name="Leave", exact=True).click()
            rejoin = phone.get_by_role("button", name="Rejoin the visit")
            await rejoin.wait_for()
            assert set(await camera_tracks(phone)) == {"ended"}
            await assert_accessible(phone, "left")
            await rejoin.click()
            await wait_decoding(phone, 1, 15)
            assert (await camera_tracks(phone)).count("live") == 2
            await phone.context.close()  # dropped: its seat waits for it

            # The kiosk entered the waiting room when it opened; nobody else is there yet.
            await kiosk.get_by_text("You are in the waiting room").wait_for(timeout=15000)
            await kiosk.get_by_text("Waiting for the resident…").wait_for()
            await assert_accessible(kiosk, "waiting")
            await end_visit(server, early.id)
            await kiosk.get_by_text("An officer ended the visit.").wait_for()
            assert set(await camera_tracks(kiosk)) == {"ended"}
            await assert_accessible(kiosk, "ended")
            # A second later it is ready for the next visit, with nothing of this one.
            await kiosk.get_by_text("This kiosk is ready for the next visit.").wait_for()
            assert "Sam" not in await kiosk.locator("body").inner_text()

            # Laptops: the dropped phone waits as "Reconnecting…" beside the resident.
            for index, (width, height, mobile) in enumerate(VIEWPORTS[1:], start=1):
                page = await open_page(browser, link(server, f"f{index}", live), width, height,
                                       mobile)
                await lobby_then_call(page, f"f{index}", 2 + (index - 1))
                dropped = page.locator("li.remote", has_text="Sam f0 (family)")
                await dropped.get_by_text("Reconnecting…").wait_for()
            await assert_accessible(page, "reconnecting")

            # A participant who drops keeps their tile, marked, while the seat waits.
            extra = Participant(server, server.token("family-extra", "family", live,
                                                     name="Kim Extra"), BLUE)
            assert (await extra.join())["type"] == "joined"
            tile = page.locator("li.remote", has_text="Kim Extra (family)")
            await tile.wait_for()
            await check_call_layout(page, 4)
            await extra.close()
            await tile.get_by_text("Reconnecting…").wait_for()
            await check_call_layout(page, 4)

            # An officer's mute shows on the muted person's own button.
            await officer_call(server, f"{live.id}/participants/f2/mute", {"muted": True})
            muted = page.get_by_role("button", name="Muted by an officer")
            await muted.wait_for()
            assert await muted.is_disabled()
            await check_call_layout(page, 4)

            # The end: said plainly, and the camera is let go.
            await end_visit(server, live.id)
            await page.get_by_text("An officer ended the visit.").wait_for()
            assert set(await camera_tracks(page)) == {"ended"}

            # A link whose visit is over says so before asking for the camera.
            over = VisitClaim("lay-over", now - 600, now - 60)
            refused = await open_page(browser, link(server, "f9", over), 390, 844, True)
            await refused.get_by_text("This visit has ended.").wait_for()
            assert await camera_tracks(refused) == []
            await assert_accessible(refused, "refused")
