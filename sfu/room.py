"""A visit's live media: carries out what its ``RoomCore`` decides, with real peers.

The core (``visit.room``) holds every rule of the visit; this shell owns the aiortc peer
of each connection, the lifecycle timer, the recorder taps and the metrics, and turns
the core's actions into calls on them. Sends to a member only ever queue (the
``Connection`` protocol), so no page can hold up the visit; the only awaits are local
aiortc work (making an offer, applying an answer, closing a peer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiortc import RTCRtpCodecParameters

from sfu import metrics
from sfu.forwarder import TrackForwarder
from sfu.observing import observe
from sfu.peer import Peer, PeerSettings
from sfu.taps import tap_opener
from sfu.watchdog import MediaWatch, RtpIdle
from visit import actions as act
from visit.actions import Action
from visit.clock import STEADY
from visit.lifecycle import MediaHeld, Policy, State
from visit.members import Member
from visit.quality import LEVELS, Impairment, Report
from visit.room import RoomCore, RoomObserver, VisitInfo
from visit.roster import Identity, RosterError
from visit.tap import Tap, TapFactory, TappedPacket

log = logging.getLogger(__name__)

Message = dict[str, Any]


class Connection(Protocol):
    """The signaling side of one connection: sends queue, a close follows what was sent.

    Neither may block or raise: a connection that cannot keep up closes itself.
    """

    def send(self, message: Message) -> None: ...

    def close(self, code: str, message: str) -> None: ...


class Room:
    def __init__(self, visit: VisitInfo, max_visitors: int, settings: PeerSettings,
                 policy: Policy, observer: RoomObserver, on_closed: Callable[[Room], None],
                 tap_factory: TapFactory | None = None,
                 clock: Callable[[], float] = STEADY,
                 holds: Callable[[str], bool] | None = None) -> None:
        self.core = RoomCore(visit, max_visitors, policy)
        # Nodes sharing visits: whether this node still holds the visit's lease (when it
        # does not, the call lets the visit go: ``abandon``).
        self._holds = holds
        self.abandoned = False
        # Privileged visits get no tap: they are never recorded.
        self._tap_factory = None if visit.privileged else tap_factory
        self._settings = settings
        self._observer = observer
        self._on_closed = on_closed
        self._clock = clock
        self._peers: dict[Connection, Peer] = {}
        self._roles: dict[Connection, str] = {}  # members' connections, for the gauge
        self._joining = asyncio.Lock()  # one offer at a time: a rejoin replaces cleanly
        self._wakeup = asyncio.Event()
        self._watch = MediaWatch(settings.media_timeout_s)
        self._idle = RtpIdle(settings.media_idle_s)
        self._levels = dict.fromkeys(LEVELS, 0)  # this room's share of the quality gauge
        self._timer = asyncio.ensure_future(self._run_clock())

    @property
    def visit(self) -> VisitInfo:
        return self.core.visit

    @property
    def recorded(self) -> bool:
        return self._tap_factory is not None

    # -- inputs -------------------------------------------------------------------------

    async def join(self, who: Identity, connection: Connection) -> None:
        """Seat a participant (``Refused``/``RosterError`` propagate), then send the offer."""
        async with self._joining:
            self._check_held()
            await self._carry_out(self.core.join(who, connection, self._clock()))
            offer = await self._offer(connection)
            if offer is not None:
                await self._carry_out(self.core.welcome(connection, offer, self._clock()))

    async def monitor(self, who: Identity, connection: Connection) -> None:
        async with self._joining:
            self._check_held()
            await self._carry_out(self.core.monitor(who, connection, self._clock()))
            offer = await self._offer(connection)
            if offer is not None:
                await self._carry_out(self.core.monitor_welcome(connection, offer, self._clock()))

    async def _offer(self, connection: Connection) -> Message | None:
        """The peer's offer, or None if the connection lost its seat meanwhile."""
        peer = self._peers.get(connection)
        if peer is None:
            return None
        try:
            return await peer.offer()
        except Exception:
            if self._peers.get(connection) is not peer:
                return None  # closed under it: replaced, removed or the visit ended
            raise

    async def answer(self, connection: Connection, sdp: str) -> None:
        self.core.check_answer(connection)  # RosterError: a second or stray answer
        peer = self._peers[connection]
        await peer.accept_answer(sdp)
        if self._peers.get(connection) is peer:
            await self._carry_out(self.core.answered(connection))

    async def add_candidate(self, connection: Connection, candidate: dict[str, object]) -> None:
        peer = self._peers.get(connection)
        if peer is not None:
            await peer.add_candidate(candidate)

    async def set_media(self, connection: Connection, audio: bool, video: bool) -> None:
        await self._carry_out(self.core.set_media(connection, audio, video))

    async def report_stats(self, connection: Connection, report: Report) -> None:
        """A page's statistics (``RosterError`` when refused), with its uplink's counts."""
        peer = self._peers.get(connection)
        uplink = peer.rtp_received if peer is not None else (0, 0)
        await self._carry_out(self.core.report_stats(connection, report, uplink, self._clock()))

    async def leave(self, connection: Connection, cause: str) -> None:
        await self._carry_out(self.core.leave(connection, cause, self._clock()))

    async def stop_monitor(self, connection: Connection) -> None:
        await self._carry_out(self.core.stop_monitor(connection))

    def view(self, connection: Connection, listen: bool, full: bool) -> None:
        """A watching officer's view of this visit (``Peer.view``)."""
        peer = self._peers.get(connection)
        if peer is not None and connection in self.core.monitors:
            peer.view(listen, full)

    async def remove(self, sub: str, code: str, message: str) -> bool:
        """Take a participant out at once (revocation); False if not present."""
        actions = self.core.remove(sub, code, message, self._clock())
        if actions is not None:
            await self._carry_out(actions)
        return actions is not None

    async def mute(self, sub: str, muted: bool) -> bool:
        """An officer mutes a participant: the server stops forwarding their audio."""
        actions = self.core.mute(sub, muted)
        if actions is not None:
            await self._carry_out(actions)
        return actions is not None

    async def end(self, cause: str, reason: str = "") -> None:
        await self._carry_out(self.core.end(cause, reason, self._clock()))

    def abandon(self, code: str, message: str) -> None:
        """Let the visit go without ending it: its lease moved to another node, which
        serves and records it from now on. Every connection is closed with ``code`` (pages
        reconnect and land on the new holder); the observer hears nothing, so the shared
        records see nobody leave and the visit not end."""
        if self.abandoned:
            return
        self.abandoned = True
        for conn in list(self._peers):
            conn.close(code, message)
        peers = list(self._peers.values())
        self._peers.clear()
        for role in self._roles.values():
            metrics.PARTICIPANTS.labels(role).dec()
        self._roles.clear()
        for level, count in self._levels.items():
            metrics.QUALITY.labels(level).dec(count)
        self._levels = dict.fromkeys(LEVELS, 0)
        self._on_closed(self)
        if peers:
            asyncio.ensure_future(asyncio.gather(*(peer.close() for peer in peers)))

    def _check_held(self) -> None:
        if self.abandoned or not self._holding():
            raise RosterError("server_shutdown",
                              "This visit is served by another server now; reconnecting.")

    def _holding(self) -> bool:
        return self._holds is None or self._holds(self.visit.id)

    def _soon(self, step: Callable[[float], list[Action]]) -> None:
        """An input from a synchronous callback (media path, peer state): run it next."""
        async def run() -> None:
            await self._carry_out(step(self._clock()))

        asyncio.ensure_future(run())

    async def _run_clock(self) -> None:
        while self.core.lifecycle.state in (State.WAITING, State.LIVE) and not self.abandoned:
            deadline = self.core.next_deadline()
            delay = 1.0 if deadline is None else min(1.0, max(0.0, deadline - self._clock()))
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay)
            except TimeoutError:
                pass
            self._wakeup.clear()
            now = self._clock()
            await self._carry_out(self.core.tick(now) + self._silent_members(now), wake=False)

    def _silent_members(self, now: float) -> list[Action]:
        """Members whose media stopped arriving: dropped (seats kept, media stopped since the
        timeout) when nothing arrives at all; paused (ledger, quality) when only RTP stopped."""
        actions: list[Action] = []
        for conn, peer in list(self._peers.items()):
            if conn not in self._roles:
                continue
            connected = peer.state == "connected"
            if self._watch.silent(conn, peer.datagrams_received, connected, now):
                log.info("media lost", extra={"visit": self.visit.id})
                actions += self.core.media_flow(conn, False, now - self._watch.timeout_s)
                actions += self.core.leave(conn, "media_lost", now)
                continue
            flow = (self._idle.update(conn, peer.rtp_received[0], now)
                    if connected and peer.forwarders else None)
            if flow is not None:
                log.info("media flow", extra={"visit": self.visit.id, "state": flow[0]})
                actions += self.core.media_flow(conn, flow[0] == "resumed", flow[1])
        return actions

    def stop_clock(self) -> None:
        if self._timer is not asyncio.current_task():
            self._timer.cancel()

    # -- actions ------------------------------------------------------------------------

    async def _carry_out(self, actions: Iterable[Action], wake: bool = True) -> None:
        """Do what the core decided; peers close last, together (local aiortc work).
        Nothing, once this node no longer holds the visit: it may not write its records."""
        if self.abandoned or not self._holding():
            return
        closing: list[Peer] = []
        for action in actions:
            if isinstance(action, act.Send):
                action.conn.send(action.message)  # type: ignore[attr-defined]
            elif isinstance(action, act.Close):
                action.conn.close(action.code, action.message)  # type: ignore[attr-defined]
            elif isinstance(action, act.ClosePeer):
                self._watch.forget(action.conn)
                self._idle.forget(action.conn)
                peer = self._peers.pop(action.conn, None)  # type: ignore[call-overload]
                role = self._roles.pop(action.conn, None)  # type: ignore[call-overload]
                if role is not None:
                    metrics.PARTICIPANTS.labels(role).dec()
                if peer is not None:
                    closing.append(peer)
            else:
                self._apply(action)
        self._count_levels()
        if wake:
            self._wakeup.set()  # deadlines may have moved
        if closing:
            await asyncio.gather(*(peer.close() for peer in closing))

    def _count_levels(self) -> None:
        """Move this room's participants between the quality gauge's levels."""
        now = dict.fromkeys(LEVELS, 0)
        for member in self.core.members.values():
            if member.lost_at is None:
                now[member.quality.level] += 1
        for level, count in now.items():
            if count != self._levels[level]:
                metrics.QUALITY.labels(level).inc(count - self._levels[level])
        self._levels = now

    def _apply(self, action: Action) -> None:
        if isinstance(action, act.OpenPeer):
            self._open_peer(action)
        elif isinstance(action, act.Feed):
            self._feed(action)
        elif isinstance(action, MediaHeld):
            self._gate(not action.held)
        elif isinstance(action, act.Mute):
            forwarder = self._forwarder(action.conn, "audio")
            if forwarder is not None:
                forwarder.muted = action.muted
        elif isinstance(action, act.Record):
            self._record(action)
        elif isinstance(action, act.RequestKeyframe):
            forwarder = self._forwarder(action.publisher, action.kind or "video")
            if forwarder is not None:
                asyncio.ensure_future(forwarder.request_keyframe())
        elif isinstance(action, Impairment):
            metrics.FROZEN_SECONDS.inc(action.frozen_s)
            metrics.CONCEALED_SECONDS.inc(action.concealed_s)
        elif isinstance(action, act.RefreshPictures):
            peer = self._peers.get(action.subscriber)  # type: ignore[call-overload]
            for sinks in peer.sinks if peer is not None else ():
                if sinks["video"].source is not None:
                    asyncio.ensure_future(sinks["video"].source.request_keyframe())
        else:
            self._observe(action)

    def _observe(self, action: Action) -> None:
        if observe(self._observer, self.core, action):  # the visit ended
            self._on_closed(self)

    def _open_peer(self, action: act.OpenPeer) -> None:
        conn: Connection = action.conn  # type: ignore[assignment]
        peer = Peer(self._settings, self.core.slots, publish=action.publish)
        self._peers[conn] = peer
        if action.publish:
            member = self.core.member_of(conn)
            assert member is not None
            self._roles[conn] = member.who.role
            metrics.PARTICIPANTS.labels(member.who.role).inc()
            joined = time.monotonic()
            first_media = _once(lambda: metrics.JOIN_SECONDS.observe(time.monotonic() - joined))
            for sinks in peer.sinks:
                sinks["video"].on_first_packet = first_media
            peer.pc.on("connectionstatechange", lambda: self._state_changed(conn, peer))
        else:  # a watching officer: silent and thinned until asked
            peer.view(listen=False, full=False)

    def _state_changed(self, conn: Connection, peer: Peer) -> None:
        log.info("peer state", extra={"visit": self.visit.id, "state": peer.state})
        if peer.state == "connected" and self._peers.get(conn) is peer:
            self._soon(lambda now: self.core.connected(conn, now))

    def _forwarder(self, conn: act.Conn, kind: str) -> TrackForwarder | None:
        peer = self._peers.get(conn)  # type: ignore[call-overload]
        return None if peer is None else peer.forwarders.get(kind)

    def _feed(self, action: act.Feed) -> None:
        publisher = self._peers.get(action.publisher)  # type: ignore[call-overload]
        subscriber = self._peers.get(action.subscriber)  # type: ignore[call-overload]
        if publisher is None or subscriber is None:
            return
        sinks = subscriber.slot_sinks(action.slot)
        for kind, track in publisher.forwarders.items():
            sink = sinks[kind]
            sink.enabled = action.enabled
            forwarder = track.encoding_for(sink)  # an officer's tile: the low copy
            if sink.source is not forwarder:
                forwarder.attach(sink)
                asyncio.ensure_future(forwarder.request_keyframe())

    def _gate(self, open_: bool) -> None:
        for peer in self._peers.values():
            for forwarder in peer.forwarders.values():
                forwarder.recording = open_
            for sinks in peer.sinks:
                for sink in sinks.values():
                    sink.enabled = open_
                    if open_ and sink.source is not None and sink.kind == "video":
                        asyncio.ensure_future(sink.source.request_keyframe())

    # -- recording ------------------------------------------------------------------------

    def _record(self, action: act.Record) -> None:
        peer = self._peers.get(action.conn)  # type: ignore[call-overload]
        member = self.core.member_of(action.conn)
        if self._tap_factory is None or peer is None or member is None:
            return
        for kind, forwarder in peer.forwarders.items():
            forwarder.tap_factory = self._tap_opener(action.conn, member, kind, forwarder)
            forwarder.recording = action.live

    def _tap_opener(self, conn: act.Conn, member: Member, kind: str, forwarder: TrackForwarder
                    ) -> Callable[[TappedPacket, RTCRtpCodecParameters], Tap]:
        assert self._tap_factory is not None

        def failed(reason: str) -> None:
            log.error("recording failed", extra={"visit": self.visit.id, "reason": reason})
            self._soon(lambda now: self.core.recording_failed(reason, now))

        return tap_opener(self._tap_factory, self.visit.id, member.who.sub, kind, forwarder,
                          lambda: self._soon(lambda now: self.core.tap_ready(conn, kind)),
                          failed)


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """Wrap ``action`` so that only its first call runs (first media of a member)."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
