"""One WebSocket signaling session: the join (or monitor) handshake, then SDP and events.

The protocol is in docs/protocol.md. Every refusal is an ``error`` message with a stable
``code`` followed by a close with the code's 4xxx number, and is written to the audit
log. A malformed message after the join gets an ``error`` reply and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from auth.tokens import TOKEN_REFUSALS, VISIT_ROLES, Claims, TokenError, TokenVerifier
from records.visits import VisitRecords
from sfu.room import Member, Monitor, Room, VisitInfo
from sfu.rooms import Rooms
from signaling.turn import Message, TurnConfig, offer_hook
from visit.lifecycle import Refused
from visit.roster import Identity, RosterError

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0

# WebSocket close codes (4000-4999 are the application's); see docs/protocol.md.
CLOSE_CODES = {
    "left": 4000,
    "token": 4001,  # every token refusal code
    "visit_full": 4003,
    "visit_mismatch": 4003,
    "wrong_role": 4003,
    "revoked": 4004,
    "visit_ended": 4005,
    "too_early": 4006,
    "cancelled": 4007,
    "privileged_visit": 4008,
    "visit_not_live": 4008,
    "bad_message": 4400,
    "connected_elsewhere": 4009,
    "ended": 4010,
    "server_shutdown": 4011,
    "recording_unavailable": 4012,
    "recording_failed": 4013,
}


class WsConnection:
    """The ``sfu.room.Connection`` of one WebSocket."""

    def __init__(self, ws: web.WebSocketResponse,
                 augment: Callable[[Message], Message] | None = None) -> None:
        self.ws = ws
        self.augment = augment  # adds per-connection TURN credentials to offers
        self.closed_by_server = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            raise ConnectionError("websocket closed")
        await self.ws.send_json(self.augment(message) if self.augment else message)

    async def close(self, code: str, message: str) -> None:
        self.closed_by_server = True
        if not self.ws.closed:
            if code != "ended":  # an ended visit already sent its "ended" event
                await self.ws.send_json({"type": "error", "code": code, "message": message})
            await self.ws.close(code=CLOSE_CODES.get(code, 4000), message=code.encode())


async def refuse(ws: web.WebSocketResponse, code: str, message: str) -> None:
    await ws.send_json({"type": "error", "code": code, "message": message})
    close = CLOSE_CODES["token"] if code not in CLOSE_CODES else CLOSE_CODES[code]
    await ws.close(code=close, message=code.encode())


def _parse(data: str) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


class Session:
    def __init__(self, verifier: TokenVerifier, rooms: Rooms, records: VisitRecords,
                 recording_available: Callable[[], bool],
                 turn: TurnConfig | None = None) -> None:
        self._turn = turn
        self._verifier = verifier
        self._rooms = rooms
        self._records = records
        self._recording_available = recording_available

    def _audit_refusal(self, code: str, claims: Claims | None, visit: str | None,
                       action: str) -> None:
        if claims is None:
            TOKEN_REFUSALS.labels(code).inc()
        self._records.audit.record(
            action=action, outcome="refused", reason=code, now=time.time(),
            actor=claims.sub if claims else "unknown", role=claims.role if claims else "",
            visit=visit)

    async def run(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=256 * 1024)
        await ws.prepare(request)
        try:
            first = await asyncio.wait_for(ws.receive(), JOIN_TIMEOUT_S)
        except TimeoutError:
            await refuse(ws, "bad_message", "No join message was received in time.")
            return ws
        message = _parse(first.data) if first.type == WSMsgType.TEXT else None
        if (message is None or message["type"] not in ("join", "monitor")
                or not isinstance(message.get("token"), str)):
            await refuse(ws, "bad_message", "The first message must be a join with a token.")
            return ws
        if message["type"] == "monitor":
            await self._monitor(ws, message)
        else:
            await self._join(ws, message)
        return ws

    async def _join(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        expected = message.get("visit")
        try:
            claims = await self._verifier.verify(
                message["token"], now=time.time(), roles=VISIT_ROLES,
                visit_id=expected if isinstance(expected, str) else None)
        except TokenError as exc:
            log.info("join refused", extra={"code": exc.code})
            self._audit_refusal(exc.code, None, None, "join")
            await refuse(ws, exc.code, exc.message)
            return
        assert claims.visit is not None  # VISIT_ROLES tokens always carry one
        visit = VisitInfo(claims.visit.id, claims.visit.starts_at, claims.visit.ends_at,
                          claims.visit.privileged)
        connection = WsConnection(ws, offer_hook(self._turn, claims.sub))
        try:
            self._check_booking(visit.id, claims.sub)
            if (self._rooms.get(visit.id) is None and not visit.privileged
                    and not await asyncio.to_thread(self._recording_available)):
                raise Refused("recording_unavailable",
                              "recording is not possible now (recordings volume nearly full)")
            room = self._rooms.open(visit)
            member = await room.join(Identity(claims.sub, claims.name, claims.role), connection)
        except ConnectionError:
            return  # the page went away during the join
        except (RosterError, Refused) as exc:
            log.info("join refused", extra={"code": exc.code, "visit": visit.id})
            self._audit_refusal(exc.code, claims, visit.id, "join")
            await refuse(ws, exc.code, exc.message)
            return
        log.info("joined", extra={"visit": visit.id, "participant": claims.sub})
        cause = "disconnected"
        try:
            cause = await self._serve(ws, room, member)
        finally:
            if not connection.closed_by_server:
                await room.leave(member, cause)
            log.info("left", extra={"visit": visit.id, "participant": claims.sub,
                                    "cause": cause})

    def _check_booking(self, visit_id: str, sub: str) -> None:
        row = self._records.store.visit(visit_id)
        if row is not None and row.state == "ended":
            if row.cause == "cancelled":
                raise Refused("cancelled", "this visit was cancelled")
            raise Refused("visit_ended", "this visit has ended")
        if self._records.store.revoked(visit_id, sub):
            raise Refused("revoked", "this participant's access to the visit was withdrawn")

    async def _monitor(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        visit_id = message.get("visit")
        try:
            claims = await self._verifier.verify(message["token"], now=time.time(),
                                                 roles=("officer",))
        except TokenError as exc:
            self._audit_refusal(exc.code, None, visit_id if isinstance(visit_id, str) else None,
                                "monitor_start")
            await refuse(ws, exc.code, exc.message)
            return
        room = self._rooms.get(visit_id) if isinstance(visit_id, str) else None
        connection = WsConnection(ws, offer_hook(self._turn, claims.sub))
        try:
            if room is None:
                raise Refused("visit_not_live", "this visit is not taking place now")
            mon = await room.monitor(Identity(claims.sub, claims.name, claims.role),
                                     connection)
        except (RosterError, Refused) as exc:
            self._audit_refusal(exc.code, claims, visit_id if isinstance(visit_id, str)
                                else None, "monitor_start")
            await refuse(ws, exc.code, exc.message)
            return
        audit = self._records.audit
        audit.record(action="monitor_start", actor=claims.sub, role=claims.role,
                     visit=room.visit.id, now=time.time())
        try:
            await self._serve(ws, room, mon)
        finally:
            await room.stop_monitor(mon)
            audit.record(action="monitor_stop", actor=claims.sub, role=claims.role,
                         visit=room.visit.id, now=time.time())

    async def _serve(self, ws: web.WebSocketResponse, room: Room,
                     who: Member | Monitor) -> str:
        """Handle messages until the peer leaves; return the cause."""
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = _parse(msg.data)
            try:
                if message is None:
                    raise RosterError("bad_message", "The message could not be understood.")
                kind = message["type"]
                if kind == "answer" and isinstance(message.get("sdp"), str):
                    await room.answer(who, message["sdp"])
                elif kind == "candidate" and isinstance(message.get("candidate"), dict):
                    await who.peer.add_candidate(message["candidate"])
                elif kind == "media_state" and isinstance(who, Member):
                    await room.set_media(who, bool(message.get("audio")),
                                         bool(message.get("video")))
                elif kind == "leave":
                    await ws.close(code=CLOSE_CODES["left"], message=b"left")
                    return "left"
                else:
                    raise RosterError("bad_message", f"unexpected message type {kind!r}")
            except RosterError as exc:
                await ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
            except Exception as exc:  # noqa: BLE001 - bad input must not end the visit
                log.info("bad message", extra={"visit": room.visit.id,
                                               "error": type(exc).__name__})
                await ws.send_json({"type": "error", "code": "bad_message",
                                    "message": "The message could not be used."})
        return "disconnected"
