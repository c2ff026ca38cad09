"""One node of several sharing visits through Redis: placement, relaying, leases.

Any node accepts a page's WebSocket. A join's token is verified first (a refused token
goes on to the session, which refuses, counts and audits it, and places nothing); then
the visit's lease in Redis says which node owns it, and a visit without one is placed on
the least loaded open node (``app.cluster.choose``). A join for another node's visit is
relayed to that node (signaling only: the offer carries the owner's ICE candidates, so
media goes straight to it), and a relayed join is never relayed again.

The owner renews its leases while their visits run and checks the lease (its fencing
epoch) before it accepts each join. A lease it cannot renew, or could not renew for a
whole TTL (paused, cut off from Redis), it lets go at once without ending the visit: the
room stops, its pages are closed with ``server_shutdown`` (they reconnect and land on the
new owner), the recording stops without another line, and nothing reaches the records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError

from app import relay
from app.cluster import Lease, Node
from app.config import Config
from app.placement import ServerFull
from app.redis_cluster import RedisCluster
from auth.tokens import VISIT_ROLES, TokenError, TokenVerifier
from recorder.session import Recordings
from records.refusals import RefusalAudit
from sfu.rooms import Rooms
from signaling.session import refuse

log = logging.getLogger(__name__)

RELAYED = "X-Visitbridge-Relayed-By"  # set on a join one node relays to the owner


@dataclass
class Held:
    lease: Lease
    renewed: float  # monotonic time the last renewal that succeeded was sent
    seen: float  # monotonic time the visit last had a room (or was taken) here


class NodeGate:
    """The ``route`` and ``fence`` of this node's signaling sessions, and the loop that
    keeps its registration and its leases alive."""

    def __init__(self, config: Config, cluster: RedisCluster, verifier: TokenVerifier,
                 rooms: Rooms, refusals: RefusalAudit,
                 recordings: Recordings | None = None) -> None:
        self.config = config
        self.cluster = cluster
        self.verifier = verifier
        self.rooms = rooms
        self.refusals = refusals
        self.recordings = recordings
        self.held: dict[str, Held] = {}
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._cpu_mark = (time.process_time(), time.monotonic())

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def lease_ms(self) -> int:
        return self.config.lease_ttl_s * 1000

    async def route(self, ws: web.WebSocketResponse, message: dict[str, Any], first: str,
                    request: web.Request) -> bool:
        """Serve the session here (False) or relay or refuse it (True)."""
        try:
            if message["type"] == "monitor":  # an officer watches where the visit runs
                visit = message.get("visit")
                lease = await self.cluster.owner(visit) if isinstance(visit, str) else None
            else:
                lease = await self._place(ws, message, request)
                if lease is None:
                    return False  # a refused token: the session refuses it
        except ServerFull:
            return True
        except RedisError as exc:
            log.error("placement unavailable", extra={"reason": str(exc)})
            await refuse(ws, "server_shutdown", "Visits cannot be placed now; reconnecting.")
            return True
        if lease is None or lease.node == self.node_id:
            return False
        if RELAYED in request.headers:  # the lease moved while the join was relayed
            await refuse(ws, "server_shutdown", "The visit moved; reconnecting.")
            return True
        await self._relay(ws, lease, first, request)
        return True

    async def _place(self, ws: web.WebSocketResponse, message: dict[str, Any],
                     request: web.Request) -> Lease | None:
        """The lease of a verified join's visit, placing the visit when it has none;
        None for a token that does not verify (it places nothing)."""
        expected = message.get("visit")
        try:
            claims = await self.verifier.verify(
                message["token"], now=time.time(), roles=VISIT_ROLES,
                visit_id=expected if isinstance(expected, str) else None)
        except TokenError:
            return None
        assert claims.visit is not None  # VISIT_ROLES tokens always carry one
        visit_id = claims.visit.id
        lease = await self.cluster.owner(visit_id)
        if lease is not None:
            return lease
        try:
            # A relayed join whose lease lapsed on the way stays here: no relay loops.
            lease, placed = await self.cluster.place(
                visit_id, self.lease_ms, self.node_id if RELAYED in request.headers else None)
        except ServerFull as exc:
            log.warning("join refused: server full", extra={"visit": visit_id})
            self.refusals.identified(action="join", code="server_full", actor=claims.sub,
                                     role=claims.role, visit=visit_id, request=str(exc))
            await refuse(ws, "server_full", "The server is at capacity; please try again later.")
            raise
        if placed:
            log.info("visit placed", extra={"visit": visit_id, "node": lease.node,
                                            "epoch": lease.epoch})
        return lease

    async def _relay(self, ws: web.WebSocketResponse, lease: Lease, first: str,
                     request: web.Request) -> None:
        owner = next((n for n in await self.cluster.nodes() if n.id == lease.node), None)
        if owner is None:  # it stopped refreshing: its lease lapses soon, then a rejoin places
            await refuse(ws, "server_shutdown", "The visit's server is not answering; "
                                                "reconnecting.")
            return
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            upstream = await relay.connect(self._http, owner.url, request,
                                           **{RELAYED: self.node_id})
        except aiohttp.ClientError:
            await refuse(ws, "server_shutdown", "The visit's server is not answering; "
                                                "reconnecting.")
            return

        async def owner_closed() -> None:
            await ws.close(code=upstream.close_code or 1000)

        await relay.pump(ws, upstream, first, owner_closed)

    async def fence(self, visit_id: str) -> bool:
        """Whether this node holds the visit's lease now (renewing it): checked before
        every join, so two nodes never serve, nor record, one visit."""
        sent = time.monotonic()
        try:
            lease = await self.cluster.owner(visit_id)
            if lease is None or lease.node != self.node_id:
                return False
            if not await self.cluster.renew(visit_id, lease, self.lease_ms):
                return False
        except RedisError:
            return False
        self.held[visit_id] = Held(lease, sent, time.monotonic())
        return True

    def holds(self, visit_id: str) -> bool:
        """Whether this node may still serve and record the visit, without asking Redis:
        its last renewal was sent less than a lease TTL ago (Redis counts the TTL from
        later, when the renewal arrived). Checked before the room acts and before the
        recorder writes, so a node that wakes from a pause lets the visit go before it
        writes anything, even before its next renewal fails."""
        held = self.held.get(visit_id)
        if held is not None and time.monotonic() - held.renewed < self.config.lease_ttl_s:
            return True
        self.let_go(visit_id)
        return False

    def let_go(self, visit_id: str) -> None:
        """Stop serving and recording a visit whose lease this node lost, without ending
        it: another node serves it now (or will, at its pages' next join)."""
        held = self.held.pop(visit_id, None)
        room = self.rooms.get(visit_id)
        if held is None and room is None:
            return
        log.error("visit lease lost: letting the visit go", extra={
            "visit": visit_id, "epoch": held.lease.epoch if held else None})
        if self.recordings is not None:
            self.recordings.abandon(visit_id)
        if room is not None:
            room.abandon("server_shutdown", "This visit moved to another server; reconnecting.")

    def served_by(self, visit_id: str) -> dict[str, Any] | None:
        """This node and the epoch it holds the visit under (for the recording)."""
        held = self.held.get(visit_id)
        return {"node": self.node_id, "epoch": held.lease.epoch} if held else None

    def me(self, draining: bool) -> Node:
        """This node's record, with the CPU its process used since the last one."""
        cpu_time, wall = time.process_time(), time.monotonic()
        cpu = (cpu_time - self._cpu_mark[0]) / max(wall - self._cpu_mark[1], 1e-3)
        self._cpu_mark = (cpu_time, wall)
        return Node(self.node_id, (self.config.node_url or self.config.base_url).rstrip("/"),
                    self.config.base_url, self.config.node_capacity,
                    participants=sum(len(room.core.members) for room in self.rooms),
                    visits=len(self.held), cpu=cpu, draining=draining)

    async def refresh(self) -> None:
        """Renew the leases of running visits, let go of ended ones, re-register."""
        now = time.monotonic()
        for visit_id, held in list(self.held.items()):
            room = self.rooms.get(visit_id)
            if room is not None:
                held.seen = now
            elif now - held.seen > self.config.lease_ttl_s:  # over, or never joined here
                self.held.pop(visit_id, None)
                await self.cluster.release(visit_id, held.lease)
                continue
            sent = time.monotonic()
            try:
                renewed = await self.cluster.renew(visit_id, held.lease, self.lease_ms)
            except RedisError:
                # Unconfirmed for a whole TTL: another node may hold the visit by now.
                renewed = self.holds(visit_id)
            else:
                held.renewed = sent if renewed else held.renewed
            if not renewed:
                self.let_go(visit_id)
        draining = self.config.drain or await self.cluster.draining(self.node_id)
        await self.cluster.publish(self.me(draining), self.config.node_ttl_s * 1000)

    async def _maintain(self) -> None:
        every = min(self.config.node_ttl_s, self.config.lease_ttl_s) / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.error("node refresh failed", extra={"reason": str(exc)})

    async def start(self, app: web.Application) -> None:
        await self.refresh()  # registered before the first page arrives
        self._task = asyncio.ensure_future(self._maintain())

    async def close(self, app: web.Application) -> None:
        """Leave the registry and let go of our leases (the rooms have ended)."""
        if self._task is not None:
            self._task.cancel()
        try:
            for visit_id, held in self.held.items():
                await self.cluster.release(visit_id, held.lease)
            await self.cluster.leave(self.node_id)
        except RedisError as exc:
            log.warning("could not leave the registry", extra={"reason": str(exc)})
        if self._http is not None:
            await self._http.close()
        await self.cluster.close()
