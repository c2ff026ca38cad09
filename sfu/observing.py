"""What the records side hears of a room's actions (``visit.room.RoomObserver``), and
the metrics counted with it."""

from __future__ import annotations

import logging

from sfu import metrics
from visit import actions as act
from visit.actions import Action
from visit.lifecycle import Ending, Started
from visit.room import RoomCore, RoomObserver

log = logging.getLogger(__name__)


def observe(observer: RoomObserver, core: RoomCore, action: Action) -> bool:
    """Tell the observer about one action; True when it ended the visit."""
    if isinstance(action, Started):
        observer.visit_started(core, action.at)
    elif isinstance(action, act.ParticipantJoined):
        observer.participant_joined(core, action.member, action.at)
    elif isinstance(action, act.ParticipantLeft):
        metrics.DISCONNECTS.labels(action.cause, metrics.fault_of(action.cause)).inc()
        observer.participant_left(core, action.member, action.cause, action.at)
    elif isinstance(action, act.ParticipantLost):
        metrics.DROPS.labels(action.cause).inc()
        observer.participant_lost(core, action.member, action.cause, action.at)
    elif isinstance(action, act.ParticipantBack):
        metrics.RECONNECT_SECONDS.observe(action.gap_s)
        observer.participant_back(core, action.member, action.gap_s, action.at)
    elif isinstance(action, act.MediaGap):
        observer.media_gap(core, action.member, action.start, action.end)
    elif isinstance(action, Ending):
        log.info("visit ending", extra={"visit": core.visit.id, "cause": action.cause})
        metrics.VISITS_ENDED.labels(action.cause, metrics.fault_of(action.cause)).inc()
        observer.visit_ended(core, action.cause, action.reason, action.at)
        return True
    return False
