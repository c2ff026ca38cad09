"""Real Chromium pages join a visit through the join page and see and hear each other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from axe_playwright_python.async_playwright import Axe

from tests.support.browser import (
    decoded,
    join,
    join_links,
    open_page,
    remote_video_widths,
    served_chromium,
    wait_decoding,
)


async def test_three_browsers_see_and_hear_each_other(tmp_path: Path) -> None:
    now = int(time.time())
    requests = [(sub, role, name, "browser-1", now - 5, now + 600)
                for sub, role, name in (("inmate-b1", "inmate", "Alex Inmate"),
                                        ("family-b1", "family", "Sam Family"),
                                        ("family-b2", "family", "Kim Family"))]
    async with served_chromium(tmp_path, lambda server: join_links(server, requests)) as (
            _, browser, links):
        inmate = await open_page(browser, links[0])
        family = await open_page(browser, links[1])
        await join(inmate)
        # Keyboard alone: the join button has focus on load, Enter joins.
        await family.get_by_role("button", name="Join the visit").wait_for()
        await family.wait_for_function("document.activeElement.id === 'join'")
        await family.keyboard.press("Enter")
        await wait_decoding(inmate, 1, 15)
        await wait_decoding(family, 1, 15)
        first = {"inmate": await decoded(inmate), "family": await decoded(family)}
        await asyncio.sleep(1.0)
        for name, page in (("inmate", inmate), ("family", family)):
            now_decoded = await decoded(page)
            assert now_decoded["frames"] > first[name]["frames"], name  # still rising
            assert now_decoded["samples"] > 0, name
            assert all(w > 0 for w in await remote_video_widths(page)), name
        # Each page names the other participant and their role.
        await inmate.get_by_text("Sam Family (family)").wait_for()
        await family.get_by_text("Alex Inmate (resident)").wait_for()

        # A third participant joins later and sees both others within 2 s.
        await asyncio.sleep(2)
        late = await open_page(browser, links[2])
        await late.get_by_role("button", name="Join the visit").wait_for()
        await join(late)
        waited = await wait_decoding(late, 2, 2.0)
        assert waited <= 2.0
        await wait_decoding(inmate, 2, 5)
        assert (await decoded(late))["samples"] > 0

        # Controls are reachable and usable by keyboard: Tab to the microphone
        # toggle, press Space, and it reports itself pressed.
        mic = family.get_by_role("button", name="Mute microphone")
        for _ in range(10):
            await family.keyboard.press("Tab")
            if await mic.evaluate("b => b === document.activeElement"):
                break
        await family.keyboard.press("Space")
        await family.get_by_role("button", name="Unmute microphone").wait_for()
        assert await family.get_by_role(
            "button", name="Unmute microphone").get_attribute("aria-pressed") == "true"
        await inmate.get_by_text("microphone muted").wait_for()

        # The joined page has no accessibility violations (axe-core).
        results = await Axe().run(family)
        assert results.violations_count == 0, results.generate_report()

        # 200% zoom of a 1024 px window is a 512 px layout: nothing scrolls sideways.
        await family.set_viewport_size({"width": 512, "height": 384})
        assert await family.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth")
