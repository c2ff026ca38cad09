"""The records side of live visits: persistence, the ledger, webhooks and the audit log.

``VisitRecords`` is the SFU's ``RoomObserver``: every lifecycle fact is written to SQLite,
queued as a signed webhook for the records system, and what officers do is audited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from records.audit import AuditLog
from records.store import Store
from records.webhooks import Outbox, WebhookSender
from visit.members import Member
from visit.room import RoomCore

log = logging.getLogger(__name__)


class VisitRecords:
    def __init__(self, store: Store, audit: AuditLog, outbox: Outbox,
                 sender: WebhookSender | None,
                 on_ended: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.audit = audit
        self._outbox = outbox
        self._sender = sender
        self._on_ended = on_ended  # the recorder seals the visit's recording
        self._base_seconds: dict[tuple[str, str], float] = {}

    def _event(self, kind: str, data: dict[str, Any], now: float) -> None:
        self._outbox.add(kind, data, now)
        if self._sender is not None:
            self._sender.wake()

    # -- RoomObserver -------------------------------------------------------------------

    def visit_opened(self, room: RoomCore, now: float) -> None:
        v = room.visit
        known = self.store.visit(v.id) is not None
        self.store.save_visit(v.id, now, state="waiting", starts_at=v.starts_at,
                              ends_at=v.ends_at, privileged=v.privileged)
        if v.privileged and not known:
            self.audit.record(action="recording_skipped", actor="recorder", role="system",
                              visit=v.id, now=now,
                              reason="privileged visit: not recorded and not monitored "
                                     "by policy")

    def visit_started(self, room: RoomCore, at: float) -> None:
        self.store.save_visit(room.visit.id, at, state="live", started_at=at)
        self._event("visit.started", {"visit": room.visit.id, "started_at": at}, at)

    def participant_joined(self, room: RoomCore, member: Member, at: float) -> None:
        who = member.who
        self.store.participant_seen(room.visit.id, who.sub, who.name, who.role, at)
        self._event("participant.joined", {"visit": room.visit.id, "participant": who.sub,
                                           "role": who.role, "at": at}, at)

    def participant_left(self, room: RoomCore, member: Member, cause: str, at: float) -> None:
        seconds = self._settle(room, member.who.sub, at)
        self._event("participant.left", {"visit": room.visit.id, "participant": member.who.sub,
                                         "cause": cause, "at": at,
                                         "seconds_connected": seconds}, at)

    def participant_lost(self, room: RoomCore, member: Member, cause: str, at: float) -> None:
        who = member.who
        self.audit.record(action="connection_lost", actor=who.sub, role=who.role,
                          visit=room.visit.id, now=at, reason=cause)

    def participant_back(self, room: RoomCore, member: Member, gap_s: float,
                         at: float) -> None:
        who = member.who
        self.audit.record(action="connection_restored", actor=who.sub, role=who.role,
                          visit=room.visit.id, now=at, detail={"gap_s": round(gap_s, 3)})

    def media_gap(self, room: RoomCore, member: Member, start: float, end: float) -> None:
        who = member.who
        self.audit.record(action="media_gap", actor=who.sub, role=who.role, visit=room.visit.id,
                          now=end, detail={"start": round(start, 3), "end": round(end, 3),
                                           "gap_s": round(end - start, 3)})

    def visit_ended(self, room: RoomCore, cause: str, reason: str, at: float) -> None:
        v = room.visit
        self.store.save_visit(v.id, at, state="ended", cause=cause, reason=reason, ended_at=at)
        participants = [{"participant": p["sub"], "role": p["role"],
                         "seconds_connected": round(p["seconds"], 3)}
                        for p in self.store.participants(v.id)]
        self._event("visit.ended", {"visit": v.id, "cause": cause, "reason": reason,
                                    "ended_at": at, "participants": participants}, at)
        log.info("visit ended", extra={"visit": v.id, "cause": cause})
        if self._on_ended is not None:
            self._on_ended(v.id)

    def close_stale(self, now: float) -> list[str]:
        """At start-up: visits a dead process left open whose slot is over are ended."""
        closed = []
        for row in self.store.open_visits():
            if row.ends_at is not None and row.ends_at <= now:
                self.store.save_visit(row.id, now, state="ended", cause="server_shutdown",
                                      reason="the server stopped during the visit",
                                      ended_at=row.ends_at)
                participants = [{"participant": p["sub"], "role": p["role"],
                                 "seconds_connected": round(p["seconds"], 3)}
                                for p in self.store.participants(row.id)]
                self._event("visit.ended", {"visit": row.id, "cause": "server_shutdown",
                                            "reason": "the server stopped during the visit",
                                            "ended_at": row.ends_at,
                                            "participants": participants}, now)
                closed.append(row.id)
        return closed

    def _settle(self, room: RoomCore, sub: str, at: float) -> float:
        """Move the lifecycle's new seconds for ``sub`` into the stored ledger."""
        total = room.lifecycle.seconds(sub, at)
        key = (room.visit.id, sub)
        already = self._base_seconds.get(key, 0.0)
        self.store.add_seconds(room.visit.id, sub, total - already, at)
        self._base_seconds[key] = total
        return round(self.store_seconds(room.visit.id, sub), 3)

    def store_seconds(self, visit_id: str, sub: str) -> float:
        for p in self.store.participants(visit_id):
            if p["sub"] == sub:
                return float(p["seconds"])
        return 0.0

    # -- queries ------------------------------------------------------------------------

    def describe(self, visit_id: str, room: RoomCore | None) -> dict[str, Any] | None:
        row = self.store.visit(visit_id)
        if row is None:
            return None
        now = time.time()
        present = set(room.members) if room is not None else set()
        participants = []
        for p in self.store.participants(visit_id):
            seconds = float(p["seconds"])
            if room is not None:
                key = (visit_id, p["sub"])
                seconds += room.lifecycle.seconds(p["sub"], now) - self._base_seconds.get(key, 0)
            participants.append({"id": p["sub"], "name": p["name"], "role": p["role"],
                                 "connected": p["sub"] in present,
                                 "seconds_connected": round(seconds, 3)})
        return {"id": row.id, "state": row.state, "cause": row.cause, "reason": row.reason,
                "starts_at": row.starts_at, "ends_at": row.ends_at,
                "privileged": row.privileged, "started_at": row.started_at,
                "ended_at": row.ended_at, "participants": participants}
