"""A visit's live media: its members' peer connections and the wiring between them.

Everything a member must hear about travels through its ``Connection`` (the signaling
layer's WebSocket); the room never imports signaling. Wiring is recomputed after every
change and is idempotent: publisher P's forwarders feed slot P of every other member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import metrics
from .peer import Peer, PeerSettings
from .roster import Identity, Roster, RosterError

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
    answered: bool = False

    def describe(self) -> Message:
        return {"id": self.who.sub, "name": self.who.name, "role": self.who.role,
                "slot": self.slot, "audio": self.media["audio"], "video": self.media["video"]}


@dataclass(frozen=True)
class VisitInfo:
    id: str
    starts_at: int
    ends_at: int
    privileged: bool


class Room:
    def __init__(self, visit: VisitInfo, max_visitors: int, settings: PeerSettings,
                 on_empty: Callable[[Room], None]) -> None:
        self.visit = visit
        self.roster = Roster(max_visitors)
        self.members: dict[str, Member] = {}
        self._settings = settings
        self._on_empty = on_empty
        self._lock = asyncio.Lock()

    async def join(self, who: Identity, connection: Connection) -> Member:
        """Admit a participant: replace an older connection of theirs, send the offer."""
        async with self._lock:
            admission = self.roster.admit(who)  # RosterError propagates to signaling
            old = self.members.get(who.sub)
            if admission.replaces and old is not None:
                await self._drop(old, announce=False)
                await old.connection.close(
                    "connected_elsewhere", "this visit was opened on another device")
            member = Member(who, admission.slot, Peer(self._settings, self.roster.slots,
                                                      publish=True), connection)
            member.peer.pc.on("connectionstatechange",
                              lambda m=member: self._connection_changed(m))
            self.members[who.sub] = member
            metrics.PARTICIPANTS.labels(who.role).inc()
            offer = await member.peer.offer()
            await connection.send({
                "type": "joined",
                "you": member.describe(),
                "visit": {"id": self.visit.id, "starts_at": self.visit.starts_at,
                          "ends_at": self.visit.ends_at, "privileged": self.visit.privileged},
                "participants": [m.describe() for m in self.members.values() if m is not member],
            })
            await connection.send({"type": "offer", **offer})
            await self._broadcast({"type": "participant_joined",
                                   "participant": member.describe()}, skip=member)
            return member

    async def answer(self, member: Member, sdp: str) -> None:
        if member.answered:
            raise RosterError("bad_message", "the answer was already received")
        await member.peer.accept_answer(sdp)
        member.answered = True
        self._wire()

    async def set_media(self, member: Member, audio: bool, video: bool) -> None:
        member.media = {"audio": audio, "video": video}
        await self._broadcast({"type": "participant_updated",
                               "participant": member.describe()}, skip=member)

    async def leave(self, member: Member, cause: str) -> None:
        async with self._lock:
            if self.members.get(member.who.sub) is not member:
                return  # already replaced by a newer connection
            await self._drop(member, announce=True, cause=cause)

    async def _drop(self, member: Member, announce: bool, cause: str = "") -> None:
        self.members.pop(member.who.sub, None)
        self.roster.release(member.who.sub)
        metrics.PARTICIPANTS.labels(member.who.role).dec()
        await member.peer.close()
        if announce:
            await self._broadcast({"type": "participant_left", "id": member.who.sub,
                                   "cause": cause})
            if not self.members:
                self._on_empty(self)

    def _wire(self) -> None:
        for publisher in self.members.values():
            for kind, forwarder in publisher.peer.forwarders.items():
                for subscriber in self.members.values():
                    if subscriber is publisher or not subscriber.answered:
                        continue
                    sink = subscriber.peer.slot_sinks(publisher.slot)[kind]
                    if sink.source is not forwarder:
                        forwarder.attach(sink)
                        asyncio.ensure_future(forwarder.request_keyframe())

    def _connection_changed(self, member: Member) -> None:
        state = member.peer.state
        log.info("peer state", extra={"visit": self.visit.id, "participant": member.who.sub,
                                      "state": state})
        if state == "connected":
            # A subscriber that just connected missed the last keyframe.
            for sinks in member.peer.sinks:
                sink = sinks["video"]
                if sink.source is not None:
                    asyncio.ensure_future(sink.source.request_keyframe())

    async def _broadcast(self, message: Message, skip: Member | None = None) -> None:
        for m in list(self.members.values()):
            if m is not skip:
                try:
                    await m.connection.send(message)
                except ConnectionError:
                    pass
