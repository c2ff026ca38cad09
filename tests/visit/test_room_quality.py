"""RoomCore and connection quality: every page hears a level change once, and media that
stops reaching the server makes a participant ``lost``, stops their connected time, and
is one audited gap when it flows again, however the server saw the outage."""

from __future__ import annotations

from visit.actions import Action, MediaGap, ParticipantBack, Send
from visit.lifecycle import Policy
from visit.quality import Impairment, Report
from visit.room import RoomCore, VisitInfo
from visit.roster import Identity

START = 70_000.0
INMATE = Identity("inmate-1", "Jordan", "inmate")
MUM = Identity("family-1", "Casey", "family")
SLOW = Report(rtt_s=0.9)


def quality_messages(actions: list[Action]) -> list[tuple[object, str, str]]:
    return [(a.conn, a.message["participant"], a.message["level"]) for a in actions
            if isinstance(a, Send) and a.message["type"] == "quality"]


def visit_of_two() -> RoomCore:
    core = RoomCore(VisitInfo("v-q", int(START), int(START) + 1800, False), 4, Policy())
    for who, conn in ((INMATE, "a"), (MUM, "b")):
        core.join(who, conn, START)
        core.welcome(conn, {"sdp": "v=0"}, START)
        core.answered(conn)
        core.connected(conn, START)
    core.tick(START)
    return core


def test_a_weak_report_is_told_to_everyone_once_with_the_impairment() -> None:
    core = visit_of_two()
    actions = core.report_stats("b", SLOW, (0, 0), START + 5)
    assert quality_messages(actions) == [("a", MUM.sub, "weak"), ("b", MUM.sub, "weak")]
    assert [a for a in actions if isinstance(a, Impairment)] == [Impairment()]
    assert quality_messages(core.report_stats("b", SLOW, (0, 0), START + 10)) == []
    assert core.members[MUM.sub].describe()["quality"] == "weak"


def test_media_that_stops_is_lost_for_everyone_and_stops_the_ledger() -> None:
    core = visit_of_two()
    actions = core.media_flow("b", False, START + 40)
    assert quality_messages(actions) == [("a", MUM.sub, "lost"), ("b", MUM.sub, "lost")]
    assert core.lifecycle.ledger(START + 100)[MUM.sub] == 40.0
    back = core.media_flow("b", True, START + 100)
    assert quality_messages(back) == [("a", MUM.sub, "good"), ("b", MUM.sub, "good")]
    assert core.lifecycle.ledger(START + 130) == {INMATE.sub: 130.0, MUM.sub: 70.0}


def test_a_rejoin_keeps_the_meter_and_its_new_connection_counts_again() -> None:
    core = visit_of_two()
    core.report_stats("b", SLOW, (0, 0), START + 5)
    core.media_flow("b", False, START + 40)
    core.join(MUM, "b2", START + 50)  # a second device takes over the seat
    core.welcome("b2", {"sdp": "v=0"}, START + 50)
    core.answered("b2")
    actions = core.connected("b2", START + 60)
    assert ("a", MUM.sub, "weak") in quality_messages(actions)
    assert core.lifecycle.ledger(START + 100)[MUM.sub] == 80.0


def rejoin(core: RoomCore, conn: str, now: float) -> list[Action]:
    actions = core.join(MUM, conn, now)
    actions += core.welcome(conn, {"sdp": "v=0"}, now)
    actions += core.answered(conn)
    return actions + core.connected(conn, now + 1)


def gaps(actions: list[Action]) -> list[tuple[float, float]]:
    return [(a.start - START, a.end - START) for a in actions if isinstance(a, MediaGap)]


def test_media_that_stops_and_resumes_on_the_same_connection_is_one_gap() -> None:
    core = visit_of_two()
    assert gaps(core.media_flow("b", False, START + 40)) == []
    back = core.media_flow("b", True, START + 45.5)
    assert gaps(back) == [(40.0, 45.5)]
    assert [a.member.who for a in back if isinstance(a, MediaGap)] == [MUM]


def test_a_drop_by_the_watchdog_then_a_rejoin_is_one_gap_from_the_last_media() -> None:
    core = visit_of_two()
    actions = core.media_flow("b", False, START + 40)  # RTP idle, backdated
    actions += core.leave("b", "media_lost", START + 45)  # the watchdog
    actions += rejoin(core, "b2", START + 47)
    assert gaps(actions) == [(40.0, 48.0)]
    assert [a.gap_s for a in actions if isinstance(a, ParticipantBack)] == [2.0]


def test_a_rejoin_from_a_new_address_before_the_watchdog_is_one_gap() -> None:
    core = visit_of_two()
    actions = core.media_flow("b", False, START + 40)
    actions += rejoin(core, "b2", START + 44)  # the old connection still looked up
    assert gaps(actions) == [(40.0, 45.0)]
    assert gaps(core.media_flow("b2", True, START + 50)) == []  # closed once


def test_a_socket_that_blinks_or_a_departure_is_no_gap() -> None:
    core = visit_of_two()
    actions = core.leave("b", "disconnected", START + 40)
    actions += rejoin(core, "b2", START + 40.5)
    assert gaps(actions) == [] and any(isinstance(a, ParticipantBack) for a in actions)
    core.media_flow("b2", False, START + 60)
    core.leave("b2", "left", START + 70)
    assert gaps(rejoin(core, "b3", START + 80)) == []  # a new visit of theirs, not a gap
