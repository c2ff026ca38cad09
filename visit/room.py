"""The room of one visit as plain logic: who is in it, what each must hear, what flows.

Written in the style of h11: every input is a method call with the time passed in, and
every output is an action for the caller to carry out (send a message, close a
connection, open or close a peer, feed a publisher into a subscriber's slot, open or
close the media gate, request a keyframe, tell the records side). The core holds no
socket and awaits nothing, so every transition is tested with a fake clock, and no
member can make the room wait on it: ``sfu.room`` carries the actions out, and a
connection's sends only ever queue.

Connections are opaque keys chosen by the caller (one per WebSocket); a member is the
participant currently holding a seat, a monitor a silent officer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from visit import actions as act
from visit.gaps import GapTracker
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
from visit.members import Conn, Member, Message, Monitor
from visit.quality import QualityMeter, Report
from visit.roster import Identity, Roster, RosterError
from visit.value import value

# Causes of a drop, not a departure: the page (or a new device) may come back to the seat.
RECONNECTABLE = frozenset({"disconnected", "stopped_reading", "media_lost"})


@value
class VisitInfo:
    id: str
    starts_at: int
    ends_at: int
    privileged: bool


class RoomObserver(Protocol):
    """What the records side must hear (persistence, webhooks, audit)."""

    def visit_opened(self, room: RoomCore, now: float) -> None: ...

    def visit_started(self, room: RoomCore, at: float) -> None: ...

    def participant_joined(self, room: RoomCore, member: Member, at: float) -> None: ...

    def participant_left(self, room: RoomCore, member: Member, cause: str,
                         at: float) -> None: ...

    def participant_lost(self, room: RoomCore, member: Member, cause: str,
                         at: float) -> None: ...

    def participant_back(self, room: RoomCore, member: Member, gap_s: float,
                         at: float) -> None: ...

    def media_gap(self, room: RoomCore, member: Member, start: float, end: float) -> None: ...

    def visit_ended(self, room: RoomCore, cause: str, reason: str, at: float) -> None: ...


@dataclass
class RoomCore:
    visit: VisitInfo
    max_visitors: int
    policy: Policy = field(default_factory=Policy)
    members: dict[str, Member] = field(default_factory=dict)  # by sub
    monitors: dict[Conn, Monitor] = field(default_factory=dict)
    _feeds: set[tuple[Conn, Conn]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.roster = Roster(self.max_visitors)
        self.lifecycle = VisitLifecycle(self.visit.starts_at, self.visit.ends_at, self.policy)
        self.gaps = GapTracker(self.policy.media_gap_s)

    @property
    def recorded(self) -> bool:
        """Privileged visits are never recorded."""
        return not self.visit.privileged

    @property
    def slots(self) -> int:
        return self.roster.slots

    def describe(self, now: float) -> Message:
        return {"id": self.visit.id, "starts_at": self.visit.starts_at,
                "ends_at": self.visit.ends_at, "privileged": self.visit.privileged,
                "recorded": self.recorded, "state": self.lifecycle.state.value,
                "server_time": now}

    def member_of(self, conn: Conn) -> Member | None:
        """The member whose current connection is ``conn`` (None if replaced or gone)."""
        for member in self.members.values():
            if member.conn == conn:
                return member
        return None

    # -- participants -------------------------------------------------------------------

    def join(self, who: Identity, conn: Conn, now: float) -> list[act.Action]:
        """Seat a participant; a second connection of theirs takes over the same seat.

        Raises ``Refused`` or ``RosterError`` for a join the booking or roster refuses.
        The caller opens the peer, makes its offer, then calls ``welcome``.
        """
        self.lifecycle.check_join(now)
        admission = self.roster.admit(who)
        actions: list[act.Action] = []
        old = self.members.get(who.sub)
        member = Member(who, admission.slot, conn,
                        quality=QualityMeter(self.policy.quality, self.slots - 1))
        if admission.replaces and old is not None:
            member.muted_by_officer = old.muted_by_officer
            member.quality = old.quality
            if old.lost_at is None:
                actions += self._unseat(old, release=False)  # the new connection keeps it
                actions.append(act.Close(old.conn, "connected_elsewhere",
                                         "this visit was opened on another device"))
            else:  # back after a drop: its peer is already closed
                del self.members[who.sub]
                actions.append(act.ParticipantBack(member, now - old.lost_at, now))
        self.members[who.sub] = member
        actions.append(act.OpenPeer(conn, publish=True))
        return actions

    def welcome(self, conn: Conn, offer: Message, now: float) -> list[act.Action]:
        """The member's offer is ready: tell it about the visit, then everyone about it."""
        member = self.member_of(conn)
        if member is None:
            return []  # replaced, removed or ended while the offer was made
        member.welcomed = True
        return [
            act.Send(conn, {"type": "joined", "you": member.describe(), "visit": self.describe(now),
                        "participants": [m.describe() for m in self.members.values()
                                         if m is not member],
                        "stats_interval_s": self.policy.quality.interval_s}),
            act.Send(conn, {"type": "offer", **offer}),
            *self._broadcast({"type": "participant_joined", "participant": member.describe()},
                             skip=conn),
            act.ParticipantJoined(member, now),
        ]

    def check_answer(self, conn: Conn) -> None:
        """Raise ``RosterError`` unless ``conn`` may answer now (once, after its offer)."""
        owner = self.member_of(conn) or self.monitors.get(conn)
        if owner is None:
            raise RosterError("bad_message", "this connection is no longer in the visit")
        if owner.answered:
            raise RosterError("bad_message", "the answer was already received")

    def answered(self, conn: Conn) -> list[act.Action]:
        """The connection's answer is applied: its tracks exist, feed everyone who can."""
        self.check_answer(conn)
        actions: list[act.Action] = []
        member = self.member_of(conn)
        if member is not None:
            member.answered = True
            if self.recorded:
                actions.append(act.Record(conn, self.lifecycle.media_allowed))
            if member.muted_by_officer:
                actions.append(act.Mute(conn, True))
        else:
            self.monitors[conn].answered = True
        return actions + self._wire()

    def connected(self, conn: Conn, now: float) -> list[act.Action]:
        """The member's media connection is up (join or rejoin)."""
        member = self.member_of(conn)
        if member is None:
            return []
        try:
            events = self.lifecycle.connected(member.who.sub, now)
        except Refused:
            return []  # the visit ended meanwhile; its teardown closes this member
        return [act.RefreshPictures(conn), *self._handle(events),
                *self.media_flow(conn, True, now)]  # a new connection starts flowing

    def media_flow(self, conn: Conn, flowing: bool, at: float) -> list[act.Action]:
        """The server's own measure: the member's media stopped arriving (since ``at``)
        or came back (at ``at``). Stopped media is a ``lost`` quality, and connected time
        that does not count."""
        member = self.member_of(conn)
        if member is None or member.lost_at is not None:
            return []
        before = member.quality.level
        member.quality.media_stopped(not flowing)
        sub, actions = member.who.sub, self._quality_changed(member, before)
        if not flowing:
            self.lifecycle.media_stopped(sub, at)
            self.gaps.stopped(sub, at)
            return actions
        self.lifecycle.media_resumed(sub, at)
        gap = self.gaps.resumed(sub, at)
        return actions + ([act.MediaGap(member, gap.start, gap.end)] if gap else [])

    def report_stats(self, conn: Conn, report: Report, uplink: tuple[int, int],
                     now: float) -> list[act.Action]:
        """A page's statistics (``RosterError`` ``rate_limited`` when too frequent), with
        the server's (received, expected) packet counts of what the member publishes."""
        member = self.member_of(conn)
        if member is None:
            return []
        before = member.quality.level
        impairment = member.quality.report(report, uplink, now)
        return [impairment, *self._quality_changed(member, before)]

    def _quality_changed(self, member: Member, before: str) -> list[act.Action]:
        level = member.quality.level
        if level == before:
            return []
        return self._broadcast({"type": "quality", "participant": member.who.sub,
                                "level": level})

    def set_media(self, conn: Conn, audio: bool, video: bool) -> list[act.Action]:
        member = self.member_of(conn)
        if member is None:
            return []
        member.audio, member.video = audio, video
        return self._broadcast({"type": "participant_updated",
                                "participant": member.describe()}, skip=conn)

    def leave(self, conn: Conn, cause: str, now: float) -> list[act.Action]:
        """The connection went away or its media stopped (a drop: the seat waits for
        ``reconnect_grace_s``), or the page left (the seat is freed at once)."""
        member = self.member_of(conn)
        if member is None or member.lost_at is not None:
            return []  # replaced by a newer connection, already dropped, or visit ended
        if cause in RECONNECTABLE and self.policy.reconnect_grace_s > 0:
            return self._lose(member, cause, now)
        return self._depart(member, cause, now)

    def remove(self, sub: str, code: str, message: str, now: float) -> list[act.Action] | None:
        """Take a participant out at once (revocation); None if not present."""
        member = self.members.get(sub)
        if member is None:
            return None
        closing = [] if member.lost_at is not None else [act.Close(member.conn, code, message)]
        return closing + self._depart(member, code, now)

    def _lose(self, member: Member, cause: str, now: float) -> list[act.Action]:
        """Keep the seat, stop the member's media, and tell everyone it is reconnecting."""
        member.lost_at, member.lost_cause = now, cause
        self.gaps.stopped(member.who.sub, now)
        member.answered = False  # its peer is closed: nothing to feed, nothing fed into it
        self._feeds = {f for f in self._feeds if member.conn not in f}
        actions: list[act.Action] = [act.ClosePeer(member.conn)]
        if cause == "media_lost":  # the page may still be reading: it reconnects at once
            actions.append(act.Close(member.conn, "media_lost",
                                     "no media arrived from this device: reconnect"))
        actions += self._broadcast({"type": "participant_updated",
                                    "participant": member.describe()}, skip=member.conn)
        actions.append(act.ParticipantLost(member, cause, now))
        return actions + self._handle(self.lifecycle.disconnected(member.who.sub, now))

    def _depart(self, member: Member, cause: str, now: float) -> list[act.Action]:
        self.gaps.forget(member.who.sub)
        actions = self._unseat(member)
        actions += self._broadcast({"type": "participant_left", "id": member.who.sub,
                                    "cause": cause})
        actions.append(act.ParticipantLeft(member, cause, now))
        if member.lost_at is not None:
            return actions  # its media time already stopped counting when it dropped
        return actions + self._handle(self.lifecycle.disconnected(member.who.sub, now))

    def _unseat(self, member: Member, release: bool = True) -> list[act.Action]:
        del self.members[member.who.sub]
        if release:
            self.roster.release(member.who.sub)
        self._feeds = {f for f in self._feeds if member.conn not in f}
        return [act.ClosePeer(member.conn)]

    # -- officers -----------------------------------------------------------------------

    def monitor(self, who: Identity, conn: Conn, now: float) -> list[act.Action]:
        if self.visit.privileged:
            raise RosterError("privileged_visit", "privileged visits cannot be monitored")
        self.lifecycle.check_join(now)
        self.monitors[conn] = Monitor(who, conn)
        return [act.OpenPeer(conn, publish=False)]

    def monitor_welcome(self, conn: Conn, offer: Message, now: float) -> list[act.Action]:
        mon = self.monitors.get(conn)
        if mon is None:
            return []
        mon.welcomed = True
        return [act.Send(conn, {"type": "monitoring", "visit": self.describe(now),
                            "participants": [m.describe() for m in self.members.values()]}),
                act.Send(conn, {"type": "offer", **offer})]

    def stop_monitor(self, conn: Conn) -> list[act.Action]:
        if self.monitors.pop(conn, None) is None:
            return []
        self._feeds = {f for f in self._feeds if conn not in f}
        return [act.ClosePeer(conn)]

    def mute(self, sub: str, muted: bool) -> list[act.Action] | None:
        """An officer mutes a participant; None if not present."""
        member = self.members.get(sub)
        if member is None:
            return None
        member.muted_by_officer = muted
        return [act.Mute(member.conn, muted),
                act.Send(member.conn, {"type": "muted", "muted": muted, "by": "officer"}),
                *self._broadcast({"type": "participant_updated",
                                  "participant": member.describe()}, skip=member.conn)]

    def end(self, cause: str, reason: str, now: float) -> list[act.Action]:
        return self._handle(self.lifecycle.end(cause, now, reason))

    # -- time, recording and the media gate ---------------------------------------------

    def tick(self, now: float) -> list[act.Action]:
        actions: list[act.Action] = []
        for member, deadline in self._reconnect_deadlines():
            if now >= deadline:
                actions += self._depart(member, member.lost_cause, deadline)
        return actions + self._handle(self.lifecycle.tick(now))

    def next_deadline(self) -> float | None:
        times = [d for _, d in self._reconnect_deadlines()]
        visit = self.lifecycle.next_deadline()
        if visit is not None:
            times.append(visit)
        return min(times, default=None)

    def _reconnect_deadlines(self) -> list[tuple[Member, float]]:
        return [(m, m.lost_at + self.policy.reconnect_grace_s)
                for m in list(self.members.values()) if m.lost_at is not None]

    def tap_ready(self, conn: Conn, kind: str) -> list[act.Action]:
        """A track's recorder is writing: its subscribers need a picture to start from."""
        member = self.member_of(conn)
        if member is None:
            return []
        return [act.RequestKeyframe(conn, kind),
                *self._broadcast({"type": "recording", "participant": member.who.sub,
                                  "kind": kind, "state": "on"})]

    def recording_failed(self, reason: str, now: float) -> list[act.Action]:
        return self.end("recording_failed", f"recording failed: {reason}", now)

    def _handle(self, events: list[Event]) -> list[act.Action]:
        actions: list[act.Action] = []
        for event in events:
            if isinstance(event, MediaHeld):  # the gate as it stands after these events
                actions.append(MediaHeld(not self.lifecycle.media_allowed))
            elif isinstance(event, Started):
                actions.append(event)
                actions += self._broadcast({"type": "visit_started"})
            elif isinstance(event, EndWarning):
                actions += self._broadcast({"type": "warning", "remaining_s": event.remaining_s})
            elif isinstance(event, Ending):
                actions += self._finish(event)
        return actions

    def _finish(self, event: Ending) -> list[act.Action]:
        actions = self._broadcast({"type": "ended", "cause": event.cause,
                                   "reason": event.reason})
        said = event.reason or event.cause
        for member in list(self.members.values()):
            actions += self._unseat(member)
            actions.append(act.ParticipantLeft(member, event.cause, event.at))
            if member.lost_at is None:
                actions.append(act.Close(member.conn, "ended", said))
        for conn in list(self.monitors):
            actions += self.stop_monitor(conn)
            actions.append(act.Close(conn, "ended", said))
        self.lifecycle.finished()
        actions.append(event)
        return actions

    def _wire(self) -> list[act.Action]:
        """Feed every answered publisher into its slot of every other answered peer."""
        enabled = self.lifecycle.media_allowed
        subscribers = [m.conn for m in self.members.values() if m.answered]
        subscribers += [c for c, m in self.monitors.items() if m.answered]
        actions: list[act.Action] = []
        for publisher in self.members.values():
            if not publisher.answered:
                continue
            for sub in subscribers:
                if sub != publisher.conn and (publisher.conn, sub) not in self._feeds:
                    self._feeds.add((publisher.conn, sub))
                    actions.append(act.Feed(publisher.conn, sub, publisher.slot, enabled))
        return actions

    def _broadcast(self, message: Message, skip: Conn | None = None) -> list[act.Action]:
        targets = [m.conn for m in self.members.values() if m.welcomed and m.conn != skip]
        targets += [c for c, m in self.monitors.items() if m.welcomed]
        return [act.Send(conn, message) for conn in targets]
