"""Token limits through a real server and real aiortc participants: unsafe ids never join
(nor name a recording), a normal id records, a jti serves one seat, and the lifetime and
issue-time limits are applied as configured."""

from __future__ import annotations

import json
import time
from pathlib import Path

from auth.tokens import VisitClaim
from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.recording import wait_sealed
from tests.support.server import (
    Participant,
    in_visit,
    participants,
    running_server,
    visit_now,
)

UNSAFE_SUBS = {"../x": "bad_id", "a/b": "bad_id", "..": "bad_id", "": "bad_id",
               "a\0b": "bad_id", "x" * 10_240: "malformed"}  # 10 KB: over the token size limit


def refusals(data_dir: Path) -> list[tuple[str, str]]:
    """One (action, reason) per refusal: an anonymous refusal's row stands for ``count``."""
    db = open_database(server_database(data_dir))
    rows = db.execute("SELECT action, reason, detail FROM audit WHERE outcome = 'refused'")
    return [(action, reason) for action, reason, detail in rows
            for _ in range(json.loads(detail or "{}").get("count", 1))]


async def test_unsafe_ids_cannot_join_and_a_normal_id_records(tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_SEGMENT_S="2") as server:
        refused = [Participant(server, server.token(sub, "family", visit_now("V-2026-000187"),
                                                    name="Sam")) for sub in UNSAFE_SUBS]
        refused.append(Participant(server, server.token(
            "inmate-5531", "inmate", visit_now("../V-1"), name="Alex")))
        async with participants(*refused):
            for person, code in zip(refused, [*UNSAFE_SUBS.values(), "bad_id"], strict=True):
                answer = await person.join()
                assert (answer["type"], answer["code"]) == ("error", code)
                assert person.close_code == 4001

        # Booked to end 8 s from now: time to join and see a second of video first.
        now = int(time.time())
        visit = VisitClaim("V-2026-000187", now - 5, now + 8)
        inmate = Participant(server, server.token("inmate-5531", "inmate", visit), (220, 30, 30))
        family = Participant(server, server.token("family-9", "family", visit), (30, 30, 220))
        async with in_visit(inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 30, 15)
            # The booked end closes the visit and seals its recording.
            await family.wait_for(lambda: family.close_code is not None, 20)
        await wait_sealed(server, "V-2026-000187")

    recordings = tmp_path / "recordings"
    final = recordings / "V-2026-000187" / "final"
    assert sorted(p.name for p in final.iterdir()) == ["family-9.webm", "inmate-5531.webm"]
    assert [p.name for p in recordings.iterdir() if not p.name.startswith(".")] == [
        "V-2026-000187"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "V-1").exists()
    got = refusals(tmp_path)
    assert got.count(("join", "bad_id")) == 6 and got.count(("join", "malformed")) == 1


async def test_a_jti_serves_one_seat_and_its_holder_may_rejoin(tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_TOKEN_MAX_LIFETIME_S="7200") as server:
        visit = visit_now("jti-visit")
        token = server.token("family-9", "family", visit, jti="booking-77")
        inmate = Participant(server, server.token("inmate-5531", "inmate", visit))
        first = Participant(server, token)
        async with in_visit(inmate, first):
            # A second device (or the page's own rejoin) with the same link takes the seat.
            second = Participant(server, token)
            async with in_visit(second):
                await first.wait_for(lambda: first.close_code is not None, 10)
                assert (first.error or {}).get("code") == "connected_elsewhere"
            # And once more after leaving: a reconnect with the same link.
            again = Participant(server, token)
            async with in_visit(again):
                pass
            # The same jti on another participant's token, or another visit's, is refused.
            others = [
                Participant(server, server.token("family-10", "family", visit, jti="booking-77")),
                Participant(server, server.token("family-9", "family", visit_now("jti-other"),
                                                 jti="booking-77")),
                # Limits as configured: usable for over 2 h, or issued 2 minutes from now.
                Participant(server, server.token("family-11", "family", visit, ttl_s=3 * 3600)),
                Participant(server, server.token("family-12", "family", visit,
                                                 now=time.time() + 120)),
            ]
            async with participants(*others):
                codes = []
                for person in others:
                    answer = await person.join()
                    assert answer["type"] == "error" and person.close_code == 4001, answer
                    codes.append(answer["code"])
            assert codes == ["token_reused", "token_reused", "lifetime_too_long",
                             "issued_in_future"]
    got = refusals(tmp_path)
    for code in ("token_reused", "lifetime_too_long", "issued_in_future"):
        assert ("join", code) in got
