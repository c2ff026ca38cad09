"""A participant whose network goes silent keeps its seat and comes back to it.

Real aiortc participants on a real server: the family's device stops sending anything
at all (as a phone leaving Wi-Fi does, its WebSocket left open), the server notices
from its media within seconds, tells the page to reconnect, shows the family as
reconnecting to the inmate, and audits the drop; the family rejoins with the same link
into the same slot, media flows both ways again, and the gap is audited once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.audit import audit
from tests.support.server import (
    Participant,
    Server,
    in_visit,
    inmate_and_family,
    metric,
    module_server,
    visit_now,
)
from tests.support.silence import go_silent

pytestmark = pytest.mark.solo  # a silence noticed within its timeout

server = module_server("reconnect", VISITBRIDGE_MEDIA_TIMEOUT_S="3")


def updates_of(p: Participant, sub: str) -> list[dict[str, Any]]:
    return [e["participant"] for e in p.events
            if e["type"] == "participant_updated" and e["participant"]["id"] == sub]


async def test_silent_media_keeps_the_seat_and_the_family_comes_back(server: Server) -> None:
    claim = visit_now("reconnect-1")
    inmate, family = inmate_and_family(server, claim, "rc")
    drops_before = await metric(server, "visitbridge_connection_drops_total",
                                'cause="media_lost"')
    async with in_visit(inmate, family):
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= 20, 20)
        go_silent(family)
        silent_at = time.monotonic()
        # The page is told to reconnect (its WebSocket still works) ...
        await family.wait_for(lambda: family.error is not None, 10)
        assert family.error is not None and family.error["code"] == "media_lost"
        noticed_s = time.monotonic() - silent_at
        # ... and the inmate sees the family reconnecting (on its own socket: maybe a
        # moment later), not gone.
        await inmate.wait_for(
            lambda: any(u["reconnecting"] for u in updates_of(inmate, "family-rc")), 5)
        assert not any(e["type"] == "participant_left" for e in inmate.events)
        # Back with the same link, into the same slot, media both ways again.
        again = Participant(server, family.token, colour=(30, 30, 200))
        async with in_visit(again):
            frames = inmate.video_from(1).frames
            await inmate.wait_for(lambda: inmate.video_from(1).frames > frames + 20, 20)
            await again.wait_for(lambda: again.video_from(0).frames >= 20, 20)
            assert inmate.video_from(1).colour is not None
            assert inmate.video_from(1).colour[2] > 150  # the family's blue, in slot 1
    assert noticed_s < 3 + 2.5, noticed_s  # the timeout, plus at most the room's tick
    assert await metric(server, "visitbridge_connection_drops_total",
                        'cause="media_lost"') == drops_before + 1
    # The drop and the return, in order (the test's own closing drops come after).
    rows = [(r["action"], r["actor"], r["reason"], r["detail"]) for r in audit(
        server, "reconnect-1") if r["action"] in ("connection_lost", "connection_restored")]
    assert rows[0] == ("connection_lost", "family-rc", "media_lost", {})
    assert rows[1][:2] == ("connection_restored", "family-rc")
    assert 0 < rows[1][3]["gap_s"] < 30
    gaps = [r["detail"] for r in audit(server, "reconnect-1")
            if r["action"] == "media_gap" and r["actor"] == "family-rc"]
    assert len(gaps) == 1, gaps  # one outage, though both the drop and the rejoin saw it
    assert 3 <= gaps[0]["gap_s"] < 30 and gaps[0]["end"] - gaps[0]["start"] == pytest.approx(
        gaps[0]["gap_s"], abs=0.01)
