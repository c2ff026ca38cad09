"""RoomCore and connection quality: every page hears a level change once, and media that
stops reaching the server makes a participant ``lost`` and stops their connected time."""

from __future__ import annotations

from visit.actions import Action, Send
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
