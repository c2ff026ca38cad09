"""A family's media path dies mid-visit (as when a phone leaves Wi-Fi): the join page
rejoins the same seat on its own, without a reload, and media flows again both ways.

Real Chromium pages on a real server; the family's path is cut by dropping every UDP
datagram to any of its peer connection's candidate ports, its own and the server's
(nftables), both ways. The server's media
watchdog is turned off, so the page's own detection (ICE disconnected for 2 s) is what
is tested; the WebSocket stays up, as it may on a network that lost only UDP.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.browser import (
    decoded,
    joined_pair,
    served_chromium,
    two_party_links,
    until,
)
from tests.support.netblock import udp_dropped


async def path_ports(page: Any) -> list[int]:
    """Every UDP port of the page's ICE candidates and of the server's: with any pair
    left, Chromium's ICE would just move to it, as it cannot when a network is gone."""
    stats = await page.evaluate("window.visitStats()")
    return sorted({int(s["port"]) for s in stats
                   if s.get("type") in ("local-candidate", "remote-candidate")})


async def test_a_dead_media_path_is_rejoined_without_a_reload(tmp_path: Path) -> None:
    async with served_chromium(tmp_path, lambda server: two_party_links(server, "switch-1", "n1"),
                               VISITBRIDGE_MEDIA_TIMEOUT_S="0") as (
            _, browser, (inmate_link, family_link)):
        inmate, family = await joined_pair(browser, inmate_link, browser, family_link)
        await family.evaluate("window.sameDocument = true")  # gone if it reloads
        with udp_dropped(*await path_ports(family)):
            cut = time.monotonic()
            # The page notices, says so, and comes back on a new path.
            await until(family, "document.getElementById('status').textContent"
                        ".includes('Reconnecting')", 10)
            await until(family, "window.visitStats().then(s => s.some(x => "
                        "x.type === 'inbound-rtp' && x.kind === 'video' && "
                        "x.framesDecoded > 10))", 15)
            back_s = time.monotonic() - cut
            frames = (await decoded(inmate))["frames"]
            await until(inmate, f"window.visitStats().then(s => s.filter(x => "
                        f"x.type === 'inbound-rtp' && x.kind === 'video')"
                        f".reduce((n, x) => n + x.framesDecoded, 0) > {frames + 10})", 10)
        assert await family.evaluate("window.sameDocument === true")
        assert back_s < 6.0, back_s  # 2.5 s of silence, a rejoin, a first picture
        # Same seat; the inmate never saw the family leave.
        await inmate.get_by_text("Sam Family (family)").wait_for()
        assert "left the visit" not in await inmate.locator("#status").inner_text()
