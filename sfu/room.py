"""A visit's live media: its members' peer connections and the wiring between them.

Everything a member must hear about travels through its ``Connection`` (the signaling
layer's WebSocket), and everything the records system must know through the
``RoomObserver``; the room never imports signaling. The booking is enforced by the
visit's ``VisitLifecycle``: a timer drives it, and its events open and close the media
gate, warn the pages and end the visit. Wiring is recomputed after every change and is
idempotent: publisher P's forwarders feed slot P of every other member and monitor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu import metrics
from sfu.forwarder import TrackForwarder
from sfu.peer import Peer, PeerSettings
from visit.lifecycle import (
    Ending,
    EndWarning,
    Event,
    MediaHeld,
    Policy,
    Refused,
    Started,
    VisitLifecycle,
)
from visit.roster import Identity, Roster, RosterError
from visit.tap import Tap, TapFactory, TapRequest

log = logging.getLogger(__name__)

Message = dict[str, Any]


class Connection(Protocol):
    """The signaling side of one member: where its events go."""

    async def send(self, message: Message) -> None: ...

    async def close(self, code: str, message: str) -> None: ...


@dataclass
class Member:
    who: Identity
    slot: int
    peer: Peer
    connection: Connection
    media: dict[str, bool] = field(default_factory=lambda: {"audio": True, "video": True})
    muted_by_officer: bool = False
    answered: bool = False
    welcomed: bool = False  # events go out only after its joined and offer messages

    def describe(self) -> Message:
        return {"id": self.who.sub, "name": self.who.name, "role": self.who.role,
                "slot": self.slot, "audio": self.media["audio"] and not self.muted_by_officer,
                "video": self.media["video"], "muted_by_officer": self.muted_by_officer}


@dataclass
class Monitor:
    """A silent viewer (officer): receives every slot, publishes nothing, never announced."""

    who: Identity
    peer: Peer
    connection: Connection
    answered: bool = False


@dataclass(frozen=True)
class VisitInfo:
    id: str
    starts_at: int
    ends_at: int
    privileged: bool


class RoomObserver(Protocol):
    """What the records side needs to hear (persistence, webhooks, audit)."""

    def visit_opened(self, room: Room, now: float) -> None: ...

    def visit_started(self, room: Room, at: float) -> None: ...

    def participant_joined(self, room: Room, member: Member, at: float) -> None: ...

    def participant_left(self, room: Room, member: Member, cause: str, at: float) -> None: ...

    def visit_ended(self, room: Room, cause: str, reason: str, at: float) -> None: ...


class Room:
    def __init__(self, visit: VisitInfo, max_visitors: int, settings: PeerSettings,
                 policy: Policy, observer: RoomObserver, on_closed: Callable[[Room], None],
                 tap_factory: TapFactory | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.visit = visit
        # Privileged visits get no tap: they are never recorded.
        self._tap_factory = None if visit.privileged else tap_factory
        self.roster = Roster(max_visitors)
        self.lifecycle = VisitLifecycle(visit.starts_at, visit.ends_at, policy)
        self.members: dict[str, Member] = {}
        self.monitors: list[Monitor] = []
        self._settings = settings
        self._observer = observer
        self._on_closed = on_closed
        self._clock = clock
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._timer = asyncio.ensure_future(self._run_clock())

    # -- participants -------------------------------------------------------------------

    async def join(self, who: Identity, connection: Connection) -> Member:
        """Admit a participant: replace an older connection of theirs, send the offer."""
        async with self._lock:
            now = self._clock()
            self.lifecycle.check_join(now)  # lifecycle.Refused propagates to signaling
            admission = self.roster.admit(who)  # RosterError propagates to signaling
            old = self.members.get(who.sub)
            if admission.replaces and old is not None:
                await self._drop(old, release=False)  # the new connection keeps the slot
                await old.connection.close(
                    "connected_elsewhere", "this visit was opened on another device")
            member = Member(who, admission.slot, Peer(self._settings, self.roster.slots,
                                                      publish=True), connection)
            joined = time.monotonic()
            first_media = _once(lambda: metrics.JOIN_SECONDS.observe(time.monotonic() - joined))
            for sinks in member.peer.sinks:
                sinks["video"].on_first_packet = first_media
            member.peer.pc.on("connectionstatechange",
                              lambda m=member: self._connection_changed(m))
            self.members[who.sub] = member
            metrics.PARTICIPANTS.labels(who.role).inc()
            try:
                offer = await member.peer.offer()
                await connection.send({
                    "type": "joined",
                    "you": member.describe(),
                    "visit": self.describe(now),
                    "participants": [m.describe() for m in self.members.values()
                                     if m is not member],
                })
                await connection.send({"type": "offer", **offer})
            except ConnectionError:
                await self._drop(member)  # gone before the welcome: leave no ghost
                raise
            member.welcomed = True
            await self._broadcast({"type": "participant_joined",
                                   "participant": member.describe()}, skip=member)
            self._observer.participant_joined(self, member, now)
            return member

    def describe(self, now: float) -> Message:
        return {"id": self.visit.id, "starts_at": self.visit.starts_at,
                "ends_at": self.visit.ends_at, "privileged": self.visit.privileged,
                "recorded": self.recorded, "state": self.lifecycle.state.value,
                "server_time": now}

    async def answer(self, peer_owner: Member | Monitor, sdp: str) -> None:
        if peer_owner.answered:
            raise RosterError("bad_message", "the answer was already received")
        await peer_owner.peer.accept_answer(sdp)
        peer_owner.answered = True
        if isinstance(peer_owner, Member) and self._tap_factory is not None:
            for kind, forwarder in peer_owner.peer.forwarders.items():
                forwarder.tap_factory = self._tap_opener(peer_owner, kind, forwarder)
                forwarder.recording = self.lifecycle.media_allowed
        self._wire()

    @property
    def recorded(self) -> bool:
        return self._tap_factory is not None

    def _tap_opener(self, member: Member, kind: str,
                    forwarder: TrackForwarder) -> Callable[[RtpPacket, RTCRtpCodecParameters], Tap]:
        assert self._tap_factory is not None
        factory = self._tap_factory

        def open_tap(packet: RtpPacket, codec: RTCRtpCodecParameters) -> Tap:
            try:
                return make_tap(codec)
            except Exception as exc:  # noqa: BLE001 - no recorder: fail closed, end the visit
                log.exception("cannot start recording", extra={"visit": self.visit.id})
                asyncio.ensure_future(self._recording_failed(type(exc).__name__))
                return _NO_TAP

        def make_tap(codec: RTCRtpCodecParameters) -> Tap:
            return factory(TapRequest(
                visit_id=self.visit.id, participant=member.who.sub, kind=kind,
                mime=codec.mimeType.lower(), clock_rate=codec.clockRate,
                request_keyframe=lambda: asyncio.ensure_future(forwarder.request_keyframe()),
                on_ready=lambda: asyncio.ensure_future(self._recording_on(member, kind)),
                on_failure=lambda reason: asyncio.ensure_future(self._recording_failed(reason)),
            ))

        return open_tap

    async def _recording_on(self, member: Member, kind: str) -> None:
        forwarder = member.peer.forwarders.get(kind)
        if forwarder is not None:
            await forwarder.request_keyframe()  # subscribers need a picture to start from
        message = {"type": "recording", "participant": member.who.sub, "kind": kind,
                   "state": "on"}
        await self._broadcast(message)

    async def _recording_failed(self, reason: str) -> None:
        log.error("recording failed", extra={"visit": self.visit.id, "reason": reason})
        await self.end("recording_failed", f"recording failed: {reason}")

    async def set_media(self, member: Member, audio: bool, video: bool) -> None:
        member.media = {"audio": audio, "video": video}
        await self._broadcast({"type": "participant_updated",
                               "participant": member.describe()}, skip=member)

    async def leave(self, member: Member, cause: str) -> None:
        async with self._lock:
            if self.members.get(member.who.sub) is not member:
                return  # already replaced by a newer connection, or the visit ended
            await self._drop(member)
            metrics.DISCONNECTS.labels(cause, metrics.fault_of(cause)).inc()
            await self._broadcast({"type": "participant_left", "id": member.who.sub,
                                   "cause": cause})
            self._observer.participant_left(self, member, cause, self._clock())
            await self._handle(self.lifecycle.disconnected(member.who.sub, self._clock()))

    async def remove(self, sub: str, code: str, message: str) -> bool:
        """Take a participant out at once (revocation); False if not present."""
        member = self.members.get(sub)
        if member is None:
            return False
        await member.connection.close(code, message)
        await self.leave(member, code)
        return True

    async def _drop(self, member: Member, release: bool = True) -> None:
        self.members.pop(member.who.sub, None)
        if release:
            self.roster.release(member.who.sub)
        metrics.PARTICIPANTS.labels(member.who.role).dec()
        await member.peer.close()

    # -- officers -----------------------------------------------------------------------

    async def monitor(self, who: Identity, connection: Connection) -> Monitor:
        if self.visit.privileged:
            raise RosterError("privileged_visit", "privileged visits cannot be monitored")
        now = self._clock()
        self.lifecycle.check_join(now)
        mon = Monitor(who, Peer(self._settings, self.roster.slots, publish=False), connection)
        try:
            offer = await mon.peer.offer()
            await connection.send({
                "type": "monitoring", "visit": self.describe(now),
                "participants": [m.describe() for m in self.members.values()],
            })
            await connection.send({"type": "offer", **offer})
        except ConnectionError:
            await mon.peer.close()
            raise
        self.monitors.append(mon)
        return mon

    async def stop_monitor(self, mon: Monitor) -> None:
        if mon in self.monitors:
            self.monitors.remove(mon)
            await mon.peer.close()

    async def mute(self, sub: str, muted: bool) -> bool:
        """An officer mutes a participant: the server stops forwarding their audio."""
        member = self.members.get(sub)
        if member is None:
            return False
        member.muted_by_officer = muted
        forwarder = member.peer.forwarders.get("audio")
        if forwarder is not None:
            forwarder.muted = muted
        await member.connection.send({"type": "muted", "muted": muted, "by": "officer"})
        await self._broadcast({"type": "participant_updated",
                               "participant": member.describe()}, skip=member)
        return True

    async def end(self, cause: str, reason: str = "") -> None:
        await self._handle(self.lifecycle.end(cause, self._clock(), reason))

    # -- time and media gate ------------------------------------------------------------

    async def _run_clock(self) -> None:
        while self.lifecycle.state.value in ("waiting", "live"):
            deadline = self.lifecycle.next_deadline()
            delay = 1.0 if deadline is None else min(1.0, max(0.0, deadline - self._clock()))
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay)
            except TimeoutError:
                pass
            self._wakeup.clear()
            await self._handle(self.lifecycle.tick(self._clock()), wake=False)

    async def _handle(self, events: list[Event], wake: bool = True) -> None:
        """Act on lifecycle events; ``wake`` re-arms the timer (deadlines may have moved)."""
        for event in events:
            if isinstance(event, MediaHeld):
                self._apply_gate()
            elif isinstance(event, Started):
                self._observer.visit_started(self, event.at)
                await self._broadcast({"type": "visit_started"})
            elif isinstance(event, EndWarning):
                await self._broadcast({"type": "warning", "remaining_s": event.remaining_s})
            elif isinstance(event, Ending):
                await self._finish(event)
        if wake:
            self._wakeup.set()

    async def _finish(self, event: Ending) -> None:
        log.info("visit ending", extra={"visit": self.visit.id, "cause": event.cause})
        fault = metrics.fault_of(event.cause)
        metrics.VISITS_ENDED.labels(event.cause, fault).inc()
        await self._broadcast({"type": "ended", "cause": event.cause, "reason": event.reason})
        for member in list(self.members.values()):
            await self._drop(member)
            metrics.DISCONNECTS.labels(event.cause, fault).inc()
            self._observer.participant_left(self, member, event.cause, event.at)
            await member.connection.close("ended", event.reason or event.cause)
        for mon in list(self.monitors):
            await self.stop_monitor(mon)
            await mon.connection.close("ended", event.reason or event.cause)
        self.lifecycle.finished()
        self._observer.visit_ended(self, event.cause, event.reason, event.at)
        self._on_closed(self)

    def _apply_gate(self) -> None:
        allowed = self.lifecycle.media_allowed
        for member in self.members.values():
            for forwarder in member.peer.forwarders.values():
                forwarder.recording = allowed
        for peer in self._subscriber_peers():
            for sinks in peer.sinks:
                for sink in sinks.values():
                    sink.enabled = allowed
                    if allowed and sink.source is not None and sink.kind == "video":
                        asyncio.ensure_future(sink.source.request_keyframe())

    def _subscriber_peers(self) -> list[Peer]:
        return [m.peer for m in self.members.values()] + [m.peer for m in self.monitors]

    def _wire(self) -> None:
        allowed = self.lifecycle.media_allowed
        subscribers = [(m.peer, m.answered, m) for m in self.members.values()]
        subscribers += [(m.peer, m.answered, None) for m in self.monitors]
        for publisher in self.members.values():
            for kind, forwarder in publisher.peer.forwarders.items():
                forwarder.muted = kind == "audio" and publisher.muted_by_officer
                for peer, answered, member in subscribers:
                    if member is publisher or not answered:
                        continue
                    sink = peer.slot_sinks(publisher.slot)[kind]
                    sink.enabled = allowed
                    if sink.source is not forwarder:
                        forwarder.attach(sink)
                        asyncio.ensure_future(forwarder.request_keyframe())

    def _connection_changed(self, member: Member) -> None:
        state = member.peer.state
        log.info("peer state", extra={"visit": self.visit.id, "participant": member.who.sub,
                                      "state": state})
        if self.members.get(member.who.sub) is not member:
            return
        if state == "connected":
            asyncio.ensure_future(self._connected(member))
            # A subscriber that just connected missed the last keyframe.
            for sinks in member.peer.sinks:
                sink = sinks["video"]
                if sink.source is not None:
                    asyncio.ensure_future(sink.source.request_keyframe())

    async def _connected(self, member: Member) -> None:
        try:
            events = self.lifecycle.connected(member.who.sub, self._clock())
        except Refused:
            return  # the visit ended meanwhile; its teardown closes this member
        await self._handle(events)

    async def _broadcast(self, message: Message, skip: Member | None = None) -> None:
        targets: list[Member | Monitor] = [m for m in self.members.values()
                                           if m is not skip and m.welcomed]
        targets += self.monitors
        for m in targets:
            try:
                await m.connection.send(message)
            except ConnectionError:
                pass

    def stop_clock(self) -> None:
        if self._timer is not asyncio.current_task():
            self._timer.cancel()


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """Wrap ``action`` so that only its first call runs (first media of a member)."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run


class _NoTap:
    """Stands in for a recorder that could not start: never ready, so nothing flows."""

    ready = False

    def packet(self, packet: RtpPacket, now: float) -> None:
        pass

    def close(self) -> None:
        pass


_NO_TAP = _NoTap()
