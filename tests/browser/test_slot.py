"""The booked slot governs the visit in real browsers: warnings, hard stop, no rejoin after."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from tests.support.browser import (
    camera_tracks,
    decoded,
    join,
    join_links,
    open_page,
    served_chromium,
    wait_decoding,
)


async def collect_notices(page, seen: list[tuple[float, str, str]],  # type: ignore[no-untyped-def]
                          stop: asyncio.Event) -> None:
    """(time, time-left notice shown, last announcement) whenever either changes."""
    while not stop.is_set():
        text, said = await page.evaluate(
            "(() => { const n = document.getElementById('notice');"
            " return [n.hidden ? '' : n.textContent,"
            " document.getElementById('announce').textContent]; })()")
        if text and (not seen or seen[-1][1:] != (text, said)):
            seen.append((time.time(), text, said))
        await asyncio.sleep(0.2)


async def test_slot_warnings_and_hard_stop(tmp_path: Path) -> None:
    starts = int(time.time()) + 7
    ends = starts + 11
    requests = [(sub, role, name, "slot-1", starts, ends)
                for sub, role, name in (("inmate-s1", "inmate", "Alex Inmate"),
                                        ("family-s1", "family", "Sam Family"))]
    async with served_chromium(tmp_path, lambda server: join_links(server, requests),
                               VISITBRIDGE_WARNINGS="8,4") as (_, browser, links):
        pages = [await open_page(browser, link) for link in links]
        for page in pages:
            await join(page)
        # Waiting room: connected, but no media before the booked start.
        for page in pages:
            await page.get_by_text("Visit starts in").wait_for()
        await pages[1].get_by_text("Alex Inmate (resident)").wait_for()
        assert time.time() < starts
        assert (await decoded(pages[1]))["frames"] == 0
        await asyncio.sleep(max(0.0, starts - time.time() - 0.5))
        assert (await decoded(pages[0]))["frames"] == 0

        # From the start, both see each other.
        for page in pages:
            await wait_decoding(page, 1, 8)
        await pages[0].get_by_text("Time left:").wait_for()

        notices: list[list[tuple[float, str, str]]] = [[], []]
        stop = asyncio.Event()
        watchers = [asyncio.ensure_future(collect_notices(p, n, stop))
                    for p, n in zip(pages, notices, strict=True)]
        ended_at: list[float] = []
        for page in pages:
            box = page.locator("#ended")
            await box.wait_for(state="visible", timeout=(ends - time.time() + 5) * 1000)
            ended_at.append(time.time())
            assert "The visit time is over." in await box.text_content()
        stop.set()
        await asyncio.gather(*watchers)

        for seen in notices:
            # Each warning is announced once; the notice then follows the clock, so it
            # never shows a time that has passed.
            said = [s for _, _, s in seen]
            assert sorted(set(said), key=said.index) == [
                "8 seconds left in this visit.", "4 seconds left in this visit."], seen
            assert len({text for _, text, _ in seen}) >= 5, seen
            for at, text, _ in seen:
                shown = int(re.match(r"(\d+) seconds? left", text).group(1))
                assert -0.5 <= shown - (ends - at) <= 2.0, (at, text, ends)
        for page in pages:  # the camera is let go at the end
            assert set(await camera_tracks(page)) == {"ended"}
        # The hard stop came on time on both pages (within 2 s of ends_at).
        assert all(abs(t - ends) <= 2.0 for t in ended_at), (ended_at, ends)
        before = [(await decoded(p))["frames"] for p in pages]
        assert before == [0, 0]  # the peer connections are closed: media stopped

        # The same link after the end says so at once, without asking for the camera.
        again = await open_page(browser, links[1])
        await again.get_by_text("This visit has ended.").wait_for()
        assert await camera_tracks(again) == []
