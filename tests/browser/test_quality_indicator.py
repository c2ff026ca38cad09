"""The join page's connection-quality indicator in real Chromium on a real server: the
page reports its statistics, and when its network loses packets its own tile shows a
weak connection with a plain notice, then good again once the network recovers.

The loss is real: nftables drops 30% of the UDP datagrams arriving at the page's ICE
candidate ports, so what the page receives from the server is lossy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.browser import join, open_page, served_chromium, until, wait_decoding
from tests.support.netblock import udp_lossy
from tests.support.server import RED, Participant, participants, visit_now

SELF_LEVEL = "document.querySelector('li.tile.self .quality')?.dataset.level"
NOTICE = "document.getElementById('quality-notice')"


async def page_ports(page: Any) -> list[int]:
    stats = await page.evaluate("window.visitStats()")
    return sorted({int(s["port"]) for s in stats if s.get("type") == "local-candidate"})


def levels(p: Participant, sub: str) -> list[str]:
    return [e["level"] for e in p.events if e["type"] == "quality" and e["participant"] == sub]


async def test_a_lossy_network_shows_weak_then_good(tmp_path: Path) -> None:
    async with served_chromium(tmp_path, lambda _: None,
                               VISITBRIDGE_STATS_INTERVAL_S="1") as (server, browser, _):
        visit = visit_now("quality-1")
        family_link = f"{server.url}/join#token=" + server.token(
            "family-q1", "family", visit, name="Sam Family")
        inmate = Participant(server, server.token("inmate-q1", "inmate", visit), RED)
        async with participants(inmate):
            assert (await inmate.join())["type"] == "joined"
            family = await open_page(browser, family_link)
            await join(family)
            await wait_decoding(family, 1, 15)
            await until(family, f"{SELF_LEVEL} === 'good'", 5)
            # The resident's tile has its indicator, with words for screen readers.
            icon = family.locator("li[data-slot='0'] .quality")
            assert await icon.get_attribute("aria-label") == "Good connection"

            with udp_lossy(30, *await page_ports(family)):
                await until(family, f"{SELF_LEVEL} === 'weak'", 10)
                notice = await family.evaluate(f"{NOTICE}.textContent")
                assert notice == "Your connection is weak: video may freeze, you can still talk."
                assert await family.locator("li.tile.self .quality").get_attribute(
                    "aria-label") == "Weak connection"
            await until(family, f"{SELF_LEVEL} === 'good'", 10)
            assert await family.evaluate(f"{NOTICE}.hidden")
            # The server rated the page from its reports, and told the others.
            assert levels(inmate, "family-q1") == ["weak", "good"]
