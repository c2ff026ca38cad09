"""The ``stats`` message with a real server and real aiortc participants: checked, rate
limited, turned into a quality level every page hears, and into the impairment counters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import (
    Participant,
    family_visit,
    metric,
    running_server,
    visit_now,
)

pytestmark = pytest.mark.solo  # frozen time against the time that passed


def stats(**fields: Any) -> dict[str, Any]:
    return {"type": "stats", "packets_lost": 0, "packets_received": 0, "jitter_s": 0.005,
            "rtt_s": 0.02, "video_frozen_s": 0.0, "audio_concealed_samples": 0, **fields}


def quality_of(p: Participant, sub: str) -> list[str]:
    return [e["level"] for e in p.events if e["type"] == "quality" and e["participant"] == sub]


def errors(p: Participant) -> list[str]:
    return [e["code"] for e in p.events if e["type"] == "error"]


async def test_stats_become_a_level_for_every_page_and_bad_ones_are_refused(
        tmp_path: Path) -> None:
    # Nobody publishes here: no media watchdog, or the silent peers would be dropped.
    with running_server(tmp_path / "server", VISITBRIDGE_STATS_INTERVAL_S="1",
                        VISITBRIDGE_MEDIA_TIMEOUT_S="0") as server:
        visit = visit_now("stats-1")
        async with family_visit(server, visit, "st", publish=False) as (inmate, family):
            joined = next(e for e in family.events if e["type"] == "joined")
            assert joined["stats_interval_s"] == 1 and joined["you"]["quality"] == "good"

            await family.send(stats(rtt_s=0.9))  # a slow round trip
            await inmate.wait_for(lambda: quality_of(inmate, "family-st") == ["weak"], 5)
            await family.wait_for(lambda: quality_of(family, "family-st") == ["weak"], 5)
            assert await metric(server, "visitbridge_participant_quality", 'level="weak"') == 1
            assert await metric(server, "visitbridge_participant_quality", 'level="good"') == 1

            await family.send(stats())  # too soon after the last one
            await family.wait_for(lambda: errors(family) == ["rate_limited"], 5)
            await family.send(stats(packets_lost="many"))
            await family.send(stats(padding="x" * 2000))
            await family.wait_for(lambda: len(errors(family)) == 3, 5)
            assert errors(family) == ["rate_limited", "bad_message", "bad_message"]
            assert family.close_code is None  # bad reports never end a visit

            await asyncio.sleep(0.6)
            await family.send(stats())
            await asyncio.sleep(0.6)
            await family.send(stats(video_frozen_s=0.5, audio_concealed_samples=48_000))
            await inmate.wait_for(lambda: quality_of(inmate, "family-st") == ["weak", "good"], 5)
            assert await metric(server, "visitbridge_video_frozen_seconds_total") == 0.5
            assert await metric(server, "visitbridge_audio_concealed_seconds_total") == 1.0
            await asyncio.sleep(0.6)
            await family.send(stats(video_frozen_s=9e9, audio_concealed_samples=48_000))
            await asyncio.sleep(0.5)
            frozen = await metric(server, "visitbridge_video_frozen_seconds_total")
            assert 0.5 < frozen <= 0.5 + 1.0 * 4  # a lie counts the elapsed time at most
        await asyncio.sleep(0.5)
        assert await metric(server, "visitbridge_participant_quality") == 0
