"""The records and officer HTTP API against a real server, with real aiortc participants."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from auth.tokens import VisitClaim
from tests.support import server as support
from tests.support.server import (
    Participant,
    Server,
    in_visit,
    inmate_and_family,
    module_server,
    participants,
    visit_now,
)
from tests.support.server_records import server_rows

server = module_server("api")


async def call(server: Server, method: str, path: str, token: str | None = None,
               body: dict[str, Any] | None = None,
               authorization: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.request(
            method, server.url + path, headers=headers, json=body) as resp:
        return resp.status, await resp.json()


def records(server: Server) -> str:
    return server.token("records-sys", "records", None)


def officer(server: Server) -> str:
    return server.token("officer-7", "officer", None)


def connected(p: Participant) -> bool:
    return p.pc is not None and p.pc.connectionState == "connected"


def events_of(p: Participant, kind: str) -> list[dict[str, Any]]:
    return [e for e in p.events if e["type"] == kind]


async def test_cancel_in_the_waiting_room_ends_it_and_refuses_later_joins(
        server: Server) -> None:
    now = int(time.time())
    visit = VisitClaim(id="api-cancel-1", starts_at=now + 600, ends_at=now + 600 + 1800)
    inmate = Participant(server, server.token("inmate-c1", "inmate", visit), publish=False)
    async with participants(inmate):
        joined = await inmate.join()
        assert joined["type"] == "joined"
        assert joined["visit"]["state"] == "waiting"

        status, body = await call(server, "POST", "/api/visits/api-cancel-1/cancel",
                                  records(server), {"reason": "officer shortage"})
        assert (status, body) == (200, {"visit": "api-cancel-1", "state": "ended",
                                         "cause": "cancelled"})
        await inmate.wait_for(lambda: inmate.close_code is not None, 10)
        ended = events_of(inmate, "ended")
        assert len(ended) == 1
        assert ended[0]["cause"] == "cancelled"
        assert ended[0]["reason"] == "officer shortage"
        assert inmate.close_code == 4010
        assert inmate.error is None  # an ended visit says so with "ended", not an error

    # A fresh, valid token for the cancelled visit is refused with a clear code.
    late = Participant(server, server.token("family-c1", "family", visit), publish=False)
    async with participants(late):
        refused = await late.join()
        assert refused == {"type": "error", "code": "cancelled",
                           "message": "this visit was cancelled"}
        assert late.close_code == 4007

    status, body = await call(server, "GET", "/api/visits/api-cancel-1", records(server))
    assert status == 200
    assert (body["state"], body["cause"], body["reason"]) == (
        "ended", "cancelled", "officer shortage")
    assert body["started_at"] is None  # it never went live
    assert [(p["id"], p["seconds_connected"]) for p in body["participants"]] == [
        ("inmate-c1", 0)]


async def test_cancel_before_anyone_joined_refuses_the_join(server: Server) -> None:
    now = int(time.time())
    visit = VisitClaim(id="api-cancel-2", starts_at=now + 600, ends_at=now + 2400)
    status, _ = await call(server, "POST", "/api/visits/api-cancel-2/cancel", records(server))
    assert status == 200
    p = Participant(server, server.token("inmate-c2", "inmate", visit), publish=False)
    async with participants(p):
        assert (await p.join())["code"] == "cancelled"
        assert p.close_code == 4007


async def test_a_revoked_visitor_is_removed_and_refused_while_the_inmate_is_not(
        server: Server) -> None:
    visit = visit_now("api-revoke-1")
    inmate, family = inmate_and_family(server, visit, "r1", publish=False)
    async with in_visit(inmate, family):
        await inmate.wait_for(lambda: connected(inmate) and connected(family), 15)

        status, body = await call(server, "POST",
                                  "/api/visits/api-revoke-1/participants/family-r1/revoke",
                                  records(server), {"reason": "visitor list changed"})
        assert (status, body) == (200, {"visit": "api-revoke-1", "participant": "family-r1",
                                         "revoked": True, "removed": True})
        await family.wait_for(lambda: family.close_code is not None, 10)
        assert family.error is not None and family.error["code"] == "revoked"
        assert family.close_code == 4004
        await inmate.wait_for(lambda: bool(events_of(inmate, "participant_left")), 10)
        assert events_of(inmate, "participant_left") == [
            {"type": "participant_left", "id": "family-r1", "cause": "revoked"}]
        assert inmate.close_code is None  # the visit goes on

        # The same token, and a freshly issued one, are refused from now on.
        for token in (family.token, server.token("family-r1", "family", visit)):
            again = Participant(server, token, publish=False)
            async with participants(again):
                assert (await again.join())["code"] == "revoked"
                assert again.close_code == 4004

        # The inmate's token still works (a second device replaces the first).
        back = Participant(server, inmate.token, publish=False)
        async with participants(back):
            assert (await back.join())["type"] == "joined"
            await inmate.wait_for(lambda: inmate.close_code is not None, 10)
            assert inmate.error is not None
            assert inmate.error["code"] == "connected_elsewhere"

        status, body = await call(server, "GET", "/api/visits/api-revoke-1", records(server))
        assert status == 200 and body["state"] == "live"
        family_row = next(p for p in body["participants"] if p["id"] == "family-r1")
        assert family_row["connected"] is False


async def test_the_visit_record_shows_state_cause_and_connected_seconds(server: Server) -> None:
    visit = visit_now("api-record-1")
    inmate, family = inmate_and_family(server, visit, "s1", publish=False)
    async with in_visit(inmate, family):
        await inmate.wait_for(lambda: connected(inmate), 15)
        inmate_up = time.time()
        await family.wait_for(lambda: connected(family), 15)
        family_up = time.time()
        await asyncio.sleep(2.0)
        await family.send({"type": "leave"})
        await inmate.wait_for(lambda: bool(events_of(inmate, "participant_left")), 10)
        family_gone = time.time()
        await asyncio.sleep(1.0)

        status, live = await call(server, "GET", "/api/visits/api-record-1", records(server))
        asked = time.time()
        assert status == 200
        assert (live["id"], live["state"], live["cause"]) == ("api-record-1", "live", None)
        assert (live["starts_at"], live["ends_at"]) == (visit.starts_at, visit.ends_at)
        rows = {p["id"]: p for p in live["participants"]}
        assert rows["inmate-s1"]["role"] == "inmate" and rows["inmate-s1"]["connected"]
        assert not rows["family-s1"]["connected"]
        assert rows["inmate-s1"]["seconds_connected"] == pytest.approx(asked - inmate_up,
                                                                       abs=1.5)
        assert rows["family-s1"]["seconds_connected"] == pytest.approx(
            family_gone - family_up, abs=1.5)

        # The officers' list shows it too, with the time left.
        status, listing = await call(server, "GET", "/api/visits", officer(server))
        assert status == 200
        mine = [v for v in listing["visits"] if v["id"] == "api-record-1"]
        assert len(mine) == 1 and mine[0]["state"] == "live"
        assert mine[0]["time_left_s"] == pytest.approx(visit.ends_at - time.time(), abs=2)

        status, body = await call(server, "POST", "/api/visits/api-record-1/end",
                                  officer(server), {"reason": "contraband shown on camera"})
        assert (status, body["cause"]) == (200, "ended_by_officer")
        ended_at = time.time()
        await inmate.wait_for(lambda: inmate.close_code is not None, 10)
        assert inmate.close_code == 4010

    status, done = await call(server, "GET", "/api/visits/api-record-1", records(server))
    assert status == 200
    assert (done["state"], done["cause"], done["reason"]) == (
        "ended", "ended_by_officer", "contraband shown on camera")
    rows = {p["id"]: p for p in done["participants"]}
    assert rows["inmate-s1"]["seconds_connected"] == pytest.approx(ended_at - inmate_up,
                                                                   abs=1.5)
    assert rows["family-s1"]["seconds_connected"] == pytest.approx(
        family_gone - family_up, abs=1.5)
    await asyncio.sleep(1.0)
    _, later = await call(server, "GET", "/api/visits/api-record-1", records(server))
    assert later["participants"] == done["participants"]  # the ledger stopped at the end

    status, body = await call(server, "GET", "/api/visits/no-such-visit", records(server))
    assert (status, body["error"]) == (404, "unknown_visit")


ENDPOINTS = [  # method, path, the roles it accepts
    ("GET", "/api/visits", {"officer"}),
    ("GET", "/api/visits/api-auth-1", {"officer", "records"}),
    ("POST", "/api/visits/api-auth-1/cancel", {"records"}),
    ("POST", "/api/visits/api-auth-1/end", {"officer"}),
    ("POST", "/api/visits/api-auth-1/participants/family-a1/revoke", {"records"}),
    ("POST", "/api/visits/api-auth-1/participants/family-a1/mute", {"officer"}),
]


async def test_every_endpoint_refuses_missing_wrong_role_expired_and_garbage_tokens(
        server: Server) -> None:
    now = time.time()
    visit = visit_now("api-auth-1")
    family = server.token("family-a1", "family", visit)
    expired = {role: server.token(f"{role}-old", role, None, now=now - 13 * 3600)
               for role in ("officer", "records")}
    staff = {"officer": officer(server), "records": records(server)}
    for method, path, roles in ENDPOINTS:
        where = f"{method} {path}"
        # No header, an empty bearer, another scheme, a token without the scheme.
        for authorization in (None, "Bearer ", "Basic b2ZmaWNlcjpwYXNz", staff["officer"]):
            status, body = await call(server, method, path, authorization=authorization)
            assert (status, body["error"]) == (401, "missing_token"), (where, authorization)
            assert body["message"]

        status, body = await call(server, method, path, family)
        assert (status, body["error"]) == (403, "wrong_role"), where
        for role in {"officer", "records"} - roles:
            status, body = await call(server, method, path, staff[role])
            assert (status, body["error"]) == (403, "wrong_role"), (where, role)

        for role in roles:
            status, body = await call(server, method, path, expired[role])
            assert (status, body["error"]) == (401, "expired"), (where, role)
        status, body = await call(server, method, path, "not-a-token")
        assert (status, body["error"]) == (401, "malformed"), where
        status, body = await call(server, method, path, "e30.e30.c2ln")
        assert status == 401 and body["error"] in ("malformed", "unsupported_algorithm",
                                                    "unknown_key"), where

    # None of that did anything: the visit was neither seen nor cancelled.
    status, body = await call(server, "GET", "/api/visits/api-auth-1", records(server))
    assert (status, body["error"]) == (404, "unknown_visit")


def audit_rows(server: Server, action: str) -> list[dict[str, Any]]:
    rows = server_rows(server.data_dir, "SELECT * FROM audit WHERE action = ? ORDER BY seq",
                       (action,))
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


async def test_a_refused_bearer_token_is_counted_and_audited(server: Server) -> None:
    path = "/api/visits/api-count-1/participants/family-c1/mute"
    before = await support.metric(server, "visitbridge_token_refusals_total", 'code="malformed"')
    status, body = await call(server, "POST", path, "not-a-token")
    assert (status, body["error"]) == (401, "malformed")
    assert await support.metric(server, "visitbridge_token_refusals_total",
                                'code="malformed"') == before + 1
    # Anonymous: kept out of the visit's records (and aggregated with this module's other
    # malformed tokens from this source: see tests/api/test_anonymous_refusals.py).
    assert not [r for r in audit_rows(server, "api") if r["visit"] == "api-count-1"]


async def test_a_token_after_the_visit_has_ended_is_refused_with_a_clear_code(
        server: Server) -> None:
    now = int(time.time())
    # The default token expires at ends_at, so past the leeway it is "expired".
    over = VisitClaim(id="api-late-1", starts_at=now - 3600, ends_at=now - 60)
    p = Participant(server, server.token("family-l1", "family", over, now=now - 600),
                    publish=False)
    async with participants(p):
        assert (await p.join())["code"] == "expired"
        assert p.close_code == 4001

    # A visit that ends while someone is in it: within the token leeway a rejoin gets
    # past the token check and the booking refuses it.
    now = int(time.time())
    short = VisitClaim(id="api-late-2", starts_at=now - 60, ends_at=now + 3)
    token = server.token("family-l2", "family", short)
    first = Participant(server, token, publish=False)
    async with participants(first):
        await first.join()
        await first.wait_for(lambda: first.close_code is not None, 10)
        assert events_of(first, "ended")[0]["cause"] == "slot_ended"
        assert first.close_code == 4010
    again = Participant(server, token, publish=False)
    async with participants(again):
        refused = await again.join()
        assert refused["code"] == "visit_ended"
        assert again.close_code == 4005
    _, body = await call(server, "GET", "/api/visits/api-late-2", records(server))
    assert (body["state"], body["cause"]) == ("ended", "slot_ended")


async def test_a_join_long_before_the_visit_is_refused(server: Server) -> None:
    now = time.time()
    early = VisitClaim(id="api-early-1", starts_at=int(now) + 7200, ends_at=int(now) + 9000)
    # The default token is not valid until an hour before the start.
    p = Participant(server, server.token("inmate-e1", "inmate", early), publish=False)
    async with participants(p):
        assert (await p.join())["code"] == "not_yet_valid"
        assert p.close_code == 4001
    # A token valid now still meets the waiting room, which opens 15 minutes before.
    p = Participant(server, server.token("inmate-e1", "inmate", early, not_before=now),
                    publish=False)
    async with participants(p):
        refused = await p.join()
        assert refused["code"] == "too_early"
        assert p.close_code == 4006


async def test_a_refused_early_join_leaves_no_visit_behind(server: Server) -> None:
    now = time.time()
    early = VisitClaim(id="api-early-2", starts_at=int(now) + 7200, ends_at=int(now) + 9000)
    p = Participant(server, server.token("inmate-e2", "inmate", early, not_before=now),
                    publish=False)
    async with participants(p):
        assert (await p.join())["code"] == "too_early"
    status, listing = await call(server, "GET", "/api/visits", officer(server))
    assert status == 200
    assert "api-early-2" not in [v["id"] for v in listing["visits"]]
    status, _ = await call(server, "GET", "/api/visits/api-early-2", records(server))
    assert status == 404


async def test_cancelling_a_visit_that_already_ended_does_not_rewrite_it(
        server: Server) -> None:
    visit = visit_now("api-recancel-1")
    inmate = Participant(server, server.token("inmate-x1", "inmate", visit), publish=False)
    async with participants(inmate):
        await inmate.join()
        await inmate.wait_for(lambda: connected(inmate), 15)
        status, _ = await call(server, "POST", "/api/visits/api-recancel-1/end",
                               officer(server), {"reason": "fight in the visiting hall"})
        assert status == 200
        await inmate.wait_for(lambda: inmate.close_code is not None, 10)
    _, before = await call(server, "GET", "/api/visits/api-recancel-1", records(server))
    assert before["cause"] == "ended_by_officer"

    status, body = await call(server, "POST", "/api/visits/api-recancel-1/cancel",
                              records(server), {"reason": "refund request"})
    _, after = await call(server, "GET", "/api/visits/api-recancel-1", records(server))
    assert (after["state"], after["cause"], after["reason"], after["ended_at"]) == (
        "ended", "ended_by_officer", "fight in the visiting hall", before["ended_at"])
    assert status == 409, body
