"""A family whose uplink is slow is told so, and its browser sends what the link carries.

The family's whole Chromium sits behind a veth link whose uplink is capped at 300 kb/s
(``tbf``, a 200 ms queue: a slow home connection). The server gives the publisher
transport-wide congestion control feedback (``sfu.congestion``), from which Chrome's own
estimator finds the link's rate: within 10 s its sent bitrate, as its ``getStats()``
reports it, settles under the cap, and the inmate then sees under 5 % of video lost and
the family's video still moving.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Page

from tests.support.netvisit import visit_behind_link
from tests.support.rtp_stats import sent_kbps, window

CAP_KBPS = 300


async def settled_series(page: Page, seconds: int) -> list[float]:
    """The page's sent rate in each of the next ``seconds`` seconds."""
    return [await sent_kbps(page, 1) for _ in range(seconds)]


async def test_a_slow_uplink_is_found_within_ten_seconds(tmp_path: Path) -> None:
    async with visit_behind_link(tmp_path, "net-up") as visit:
        # Chrome ramps up past the cap on a clean link (slower on a busy machine).
        before = 0.0
        for _ in range(10):
            before = await sent_kbps(visit.family, 2)
            if before > CAP_KBPS * 1.3:
                break
        visit.link.cap(CAP_KBPS, None)
        series = [await sent_kbps(visit.family, 1) for _ in range(9)]
        # From 9 s after the cap on: the family's rate, and over the same 5 s what the
        # inmate receives of it.
        settled, seen = await asyncio.gather(
            settled_series(visit.family, 5), window(visit.inmate, "inbound-rtp", "video", 5))
        series += settled
        print(f"before {before:.0f} kb/s; after the cap, per second: "
              + " ".join(f"{r:.0f}" for r in series))
        assert before > CAP_KBPS * 1.3, before  # the cap really binds
        assert max(settled) < CAP_KBPS, series
        print(f"inmate video loss {seen.loss_percent():.1f} %, "
              f"{seen.delta('framesDecoded') / seen.seconds:.1f} frames/s")
        assert seen.loss_percent() < 5.0, seen.loss_percent()
        # The visit's video goes on under the cap (not the officer's low copy instead).
        assert seen.delta("framesDecoded") / seen.seconds > 5, seen.delta("framesDecoded")
