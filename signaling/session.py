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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from auth.tokens import (
    TOKEN_REFUSALS,
    VISIT_ROLES,
    Claims,
    TokenError,
    TokenVerifier,
    shown,
)
from records.refusals import RefusalAudit
from records.visits import VisitRecords
from sfu.room import Room
from sfu.rooms import Rooms
from signaling.turn import Message, TurnConfig, offer_hook
from visit.lifecycle import Refused
from visit.messages import close_code
from visit.quality import parse_report
from visit.room import VisitInfo
from visit.roster import Identity, RosterError

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0
MAX_QUEUED = 256  # messages waiting for one page; a visit sends a handful a minute
SEND_TIMEOUT_S = 5.0  # one write (or the closing handshake) may wait this long
MAX_MESSAGE_BYTES = 256 * 1024  # an answer SDP for a full visit is a few tens of kB
READ_CAP_FACTOR = 4  # beyond this many times the limit, aiohttp cuts the socket (1009)


class WsConnection:
    """The ``sfu.room.Connection`` of one WebSocket: a bounded queue drained by one writer.

    Nothing in the server waits on a page: ``send`` and ``close`` only queue. A page that
    stops reading is cut off (its TCP connection aborted) as soon as its queue is full or
    one write has waited ``send_timeout_s``, so it can never hold up its visit; its
    session then ends and the room hears that it left with cause ``stopped_reading``.
    """

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 augment: Callable[[Message], Message] | None = None,
                 max_queued: int = MAX_QUEUED, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.ws = ws
        self.augment = augment  # adds per-connection TURN credentials to offers
        self.stopped_reading = False
        self._transport = transport
        self._max_queued = max_queued
        self._timeout = send_timeout_s
        self._queue: deque[str | tuple[int, str]] = deque()  # text frames, then a close
        self._closing = False
        self._ready = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write())

    def send(self, message: Message) -> None:
        if self._closing:
            return
        if len(self._queue) >= self._max_queued:
            self._cut_off("queue full")
            return
        self._queue.append(json.dumps(self.augment(message) if self.augment else message))
        self._ready.set()

    def close(self, code: str, message: str) -> None:
        """Say why (unless the page left, or an ``ended`` event said it), then close."""
        if self._closing:
            return
        self._closing = True
        if code not in ("ended", "left"):
            self._queue.append(json.dumps({"type": "error", "code": code, "message": message}))
        self._queue.append((close_code(code), code))
        self._ready.set()

    def stop(self) -> None:
        """Nothing more will be delivered (refused before anything was queued)."""
        self._closing = True
        self._writer.cancel()

    async def finish(self) -> None:
        """The session is over: let a queued close go out (bounded by the timeouts), stop."""
        if self._closing and not self.stopped_reading:
            await asyncio.wait([self._writer], timeout=2 * self._timeout)
        self.stop()

    async def _write(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                item = self._queue.popleft()
                try:
                    if isinstance(item, str):
                        await asyncio.wait_for(self.ws.send_str(item), self._timeout)
                    else:
                        await asyncio.wait_for(
                            self.ws.close(code=item[0], message=item[1].encode()), self._timeout)
                        return
                except TimeoutError:
                    self._cut_off("write timed out")
                    return
                except (ConnectionError, RuntimeError):
                    return  # the page went away; its session ends on its own

    def _cut_off(self, why: str) -> None:
        if self.stopped_reading:
            return
        log.warning("closing a page that stopped reading", extra={"reason": why})
        self.stopped_reading = True
        self._closing = True
        self._queue.clear()
        if self._writer is not asyncio.current_task():
            self._writer.cancel()
        if self._transport is not None:
            self._transport.abort()


async def refuse(ws: web.WebSocketResponse, code: str, message: str,
                 details: dict[str, float] | None = None) -> None:
    """Refuse before the join: one error message, then the close (neither waits long)."""
    try:
        await asyncio.wait_for(
            ws.send_json({"type": "error", "code": code, "message": message, **(details or {})}),
            SEND_TIMEOUT_S)
        await asyncio.wait_for(ws.close(code=close_code(code), message=code.encode()),
                               SEND_TIMEOUT_S)
    except (TimeoutError, ConnectionError, RuntimeError):
        pass


async def first_message(ws: web.WebSocketResponse) -> WSMessage | None:
    """The page's first message, or None once it was refused for not coming in time."""
    try:
        return await asyncio.wait_for(ws.receive(), JOIN_TIMEOUT_S)
    except TimeoutError:
        await refuse(ws, "bad_message", "No join message was received in time.")
        return None


def _parse(data: str, max_bytes: int) -> dict[str, Any] | None:
    """The message as a dict with a string ``type``, or None for anything else.

    A hostile page may nest arrays thousands deep: the decoder then hits the recursion
    limit, which is a malformed message like any other, not a crash of the session.
    """
    if len(data.encode()) > max_bytes:
        return None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


# Where a session's first message is served when processes share the visits: True when
# the hook handled the session itself (relayed it to the visit's owner, or refused it).
Route = Callable[[web.WebSocketResponse, dict[str, Any], str, web.Request], Awaitable[bool]]
# Whether this process may serve the visit now (it holds the visit's lease).
Fence = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class Session:
    """What every page's WebSocket session needs of the server; ``run`` serves one."""

    verifier: TokenVerifier
    rooms: Rooms
    records: VisitRecords
    recording_available: Callable[[], bool]
    refusals: RefusalAudit
    turn: TurnConfig | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES
    route: Route | None = None
    fence: Fence | None = None

    def _audit_refusal(self, code: str, claims: Claims | None, visit: object,
                       action: str, source: str) -> None:
        """Count and audit a refused join or monitor (records.refusals): a caller without
        a valid token is aggregated by source and never attached to the visit it named."""
        if claims is None or code == "wrong_role":
            TOKEN_REFUSALS.labels(code).inc()
        named = visit if isinstance(visit, str) else None
        if claims is None:
            self.refusals.anonymous(source=source, action=action, code=code, visit=named)
        else:
            self.refusals.identified(action=action, code=code, actor=claims.sub,
                                     role=claims.role, visit=named)

    async def run(self, request: web.Request) -> web.WebSocketResponse:
        # Up to a few times the limit a page is told bad_message; past that, reading the
        # message at all would waste memory, so aiohttp closes the socket (1009).
        ws = web.WebSocketResponse(heartbeat=10.0,
                                   max_msg_size=READ_CAP_FACTOR * self.max_message_bytes)
        await ws.prepare(request)
        first = await first_message(ws)
        if first is None:
            return ws
        message = (_parse(first.data, self.max_message_bytes)
                   if first.type == WSMsgType.TEXT else None)
        if (message is None or message["type"] not in ("join", "monitor")
                or not isinstance(message.get("token"), str)):
            await refuse(ws, "bad_message", "The first message must be a join with a token.")
            return ws
        if self.route is not None and await self.route(ws, message, first.data, request):
            return ws
        source = self.refusals.source(request.remote,
                                      request.headers.get("X-Forwarded-For", ""))
        if message["type"] == "monitor":
            await self._monitor(ws, message, request.transport, source)
        else:
            await self._join(ws, message, request.transport, source)
        return ws

    async def _join(self, ws: web.WebSocketResponse, message: dict[str, Any],
                    transport: asyncio.Transport | None, source: str) -> None:
        expected = message.get("visit")
        try:
            # Every role is verified, so that a staff token is refused with a known sub.
            claims = await self.verifier.verify(
                message["token"], now=time.time(),
                visit_id=expected if isinstance(expected, str) else None)
            if claims.role not in VISIT_ROLES:
                self._audit_refusal("wrong_role", claims, expected, "join", source)
                await refuse(ws, "wrong_role", f"Role {claims.role!r} is not allowed here.")
                return
        except TokenError as exc:
            log.info("join refused", extra={"code": exc.code})
            self._audit_refusal(exc.code, None, expected, "join", source)
            await refuse(ws, exc.code, exc.message, exc.details)
            return
        assert claims.visit is not None  # VISIT_ROLES tokens always carry one
        visit = VisitInfo(claims.visit.id, claims.visit.starts_at, claims.visit.ends_at,
                          claims.visit.privileged)
        try:
            stored = self._check_booking(visit.id, claims.sub)
            if self.fence is not None and not await self.fence(visit.id):
                raise Refused("server_shutdown",
                              "This visit is served by another server now; reconnecting.")
            if (self.rooms.get(visit.id) is None and not (stored or visit).privileged
                    and not await asyncio.to_thread(self.recording_available)):
                raise Refused("recording_unavailable",
                              "recording is not possible now (recordings volume nearly full)")
            room = self.rooms.open(visit, stored)
        except (RosterError, Refused) as exc:
            log.info("join refused", extra={"code": exc.code, "visit": visit.id})
            self._audit_refusal(exc.code, claims, visit.id, "join", source)
            await refuse(ws, exc.code, exc.message, exc.details)
            return
        connection = WsConnection(ws, transport, offer_hook(self.turn, claims.sub))
        cause = "disconnected"
        try:
            try:
                await room.join(Identity(claims.sub, claims.name, claims.role), connection)
            except (RosterError, Refused) as exc:
                log.info("join refused", extra={"code": exc.code, "visit": visit.id})
                self._audit_refusal(exc.code, claims, visit.id, "join", source)
                connection.stop()  # refused before anything was queued
                await refuse(ws, exc.code, exc.message, exc.details)
                return
            log.info("joined", extra={"visit": visit.id, "participant": claims.sub})
            cause = await self._serve(ws, room, connection, member=True)
        finally:
            if connection.stopped_reading:
                cause = "stopped_reading"
            await room.leave(connection, cause)  # a no-op once the room let it go
            await connection.finish()
        log.info("left", extra={"visit": visit.id, "participant": claims.sub, "cause": cause})

    def _check_booking(self, visit_id: str, sub: str) -> VisitInfo | None:
        """Refuse an ended visit or a revoked participant; return the stored booking.

        The stored booking (the visit's slot and privilege as first opened, kept across a
        restart) is what a token must match: see ``Rooms.open``.
        """
        row = self.records.store.visit(visit_id)
        if row is not None and row.state == "ended":
            if row.cause == "cancelled":
                raise Refused("cancelled", "this visit was cancelled")
            raise Refused("visit_ended", "this visit has ended")
        if self.records.store.revoked(visit_id, sub):
            raise Refused("revoked", "this participant's access to the visit was withdrawn")
        if row is None or row.starts_at is None or row.ends_at is None:
            return None
        return VisitInfo(visit_id, int(row.starts_at), int(row.ends_at), row.privileged)

    async def _monitor(self, ws: web.WebSocketResponse, message: dict[str, Any],
                       transport: asyncio.Transport | None, source: str) -> None:
        visit_id = message.get("visit")
        try:
            claims = await self.verifier.verify(message["token"], now=time.time())
            if claims.role != "officer":
                self._audit_refusal("wrong_role", claims, visit_id, "monitor_start", source)
                await refuse(ws, "wrong_role", f"Role {claims.role!r} is not allowed here.")
                return
        except TokenError as exc:
            self._audit_refusal(exc.code, None, visit_id, "monitor_start", source)
            await refuse(ws, exc.code, exc.message, exc.details)
            return
        room = self.rooms.get(visit_id) if isinstance(visit_id, str) else None
        connection = WsConnection(ws, transport, offer_hook(self.turn, claims.sub))
        try:
            try:
                if room is None:
                    raise Refused("visit_not_live", "this visit is not taking place now")
                await room.monitor(Identity(claims.sub, claims.name, claims.role), connection)
            except (RosterError, Refused) as exc:
                self._audit_refusal(exc.code, claims, visit_id, "monitor_start", source)
                connection.stop()
                await refuse(ws, exc.code, exc.message, exc.details)
                return
            audit = self.records.audit

            def record(action: str) -> None:
                audit.record(action=action, actor=claims.sub, role=claims.role,
                             visit=room.visit.id, now=time.time())

            record("monitor_start")
            listening = [False]

            def view(message: dict[str, Any]) -> None:
                """Listening is audited like watching: when it starts and when it stops."""
                listen = message.get("listen") is True
                room.view(connection, listen, message.get("full") is True)
                if listen != listening[0]:
                    listening[0] = listen
                    record("listen_start" if listen else "listen_stop")

            try:
                await self._serve(ws, room, connection, member=False, on_view=view)
            finally:
                await room.stop_monitor(connection)
                if listening[0]:
                    record("listen_stop")
                record("monitor_stop")
        finally:
            await connection.finish()

    async def _serve(self, ws: web.WebSocketResponse, room: Room, connection: WsConnection,
                     member: bool,
                     on_view: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Handle messages until the peer leaves; return the cause. ``on_view``: a
        watching officer's ``view`` message (listen, full frame rate)."""
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = _parse(msg.data, self.max_message_bytes)
            try:
                if message is None:
                    raise RosterError("bad_message", "The message could not be understood.")
                kind = message["type"]
                if kind == "answer" and isinstance(message.get("sdp"), str):
                    await room.answer(connection, message["sdp"])
                elif kind == "candidate" and isinstance(message.get("candidate"), dict):
                    await room.add_candidate(connection, message["candidate"])
                elif kind == "media_state" and member:
                    await room.set_media(connection, bool(message.get("audio")),
                                         bool(message.get("video")))
                elif kind == "stats" and member:
                    await room.report_stats(connection, parse_report(message, len(msg.data)))
                elif kind == "view" and on_view is not None:
                    on_view(message)
                elif kind == "leave":
                    connection.close("left", "left")
                    return "left"
                else:
                    raise RosterError("bad_message", f"unexpected message type {shown(kind)}")
            except RosterError as exc:
                connection.send({"type": "error", "code": exc.code, "message": exc.message})
            except Exception as exc:  # noqa: BLE001 - bad input must not end the visit
                log.info("bad message", extra={"visit": room.visit.id,
                                               "error": type(exc).__name__})
                connection.send({"type": "error", "code": "bad_message",
                                 "message": "The message could not be used."})
        return "disconnected"
