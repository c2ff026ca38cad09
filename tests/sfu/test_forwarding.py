"""Real aiortc participants through a real server process: media is forwarded, not decoded."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.server import (
    BLUE,
    RED,
    Participant,
    Server,
    family_visit,
    metric,
    module_server,
    participants,
    visit_now,
)

GREEN = (30, 200, 30)


server = module_server("forwarding")


def close_to(colour: tuple[float, float, float] | None, rgb: tuple[int, int, int]) -> bool:
    return colour is not None and all(abs(c - e) < 40 for c, e in zip(colour, rgb, strict=True))


async def test_two_parties_see_each_other_and_server_never_decodes(server: Server) -> None:
    visit = visit_now("fwd-1")
    async with family_visit(server, visit, "1") as (inmate, family):
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= 30, 15)
        await family.wait_for(lambda: family.video_from(0).frames >= 30, 15)
        await family.wait_for(lambda: family.audio.get(0) and family.audio[0].frames >= 50, 5)
        await inmate.wait_for(lambda: inmate.audio.get(1) and inmate.audio[1].frames >= 50, 5)

        # Each decodes the other's picture, unchanged in size and colour.
        assert family.video_from(0).size == (320, 240)
        assert close_to(family.video_from(0).colour, RED)
        assert close_to(inmate.video_from(1).colour, BLUE)
        assert inmate.audio[1].frames >= 50
        # Nobody receives their own media back.
        assert inmate.video_from(0).frames == 0 and family.video_from(1).frames == 0

    assert await metric(server, "visitbridge_forwarded_packets_total", 'kind="video"') > 60
    assert await metric(server, "visitbridge_forwarded_packets_total", 'kind="audio"') > 100
    # The server forwarded all of that without creating a decoder or encoder, and no
    # frame was handed to aiortc's decode queue.
    assert await metric(server, "visitbridge_codec_instances_total") == 0
    assert await metric(server, "visitbridge_decoder_feeds_total") == 0


async def test_rejoin_after_drop_and_second_device_replaces_first(server: Server) -> None:
    visit = visit_now("fwd-2")
    async with family_visit(server, visit, "2") as (inmate, family):
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= 10, 15)

        # The family's connection drops; the inmate sees it reconnecting, its seat kept.
        await family.close()
        await inmate.wait_for(lambda: any(
            e["type"] == "participant_updated" and e["participant"]["reconnecting"]
            for e in inmate.events), 10)
        assert not any(e["type"] == "participant_left" for e in inmate.events)

        # Opening the link again puts them back, in the same slot, with a new picture.
        back = Participant(server, family.token, colour=GREEN)
        async with participants(back):
            joined = await back.join()
            assert joined["you"]["slot"] == 1
            await inmate.wait_for(lambda: close_to(inmate.video_from(1).colour, GREEN), 15)
            await back.wait_for(lambda: back.video_from(0).frames >= 10, 15)

            # The same identity on a second device replaces the first, which is told why.
            second = Participant(server, family.token, colour=BLUE)
            async with participants(second):
                await second.join()
                await back.wait_for(lambda: back.close_code is not None, 10)
                assert back.error is not None and back.error["code"] == "connected_elsewhere"
                assert back.close_code == 4009
                await inmate.wait_for(lambda: close_to(inmate.video_from(1).colour, BLUE), 15)
                await second.wait_for(lambda: second.video_from(0).frames >= 10, 15)
                # The inmate never saw the replacement as a departure.
                assert not any(e["type"] == "participant_left" for e in inmate.events)


async def test_visit_full_and_bad_messages(server: Server) -> None:
    visit = visit_now("fwd-3")
    people = [Participant(server, server.token(f"family-3{i}", "family", visit), publish=False)
              for i in range(5)]
    async with participants(*people):
        for p in people[:4]:
            assert (await p.join())["type"] == "joined"
        refused = await people[4].join()
        assert refused["code"] == "visit_full"
        assert people[4].close_code == 4003

        # A malformed message gets a clear error and the visit goes on.
        await people[0].send({"type": "no-such-thing"})
        await people[0].wait_for(lambda: people[0].error is not None, 5)
        assert people[0].error["code"] == "bad_message"
        assert people[0].close_code is None


async def test_officer_mute_stops_forwarding_audio_and_the_participant_is_told(
        server: Server) -> None:
    visit = visit_now("fwd-4")
    officer = server.token("officer-4", "officer", None)
    async with family_visit(server, visit, "4") as (inmate, family), \
            aiohttp.ClientSession() as http:
        await family.wait_for(lambda: family.audio.get(0) and family.audio[0].frames >= 25, 10)

        async def mute(muted: bool) -> None:
            async with http.post(
                    f"{server.url}/api/visits/fwd-4/participants/inmate-4/mute",
                    headers={"Authorization": f"Bearer {officer}"},
                    json={"muted": muted, "reason": "test"}) as resp:
                assert resp.status == 200, await resp.text()

        await mute(True)
        await inmate.wait_for(lambda: any(e["type"] == "muted" and e["muted"]
                                          for e in inmate.events), 5)
        await asyncio.sleep(0.5)  # packets already in flight
        before = family.audio[0].frames
        await asyncio.sleep(1.5)
        assert family.audio[0].frames - before <= 2  # silence: nothing forwarded
        assert family.video_from(0).frames > 0  # the picture goes on
        update = [e for e in family.events if e["type"] == "participant_updated"][-1]
        assert update["participant"]["muted_by_officer"] is True

        await mute(False)
        resumed = family.audio[0].frames
        await family.wait_for(lambda: family.audio[0].frames >= resumed + 25, 10)


async def test_h264_only_browsers_are_forwarded_h264(server: Server) -> None:
    visit = visit_now("fwd-5")
    async with family_visit(server, visit, "5", video_codec="H264") as (inmate, family):
        await family.wait_for(lambda: family.video_from(0).frames >= 15, 15)
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= 15, 15)
        assert close_to(family.video_from(0).colour, RED)
        assert close_to(inmate.video_from(1).colour, BLUE)
        stats = await family.pc.getStats()
        codecs = {t.receiver._RTCRtpReceiver__codecs[pt].mimeType
                  for t in family.pc.getTransceivers() if t.kind == "video"
                  for pt in t.receiver._RTCRtpReceiver__codecs}
        assert codecs <= {"video/H264", "video/rtx"}, codecs
        assert stats  # the connection is up
    assert await metric(server, "visitbridge_codec_instances_total") == 0
