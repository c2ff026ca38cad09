"""Each phase of the network harness does to real media what it claims.

A live visit (real server, real Chromium on both sides) with the family's whole browser
in a network namespace behind a veth link (``tests.support.netem``). What is asserted is
what the family's browser itself reports through ``getStats()``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from playwright.async_api import Page

from tests.support.audit import audit
from tests.support.netvisit import visit_behind_link
from tests.support.rtp_stats import Window, totals, window


async def frames_grow(page: Page, seconds: float) -> bool:
    """Whether the page decodes any new video frame within ``seconds``."""
    before = (await totals(page, "inbound-rtp", "video"))["framesDecoded"]
    await asyncio.sleep(seconds)
    return (await totals(page, "inbound-rtp", "video"))["framesDecoded"] > before


async def seconds_until_frames(page: Page, timeout: float) -> float:
    """Seconds until the page decodes video again (counters may restart on a rejoin)."""
    start = time.monotonic()
    while not await frames_grow(page, 0.5):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no video decoded within {timeout} s")
    return time.monotonic() - start


async def video_widths(page: Page, stat_type: str) -> dict[str, int]:
    """The frame width of each of the page's video streams of ``stat_type``, by rid."""
    stats = await page.evaluate("window.visitStats()")
    return {s.get("rid", ""): int(s.get("frameWidth", 0)) for s in stats
            if s.get("type") == stat_type and s.get("kind") == "video"}


async def seconds_until_width(page: Page, width: int, timeout: float) -> float:
    """Seconds until the page's received video is ``width`` pixels wide."""
    start = time.monotonic()
    while (await video_widths(page, "inbound-rtp")).get("") != width:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not {width} pixels wide within {timeout} s")
        await asyncio.sleep(0.5)
    return time.monotonic() - start


async def video_past_350(page: Page) -> Window:
    """The cap comes first, on a clean link: the sender's estimate climbs past it (slower
    on a busy machine) before the capped link can be seen to carry less. The page's
    received video over the first 2 s window above 350 kb/s, or the last of 8."""
    for _ in range(8):
        uncapped = await window(page, "inbound-rtp", "video", 2)
        if uncapped.kbps("bytesReceived") > 350:
            break
    return uncapped


async def test_loss_and_a_rate_cap_show_in_the_far_browser(tmp_path: Path) -> None:
    async with visit_behind_link(tmp_path, "net-loss") as visit:
        # On the clean link, audio arrives whole while the video climbs (below).
        clean, uncapped = await asyncio.gather(
            window(visit.family, "inbound-rtp", "audio", 3), video_past_350(visit.family))
        assert clean.loss_percent() < 1.0, clean
        full = (await video_widths(visit.family, "inbound-rtp"))[""]
        visit.link.cap(None, 300)
        await asyncio.sleep(3)  # the 200 ms queue drains, what was in flight arrives
        capped = await window(visit.family, "inbound-rtp", "video", 4)
        assert uncapped.kbps("bytesReceived") > 350, uncapped.kbps("bytesReceived")
        assert capped.kbps("bytesReceived") < 300, capped.kbps("bytesReceived")
        # The thin family is sent the inmate's low encoding, cleanly, while the inmate
        # still sends (and the recording keeps) the full one.
        assert capped.loss_percent() < 5.0, capped.loss_percent()
        assert (await video_widths(visit.family, "inbound-rtp"))[""] == full // 2
        assert (await video_widths(visit.inmate, "outbound-rtp"))["f"] == full
        visit.link.clean()
        # Probed while thin, the family gets the full encoding back soon after the cap
        # lifts (its browser's own estimate would take minutes).
        assert await seconds_until_width(visit.family, full, 14) < 14
        await asyncio.sleep(1)
        visit.link.loss(10)
        lossy = await window(visit.family, "inbound-rtp", "audio", 6)
        # The browser NACKs about what the link dropped (a NACK per lost audio packet, a
        # few twice), and the server's resent copies leave much less of it lost.
        expected = lossy.delta("packetsReceived") + lossy.delta("packetsLost")
        nacked = 100.0 * lossy.delta("nackCount") / expected
        assert 5.0 < nacked < 25.0, nacked
        assert lossy.loss_percent() < 5.0, lossy.loss_percent()


async def test_an_outage_and_a_new_address_are_recovered(tmp_path: Path) -> None:
    async with visit_behind_link(tmp_path, "net-out") as visit:
        visit.link.cut()
        await asyncio.sleep(2)  # 5 s in all: longer than the server's RTP idle check
        assert not await frames_grow(visit.family, 2)
        assert not await frames_grow(visit.inmate, 1)
        visit.link.restore()
        assert await seconds_until_frames(visit.family, 15) < 15
        await seconds_until_frames(visit.inmate, 10)
        await asyncio.sleep(1.5)  # the room's next tick
        # One audited gap for the outage, however the page and the server recovered.
        gaps = [r for r in audit(visit.server, "net-out")
                if r["action"] == "media_gap" and r["actor"] == "family-net-out"]
        assert len(gaps) == 1 and gaps[0]["detail"]["gap_s"] >= 3, gaps
        old = visit.link.address
        new = visit.link.readdress()
        # Frames still in flight may show before the page notices: wait for its new path.
        deadline = time.monotonic() + 20
        while True:
            stats = await visit.family.evaluate("window.visitStats()")
            local = {s.get("address") for s in stats if s.get("type") == "local-candidate"}
            if new in local or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert new in local and old not in local, local
        await seconds_until_frames(visit.family, 20)
        await seconds_until_frames(visit.inmate, 10)
