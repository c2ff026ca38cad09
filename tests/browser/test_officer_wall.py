"""The officer console: typing survives live updates, Listen plays one visit, the wall's
tiles are thinned to temporal layer 0 of the publisher's low-resolution copy and the
opened visit gets the full rate at full size."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiortc.codecs import vpx

from benchmarks.media import encode_opus
from benchmarks.party import Party
from tests.support.browser import (
    chromium,
    chromium_with,
    decoded,
    join,
    open_page,
    open_to_full_rate_ms,
    two_party_links,
    until,
    wait_decoding,
)
from tests.support.call_layout import assert_accessible
from tests.support.server import (
    Participant,
    Server,
    in_visit,
    inmate_and_family,
    module_server,
    visit_now,
)
from tests.support.server_records import server_rows
from tests.support.vp8_layers import layered_clip, layered_pack

REASON = "Contraband shown on camera; family warned twice, visit ended per rule 4.2"
HEARD = 0.01  # RMS of a received 440 Hz tone is about 0.17; silence is 0

server = module_server("officer-wall")  # each test watches visits of its own


async def churn(server, visits, stop: asyncio.Event) -> int:  # type: ignore[no-untyped-def]
    """A visitor joins and leaves each visit in turn until ``stop``; returns the changes."""
    changes = 0
    n = 0
    while not stop.is_set():
        visit = visits[n % len(visits)]
        guest = Participant(server, server.token(f"guest-{n}", "family", visit), publish=False)
        await guest.join()
        await asyncio.sleep(0.4)
        await guest.close()
        changes += 2
        n += 1
        await asyncio.sleep(0.3)
    return changes


async def listen_audit(server: Server) -> list[tuple[str, str, str, str, float]]:
    """Officer Seven's audit entries for visits A and B, once the listen to B has stopped
    (when the page went away)."""
    deadline = time.monotonic() + 10
    while True:
        rows = server_rows(server.data_dir, "SELECT action, actor, visit, reason, ts FROM audit "
                           "WHERE actor = 'officer-7' AND visit IN ('visit-a', 'visit-b') "
                           "ORDER BY seq")
        if ("listen_stop", "visit-b") in [(r[0], r[2]) for r in rows]:
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.2)


async def test_typing_survives_updates_and_listen_plays_one_visit(server: Server) -> None:
    a, b = visit_now("visit-a"), visit_now("visit-b")
    officer_token = server.token("officer-7", "officer", None, name="Officer Seven")
    async with in_visit(*inmate_and_family(server, a, "a")), \
            in_visit(*inmate_and_family(server, b, "b")), chromium() as browser:
        officer = await open_page(browser, f"{server.url}/officer#token={officer_token}")
        for visit in ("visit-a", "visit-b"):
            await officer.locator(f"tr[data-visit='{visit}']").wait_for()

        # Listen to A: the officer hears A's tone, measured on the received tracks.
        await officer.get_by_role("button", name="Listen to visit visit-a", exact=True).click()
        await until(officer, "window.audioLevel('visit-a', 200).then((l) => l > 0.01)", 15)
        # Listening to B stops A: the server no longer sends A's audio.
        await officer.get_by_role("button", name="Listen to visit visit-b", exact=True).click()
        await until(officer, "window.audioLevel('visit-b', 200).then((l) => l > 0.01)", 15)
        await until(officer, "window.audioLevel('visit-a', 300).then((l) => l < 0.001)", 5)
        assert await officer.get_by_role(
            "button", name="Stop listening to visit visit-b", exact=True).count() == 1

        # The officer types a reason at human speed while people join and leave.
        renders = await officer.evaluate("renders")
        stop = asyncio.Event()
        changes = asyncio.ensure_future(churn(server, [a, b], stop))
        await officer.locator("#reason-visit-a").click()
        await officer.locator("#reason-visit-a").type(REASON, delay=50)
        stop.set()
        assert await changes >= 6
        assert await officer.evaluate("renders") - renders >= 3  # the table did update
        await officer.get_by_role("button", name="End visit visit-a").click()
        done = officer.locator("#confirmations li", has_text=REASON)
        await done.wait_for()
        await officer.locator("tr[data-visit='visit-a']").wait_for(state="detached")
        renders = await officer.evaluate("renders")
        await until(officer, f"renders > {renders}", 5)  # a refresh later, it is still there
        assert await done.count() == 1
        # The wall, a listened visit's panel and a confirmation: nothing for axe to fix.
        await assert_accessible(officer, "officer wall")
        await done.get_by_role("button", name="Dismiss").click()
        assert await done.count() == 0

    records = server.token("records-1", "records", None)
    async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/api/visits/visit-a",
            headers={"Authorization": f"Bearer {records}"}) as resp:
        assert (await resp.json())["reason"] == REASON

    rows = await listen_audit(server)
    actions = [(action, visit) for action, _, visit, _, _ in rows]
    assert ("end_visit", "visit-a") in actions
    assert next(r[3] for r in rows if r[0] == "end_visit") == REASON
    listen = [(action, visit) for action, visit in actions if action.startswith("listen")]
    assert listen[:3] == [("listen_start", "visit-a"), ("listen_stop", "visit-a"),
                          ("listen_start", "visit-b")], listen
    assert ("listen_stop", "visit-b") in listen  # when the page went away
    assert time.time() - rows[0][4] < 300


async def frame_rate(page, seconds: float = 2.0) -> float:  # type: ignore[no-untyped-def]
    before = (await decoded(page))["frames"]
    await asyncio.sleep(seconds)
    return ((await decoded(page))["frames"] - before) / seconds


async def test_wall_tiles_get_layer_zero_and_the_opened_visit_full_rate(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # An L1T3 publisher at 30 fps: layer 0 is every fourth frame.
    monkeypatch.setattr(vpx.Vp8Encoder, "pack", layered_pack)
    video, audio = layered_clip(2), encode_opus(2.0)
    publisher = Party("inmate-l", server.ws_url, server.token(
        "inmate-l", "inmate", visit_now("visit-l")), video, audio)
    officer_token = server.token("officer-7", "officer", None)
    try:
        await publisher.join()
        async with chromium() as browser:
            officer = await open_page(browser, f"{server.url}/officer#token={officer_token}")
            await officer.get_by_role("button", name="Watch visit visit-l").click()
            await wait_decoding(officer, 1, 15)
            assert 4 <= await frame_rate(officer) <= 11  # the tile: about 7.5 fps
            assert await open_to_full_rate_ms(officer, "visit-l") < 1000
            assert await frame_rate(officer) >= 20  # opened: about 30 fps
    finally:
        await publisher.close()


VIDEO_SIZES = """window.visitStats().then((stats) => stats.filter((s) => s.kind === 'video'
    && s.type === '{0}' && s.frameWidth).map((s) => [s.rid || '', s.frameWidth]))"""
SENT, RECEIVED = VIDEO_SIZES.format("outbound-rtp"), VIDEO_SIZES.format("inbound-rtp")


async def video_counts(page, kind: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """What a failed switch is diagnosed by: frames, keyframes and PLIs per stream."""
    return await page.evaluate(f"""window.visitStats().then((stats) => stats.filter((s) =>
        s.kind === 'video' && s.type === '{kind}').map((s) => ({{rid: s.rid,
        width: s.frameWidth, frames: s.framesEncoded || s.framesDecoded,
        keys: s.keyFramesEncoded || s.keyFramesDecoded, plis: s.pliCount}})))""")


async def shows(officer, inmate, rid: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Wait until the officer decodes the width the inmate's browser now sends as ``rid``
    (the browser may scale its encodings down under load, keeping q half of f)."""
    deadline = time.monotonic() + timeout
    while True:
        sent, received = dict(await inmate.evaluate(SENT)), await officer.evaluate(RECEIVED)
        if received and received[0][1] == sent.get(rid):
            return
        assert time.monotonic() < deadline, (rid, sent, received, await video_counts(
            inmate, "outbound-rtp"), await video_counts(officer, "inbound-rtp"))
        await asyncio.sleep(0.2)


async def test_a_tile_gets_the_publishers_low_copy_and_the_opened_visit_full_size(
        server: Server) -> None:
    officer_token = server.token("officer-7", "officer", None)
    async with chromium_with(lambda: two_party_links(server, "visit-s", "s")) as (
            [browser], (inmate_link, _)):
        inmate = await open_page(browser, inmate_link)
        await join(inmate)
        # The browser answers the offer with two encodings: full size and half the width.
        await until(inmate, f"{SENT}.then((s) => s.length === 2)", 15)
        sent = dict(await inmate.evaluate(SENT))
        assert sent["q"] * 2 == sent["f"], sent
        officer = await open_page(browser, f"{server.url}/officer#token={officer_token}")
        await officer.get_by_role("button", name="Watch visit visit-s").click()
        await shows(officer, inmate, "q", 15)
        assert await open_to_full_rate_ms(officer, "visit-s") < 1000
        await shows(officer, inmate, "f", 5)
        await officer.evaluate("toggleOpen('visit-s')")  # closed again: the low copy
        await shows(officer, inmate, "q", 10)
