"""The life of one booked visit, as a plain state machine (no I/O, clock passed in).

waiting -> live -> ending -> ended. The booking, not the connections, decides: media may
flow only while live, which starts at ``starts_at`` and stops at ``ends_at`` at the
latest. People may wait in the waiting room up to ``early_entry_s`` before the start,
and may rejoin at any time until the end; reconnecting never extends a visit.

Every method returns the events the caller must act on (tell the pages, send webhooks,
stop media). The connected-time ledger counts, per participant, only seconds in which
they were connected while media was allowed to flow and theirs reached the server
(``media_stopped`` pauses it, from when their media stopped until it resumes): what a
fair bill or refund needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from visit.messages import Refusal
from visit.quality import QualityPolicy
from visit.value import value

END_CAUSES = ("slot_ended", "ended_by_officer", "cancelled", "recording_failed", "all_left",
              "server_shutdown")


class State(StrEnum):
    WAITING = "waiting"
    LIVE = "live"
    ENDING = "ending"
    ENDED = "ended"


class Refused(Refusal):
    """A join the booking does not allow (too early, ended, cancelled, revoked)."""


@value
class Policy:
    early_entry_s: float = 15 * 60
    warnings_s: tuple[float, ...] = (300.0, 60.0)
    all_left_grace_s: float = 120.0
    reconnect_grace_s: float = 60.0  # a dropped participant's seat is kept this long
    media_gap_s: float = 3.0  # media stopped at least this long is audited as a gap
    quality: QualityPolicy = field(default_factory=QualityPolicy)  # the tiles' indicator


@value
class Started:
    at: float


@value
class EndWarning:
    remaining_s: int


@value
class Ending:
    cause: str
    reason: str
    at: float


@value
class MediaHeld:
    """The media gate changed: ``held`` True stops forwarding between participants."""

    held: bool


Event = Started | EndWarning | Ending | MediaHeld


@dataclass
class _Presence:
    connected_since: float | None = None  # None: not connected now
    seconds: float = 0.0  # connected while media was allowed, closed intervals
    paused: bool = False  # connected, but their media stopped reaching the server


@dataclass
class VisitLifecycle:
    starts_at: float
    ends_at: float
    policy: Policy = field(default_factory=Policy)
    state: State = State.WAITING
    cause: str | None = None
    reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    _warned: set[float] = field(default_factory=set)
    _people: dict[str, _Presence] = field(default_factory=dict)
    _empty_since: float | None = None

    def __post_init__(self) -> None:
        if self.ends_at <= self.starts_at:
            raise ValueError("a visit must end after it starts")

    @property
    def media_allowed(self) -> bool:
        return self.state is State.LIVE

    def check_join(self, now: float) -> None:
        """Raise ``Refused`` unless someone may enter the visit now."""
        if self.state is State.ENDING or self.state is State.ENDED:
            raise Refused("visit_ended", "this visit has ended")
        if now >= self.ends_at:
            raise Refused("visit_ended", "the booked time of this visit is over")
        if now < self.starts_at - self.policy.early_entry_s:
            raise Refused("too_early", "the waiting room is not open yet",
                          {"opens_at": self.starts_at - self.policy.early_entry_s,
                           "server_time": now})
        deadline = self._all_left_at()
        if deadline is not None and now >= deadline:
            raise Refused("visit_ended", "everyone left and the visit has ended")

    def connected(self, sub: str, now: float) -> list[Event]:
        """A participant's media connection is up (join or rejoin)."""
        self.check_join(now)
        events = self.tick(now)
        p = self._people.setdefault(sub, _Presence())
        if p.connected_since is None:
            p.connected_since, p.paused = now, False
        self._empty_since = None
        return events

    def media_stopped(self, sub: str, since: float) -> None:
        """``sub`` is connected but no media of theirs has arrived since ``since``: their
        connected time stops counting there (a report of the past, so ``since`` is not
        later than now)."""
        p = self._people.get(sub)
        if p is None or p.connected_since is None or p.paused:
            return
        p.seconds += self._media_seconds(p.connected_since, since)
        p.connected_since, p.paused = max(p.connected_since, since), True

    def media_resumed(self, sub: str, now: float) -> None:
        p = self._people.get(sub)
        if p is not None and p.connected_since is not None and p.paused:
            p.connected_since, p.paused = now, False

    def disconnected(self, sub: str, now: float) -> list[Event]:
        events = self.tick(now)
        p = self._people.get(sub)
        if p is not None and p.connected_since is not None:
            if not p.paused:
                p.seconds += self._media_seconds(p.connected_since, now)
            p.connected_since, p.paused = None, False
        if self.state in (State.WAITING, State.LIVE) and not self.present():
            self._empty_since = now
            events += self.tick(now)
        return events

    def present(self) -> list[str]:
        return [s for s, p in self._people.items() if p.connected_since is not None]

    def tick(self, now: float) -> list[Event]:
        """Advance time: start, warn, and end at the booked times."""
        events: list[Event] = []
        if self.state is State.WAITING and now >= self.starts_at and now < self.ends_at:
            self.state = State.LIVE
            self.started_at = now
            if self._empty_since is not None:
                self._empty_since = now  # the grace counts live time only
            events += [Started(now), MediaHeld(False)]
        if self.state is State.LIVE:
            for w in sorted(self.policy.warnings_s, reverse=True):
                if w not in self._warned and now >= self.ends_at - w:
                    self._warned.add(w)
                    if now < self.ends_at:
                        events.append(EndWarning(max(0, round(self.ends_at - now))))
        if self.state in (State.WAITING, State.LIVE):
            # Whichever deadline passed first decides the cause, even for a late tick.
            all_left = self._all_left_at()
            if all_left is not None and now >= all_left and all_left < self.ends_at:
                events += self.end("all_left", all_left)
            elif now >= self.ends_at:
                events += self._end(State.ENDING, "slot_ended", self.ends_at, "")
        return events

    def _all_left_at(self) -> float | None:
        if self.state is not State.LIVE or self._empty_since is None:
            return None
        return self._empty_since + self.policy.all_left_grace_s

    def end(self, cause: str, now: float, reason: str = "") -> list[Event]:
        """End the visit for ``cause``; a second end keeps the first cause.

        A slot end that is already due wins over a later cause (a late timer must not
        change what the bill and the pages say).
        """
        if cause not in END_CAUSES:
            raise ValueError(f"unknown end cause {cause!r}")
        if self.state in (State.ENDING, State.ENDED):
            return []
        if now >= self.ends_at:
            return self._end(State.ENDING, "slot_ended", self.ends_at, "")
        return self._end(State.ENDING, cause, now, reason)

    def _end(self, state: State, cause: str, at: float, reason: str) -> list[Event]:
        was_live = self.state is State.LIVE
        for p in self._people.values():
            if p.connected_since is not None and not p.paused:
                p.seconds += self._media_seconds(p.connected_since, at)
                p.connected_since = max(at, p.connected_since)  # media stopped at ``at``
        self.state = state
        self.cause, self.reason, self.ended_at = cause, reason, at
        return ([MediaHeld(True)] if was_live else []) + [Ending(cause, reason, at)]

    def finished(self) -> None:
        """Every connection is closed: the visit is over for good."""
        if self.state is State.ENDING:
            self.state = State.ENDED

    def seconds(self, sub: str, now: float) -> float:
        """Seconds ``sub`` was connected while media flowed, up to ``now``."""
        p = self._people.get(sub)
        if p is None:
            return 0.0
        live = p.connected_since is not None and not p.paused and self.state is State.LIVE
        return p.seconds + (self._media_seconds(p.connected_since, now) if live else 0.0)

    def ledger(self, now: float) -> dict[str, float]:
        return {sub: round(self.seconds(sub, now), 3) for sub in self._people}

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (the caller's timer)."""
        if self.state is State.WAITING:
            return self.starts_at
        if self.state is not State.LIVE:
            return None
        times = [self.ends_at - w for w in self.policy.warnings_s if w not in self._warned]
        times.append(self.ends_at)
        if self._empty_since is not None:
            times.append(self._empty_since + self.policy.all_left_grace_s)
        return min(times)

    def _media_seconds(self, since: float, now: float) -> float:
        """Part of [since, now] in which media was allowed."""
        if self.started_at is None:
            return 0.0
        start = max(since, self.started_at)
        end = min(now, self.ended_at if self.ended_at is not None else now, self.ends_at)
        return max(0.0, end - start)
