"""HTTP API for the records system and officers (bearer tokens with the right role).

Every refusal answers ``{"error": code, "message": ...}`` (api.errors) with
400/401/403/404/409; every officer action and every refused call is written to the
audit log (refused tokens through api.bearer).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from api.bearer import Bearer
from api.errors import error
from auth.tokens import Claims, TokenVerifier
from records.refusals import RefusalAudit
from records.visits import VisitRecords
from sfu.rooms import Rooms

VISITS = "/api/visits"  # the live visits; the routes below act on one of them
VISIT = VISITS + "/{visit}"
PARTICIPANT = VISIT + "/participants/{sub}"


class Api:
    def __init__(self, verifier: TokenVerifier, rooms: Rooms, records: VisitRecords,
                 refusals: RefusalAudit) -> None:
        self._bearer = Bearer(verifier, refusals, subject="sub")
        self._rooms = rooms
        self._records = records

    def _refuse(self, claims: Claims, request: web.Request, status: int, code: str,
                message: str) -> web.Response:
        """Answer a refused call and write it to the audit log."""
        self._bearer.refused(request, code, claims)
        return error(status, code, message)

    def _audit(self, claims: Claims, action: str, visit: str, subject: str | None = None,
               reason: str = "", detail: dict[str, Any] | None = None) -> None:
        self._records.audit.record(action=action, actor=claims.sub, role=claims.role,
                                   visit=visit, subject=subject, reason=reason,
                                   detail=detail, now=time.time())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(VISITS, self.live_visits),
            web.get(VISIT, self.visit),
            web.post(VISIT + "/cancel", self.cancel),
            web.post(VISIT + "/end", self.end),
            web.post(PARTICIPANT + "/revoke", self.revoke),
            web.post(PARTICIPANT + "/mute", self.mute),
        ]

    async def live_visits(self, request: web.Request) -> web.Response:
        await self._bearer.authorize(request, ("officer",))
        now = time.time()
        visits = []
        for room in self._rooms:
            described = self._records.describe(room.visit.id, room.core) or {}
            for person in described.get("participants", ()):
                member = room.core.members.get(person["id"])
                if member is not None:  # who is muted, by whom: what an officer acts on
                    person.update(audio=member.audio and not member.muted_by_officer,
                                  video=member.video, muted_by_officer=member.muted_by_officer)
            visits.append({**described, "time_left_s": max(0, round(room.visit.ends_at - now)),
                           "state": room.core.lifecycle.state.value})
        return web.json_response({"visits": visits, "server_time": now})

    async def visit(self, request: web.Request) -> web.Response:
        await self._bearer.authorize(request, ("records", "officer"))
        visit_id = request.match_info["visit"]
        room = self._rooms.get(visit_id)
        described = self._records.describe(visit_id, room.core if room is not None else None)
        if described is None:
            return error(404, "unknown_visit", "no visit with this id was seen")
        return web.json_response(described)

    async def cancel(self, request: web.Request) -> web.Response:
        claims = await self._bearer.authorize(request, ("records",))
        visit_id = request.match_info["visit"]
        reason = await _reason(request)
        room = self._rooms.get(visit_id)
        row = self._records.store.visit(visit_id)
        if room is None and row is not None and row.state == "ended":
            return self._refuse(claims, request, 409, "visit_ended",
                                f"this visit already ended ({row.cause})")
        self._audit(claims, "cancel", visit_id, reason=reason)
        if room is not None:
            await room.end("cancelled", reason)
        else:
            self._records.store.save_visit(visit_id, time.time(), state="ended",
                                           cause="cancelled", reason=reason,
                                           ended_at=time.time())
        return web.json_response({"visit": visit_id, "state": "ended", "cause": "cancelled"})

    async def end(self, request: web.Request) -> web.Response:
        claims = await self._bearer.authorize(request, ("officer",))
        visit_id = request.match_info["visit"]
        reason = await _reason(request)
        if not reason:
            return self._refuse(claims, request, 400, "reason_required",
                                "say why the visit is ended")
        room = self._rooms.get(visit_id)
        if room is None:
            return self._refuse(claims, request, 404, "visit_not_live",
                                "this visit is not taking place now")
        self._audit(claims, "end_visit", visit_id, reason=reason)
        await room.end("ended_by_officer", reason)
        return web.json_response({"visit": visit_id, "state": "ended",
                                  "cause": "ended_by_officer"})

    async def revoke(self, request: web.Request) -> web.Response:
        claims = await self._bearer.authorize(request, ("records",))
        visit_id, sub = request.match_info["visit"], request.match_info["sub"]
        reason = await _reason(request)
        self._records.store.revoke(visit_id, sub, claims.sub, time.time())
        self._audit(claims, "revoke", visit_id, subject=sub, reason=reason)
        room = self._rooms.get(visit_id)
        removed = room is not None and await room.remove(
            sub, "revoked", "Your access to this visit was withdrawn by the facility.")
        return web.json_response({"visit": visit_id, "participant": sub, "revoked": True,
                                  "removed": removed})

    async def mute(self, request: web.Request) -> web.Response:
        claims = await self._bearer.authorize(request, ("officer",))
        visit_id, sub = request.match_info["visit"], request.match_info["sub"]
        body = await json_body(request)
        muted = bool(body.get("muted", True))
        reason = str(body.get("reason", ""))
        room = self._rooms.get(visit_id)
        if room is not None and room.visit.privileged:
            return self._refuse(claims, request, 403, "privileged_visit",
                                "privileged visits are neither monitored nor moderated")
        if room is None or not await room.mute(sub, muted):
            return self._refuse(claims, request, 404, "not_present",
                                "this participant is not in a live visit")
        self._audit(claims, "mute" if muted else "unmute", visit_id, subject=sub, reason=reason)
        return web.json_response({"visit": visit_id, "participant": sub, "muted": muted})


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "bad_request", "message": "body is not JSON"}',
                                 content_type="application/json") from None
    return body if isinstance(body, dict) else {}


async def _reason(request: web.Request) -> str:
    return str((await json_body(request)).get("reason", ""))[:500]
