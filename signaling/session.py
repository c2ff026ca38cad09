"""One WebSocket signaling session: the join handshake, then SDP and events.

The protocol is in docs/protocol.md. Every refusal is an ``error`` message with a stable
``code`` followed by a close with the code's 4xxx number. A malformed message after the
join gets an ``error`` reply and changes nothing; the visit goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from sfu.room import Member, Room, VisitInfo
from sfu.rooms import Rooms
from sfu.roster import Identity, RosterError

from .tokens import VISIT_ROLES, TokenError, TokenVerifier

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0

# WebSocket close codes (4000-4999 are the application's).
CLOSE_CODES = {
    "token": 4001,  # any token refusal code
    "visit_full": 4003,
    "wrong_role": 4003,
    "visit_mismatch": 4003,
    "bad_message": 4008,
    "connected_elsewhere": 4009,
    "left": 4000,
}

MESSAGES = {
    "bad_message": "The message could not be understood.",
    "connected_elsewhere": "This visit was opened on another device.",
}


class WsConnection:
    """The ``sfu.room.Connection`` of one WebSocket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.closed_by_server = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            raise ConnectionError("websocket closed")
        await self.ws.send_json(message)

    async def close(self, code: str, message: str) -> None:
        self.closed_by_server = True
        if not self.ws.closed:
            await self.ws.send_json({"type": "error", "code": code, "message": message})
            await self.ws.close(code=CLOSE_CODES.get(code, 4000), message=code.encode())


async def refuse(ws: web.WebSocketResponse, code: str, message: str, close_code: int) -> None:
    await ws.send_json({"type": "error", "code": code, "message": message})
    await ws.close(code=close_code, message=code.encode())


def _parse(data: str) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


class Session:
    def __init__(self, verifier: TokenVerifier, rooms: Rooms) -> None:
        self._verifier = verifier
        self._rooms = rooms

    async def run(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=256 * 1024)
        await ws.prepare(request)
        try:
            first = await asyncio.wait_for(ws.receive(), JOIN_TIMEOUT_S)
        except TimeoutError:
            await refuse(ws, "bad_message", "No join message was received in time.", 4008)
            return ws
        message = _parse(first.data) if first.type == WSMsgType.TEXT else None
        if message is None or message["type"] != "join" or not isinstance(
                message.get("token"), str):
            await refuse(ws, "bad_message", "The first message must be a join with a token.",
                         4008)
            return ws
        expected_visit = message.get("visit")
        try:
            claims = await self._verifier.verify(
                message["token"], now=time.time(), roles=VISIT_ROLES,
                visit_id=expected_visit if isinstance(expected_visit, str) else None)
        except TokenError as exc:
            log.info("join refused", extra={"code": exc.code})
            await refuse(ws, exc.code, exc.message, CLOSE_CODES["token"])
            return ws
        assert claims.visit is not None  # VISIT_ROLES tokens always carry one
        visit = VisitInfo(claims.visit.id, claims.visit.starts_at, claims.visit.ends_at,
                          claims.visit.privileged)
        connection = WsConnection(ws)
        try:
            room = self._rooms.open(visit)
            member = await room.join(Identity(claims.sub, claims.name, claims.role), connection)
        except RosterError as exc:
            log.info("join refused", extra={"code": exc.code, "visit": visit.id})
            await refuse(ws, exc.code, exc.message, CLOSE_CODES.get(exc.code, 4003))
            return ws
        log.info("joined", extra={"visit": visit.id, "participant": claims.sub})
        cause = "disconnected"
        try:
            cause = await self._serve(ws, room, member)
        finally:
            if not connection.closed_by_server:
                await room.leave(member, cause)
            log.info("left", extra={"visit": visit.id, "participant": claims.sub})
        return ws

    async def _serve(self, ws: web.WebSocketResponse, room: Room, member: Member) -> str:
        """Handle the member's messages until they leave; return the cause."""
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = _parse(msg.data)
            try:
                if message is None:
                    raise RosterError("bad_message", MESSAGES["bad_message"])
                kind = message["type"]
                if kind == "answer" and isinstance(message.get("sdp"), str):
                    await room.answer(member, message["sdp"])
                elif kind == "candidate" and isinstance(message.get("candidate"), dict):
                    await member.peer.add_candidate(message["candidate"])
                elif kind == "media_state":
                    await room.set_media(member, bool(message.get("audio")),
                                         bool(message.get("video")))
                elif kind == "leave":
                    await ws.close(code=CLOSE_CODES["left"], message=b"left")
                    return "left"
                else:
                    raise RosterError("bad_message", f"unexpected message type {kind!r}")
            except RosterError as exc:
                await ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
            except (ValueError, KeyError, TypeError) as exc:
                log.info("bad message", extra={"visit": room.visit.id,
                                               "participant": member.who.sub})
                await ws.send_json({"type": "error", "code": "bad_message",
                                    "message": f"The message could not be used: {exc}"})
        return "disconnected"
