"""RoomCore: every transition of a visit's room, as actions, with a fake clock.

No sockets and no peers: connections are plain strings, and each test reads the
actions the core asks for (what a page is sent, which connection closes, which
publisher feeds which slot, when the media gate opens) as a user of the shell would.
"""

from __future__ import annotations

from typing import Any

import pytest

from visit.actions import (
    Action,
    Close,
    ClosePeer,
    Feed,
    Mute,
    OpenPeer,
    ParticipantBack,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantLost,
    Record,
    RefreshPictures,
    RequestKeyframe,
    Send,
)
from visit.lifecycle import Ending, MediaHeld, Policy, Refused, Started
from visit.room import RoomCore, VisitInfo
from visit.roster import Identity, RosterError

START = 50_000.0
END = START + 1800.0
OFFER = {"sdp": "v=0", "slots": []}

INMATE = Identity("inmate-1", "Jordan", "inmate")
MUM = Identity("family-1", "Casey", "family")
SISTER = Identity("family-2", "Robin", "family")
OFFICER = Identity("officer-1", "Officer Lee", "officer")


def room(privileged: bool = False, max_visitors: int = 4) -> RoomCore:
    return RoomCore(VisitInfo("v-1", int(START), int(END), privileged), max_visitors,
                    Policy())


def sent(actions: list[Action], conn: str) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, Send) and a.conn == conn]


def types(actions: list[Action], conn: str) -> list[str]:
    return [m["type"] for m in sent(actions, conn)]


def of(actions: list[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def seat(core: RoomCore, who: Identity, conn: str, now: float) -> list[Action]:
    """Join, welcome, answer and connect: a participant fully in the visit."""
    actions = core.join(who, conn, now)
    actions += core.welcome(conn, OFFER, now)
    actions += core.answered(conn)
    actions += core.connected(conn, now)
    return actions


def live_pair(now: float = START) -> tuple[RoomCore, list[Action]]:
    core = room()
    actions = seat(core, INMATE, "a", now)
    actions += seat(core, MUM, "b", now)
    return core, actions


# -- joining ---------------------------------------------------------------------------------


def test_join_opens_a_publishing_peer_and_welcome_sends_joined_then_offer() -> None:
    core = room()
    assert core.join(INMATE, "a", START - 60) == [OpenPeer("a", publish=True)]
    actions = core.welcome("a", OFFER, START - 60)
    assert types(actions, "a") == ["joined", "offer"]
    joined = sent(actions, "a")[0]
    assert joined["you"]["slot"] == 0 and joined["participants"] == []
    assert joined["visit"]["state"] == "waiting" and joined["visit"]["recorded"] is True
    assert sent(actions, "a")[1] == {"type": "offer", **OFFER}
    assert of(actions, ParticipantJoined)[0].member.who == INMATE


def test_others_hear_of_a_join_only_once_welcomed() -> None:
    core = room()
    seat(core, INMATE, "a", START - 60)
    assert core.join(MUM, "b", START - 60) == [OpenPeer("b", publish=True)]
    actions = core.welcome("b", OFFER, START - 60)
    assert types(actions, "a") == ["participant_joined"]
    assert sent(actions, "a")[0]["participant"]["id"] == MUM.sub
    assert [p["id"] for p in sent(actions, "b")[0]["participants"]] == [INMATE.sub]


def test_join_refused_by_the_booking_or_the_roster_changes_nothing() -> None:
    core = room(max_visitors=1)
    with pytest.raises(Refused) as early:
        core.join(INMATE, "a", START - 16 * 60)
    assert early.value.code == "too_early"
    seat(core, INMATE, "a", START)
    seat(core, MUM, "b", START)
    with pytest.raises(RosterError) as full:
        core.join(SISTER, "c", START)
    assert full.value.code == "visit_full"
    with pytest.raises(RosterError) as role:
        core.join(OFFICER, "d", START)
    assert role.value.code == "wrong_role"
    assert set(core.members) == {INMATE.sub, MUM.sub}
    with pytest.raises(Refused) as late:
        core.join(SISTER, "e", END)
    assert late.value.code == "visit_ended"


def test_a_second_device_takes_over_the_seat_and_the_first_is_closed() -> None:
    core, _ = live_pair()
    actions = core.join(MUM, "b2", START + 10)
    assert actions == [ClosePeer("b"), Close("b", "connected_elsewhere",
                                             "this visit was opened on another device"),
                       OpenPeer("b2", publish=True)]
    assert core.members[MUM.sub].slot == 1 and core.members[MUM.sub].conn == "b2"
    assert core.leave("b", "disconnected", START + 11) == []  # the old socket's goodbye
    assert core.welcome("b", OFFER, START + 11) == []
    assert types(core.welcome("b2", OFFER, START + 11), "a") == ["participant_joined"]


def test_a_seat_lost_while_the_offer_was_made_is_not_welcomed() -> None:
    core = room()
    core.join(INMATE, "a", START)
    core.end("ended_by_officer", "", START + 1)
    assert core.welcome("a", OFFER, START + 1) == []


# -- answers and wiring ----------------------------------------------------------------------


def test_answers_feed_every_publisher_into_its_slot_of_every_other_peer() -> None:
    core = room()
    a = core.join(INMATE, "a", START - 60) + core.welcome("a", OFFER, START - 60)
    a += core.answered("a")
    assert of(a, Feed) == []  # alone: nobody to feed
    assert of(a, Record) == [Record("a", live=False)]  # recorded, gate still closed
    b = core.join(MUM, "b", START - 30) + core.welcome("b", OFFER, START - 30)
    b += core.answered("b")
    assert sorted(of(b, Feed), key=lambda f: f.publisher) == [
        Feed("a", "b", 0, enabled=False), Feed("b", "a", 1, enabled=False)]
    with pytest.raises(RosterError):
        core.answered("b")  # a second answer is refused
    with pytest.raises(RosterError):
        core.check_answer("nobody")


def test_feeds_are_made_once_and_renewed_for_a_new_connection() -> None:
    core, _ = live_pair()
    c = core.join(SISTER, "c", START) + core.welcome("c", OFFER, START) + core.answered("c")
    feeds = {(f.publisher, f.subscriber, f.slot) for f in of(c, Feed)}
    assert feeds == {("a", "c", 0), ("b", "c", 1), ("c", "a", 2), ("c", "b", 2)}
    assert all(f.enabled for f in of(c, Feed))  # live: media flows at once
    again = core.join(MUM, "b2", START + 5) + core.welcome("b2", OFFER, START + 5)
    again += core.answered("b2")
    feeds = {(f.publisher, f.subscriber, f.slot) for f in of(again, Feed)}
    assert feeds == {("a", "b2", 0), ("c", "b2", 2), ("b2", "a", 1), ("b2", "c", 1)}


def test_privileged_visits_start_no_recorder_and_admit_no_monitor() -> None:
    core = room(privileged=True)
    actions = seat(core, INMATE, "a", START)
    assert of(actions, Record) == [] and core.recorded is False
    with pytest.raises(RosterError) as refused:
        core.monitor(OFFICER, "o", START)
    assert refused.value.code == "privileged_visit"


def test_monitor_receives_every_slot_silently() -> None:
    core, _ = live_pair()
    assert core.monitor(OFFICER, "o", START + 1) == [OpenPeer("o", publish=False)]
    welcome = core.monitor_welcome("o", OFFER, START + 1)
    assert types(welcome, "o") == ["monitoring", "offer"]
    assert types(welcome, "a") == types(welcome, "b") == []  # never announced
    feeds = {(f.publisher, f.subscriber, f.slot) for f in of(core.answered("o"), Feed)}
    assert feeds == {("a", "o", 0), ("b", "o", 1)}
    assert core.stop_monitor("o") == [ClosePeer("o")]
    assert core.stop_monitor("o") == []


# -- time: the media gate, warnings and the end ----------------------------------------------


def test_the_gate_opens_at_the_booked_start_and_everyone_hears_it() -> None:
    core = room()
    seat(core, INMATE, "a", START - 60)
    seat(core, MUM, "b", START - 60)
    assert core.tick(START - 1) == []
    actions = core.tick(START)
    assert of(actions, MediaHeld) == [MediaHeld(False)]
    assert of(actions, Started) == [Started(START)]
    assert types(actions, "a") == types(actions, "b") == ["visit_started"]
    assert core.next_deadline() == END - 300


def test_warnings_then_slot_end_close_everyone_and_end_the_visit() -> None:
    core, _ = live_pair()
    core.monitor(OFFICER, "o", START)
    core.monitor_welcome("o", OFFER, START)
    warn = core.tick(END - 300)
    assert sent(warn, "a") == [{"type": "warning", "remaining_s": 300}]
    assert sent(core.tick(END - 60), "b") == [{"type": "warning", "remaining_s": 60}]
    end = core.tick(END + 0.4)
    assert of(end, MediaHeld) == [MediaHeld(True)]
    assert sent(end, "a") == [{"type": "ended", "cause": "slot_ended", "reason": ""}]
    assert {a.conn for a in of(end, Close)} == {"a", "b", "o"}
    assert all(a.code == "ended" for a in of(end, Close))
    assert {a.conn for a in of(end, ClosePeer)} == {"a", "b", "o"}
    assert [(p.member.who.sub, p.cause, p.at) for p in of(end, ParticipantLeft)] == [
        (INMATE.sub, "slot_ended", END), (MUM.sub, "slot_ended", END)]
    assert of(end, Ending) == [Ending("slot_ended", "", END)]
    assert core.members == {} and core.monitors == {}
    assert core.tick(END + 5) == []
    assert core.end("ended_by_officer", "late", END + 6) == []  # the first cause stays


def test_officer_end_and_cancel_say_the_reason() -> None:
    core, _ = live_pair()
    end = core.end("ended_by_officer", "visitor broke the rules", START + 100)
    assert sent(end, "b") == [{"type": "ended", "cause": "ended_by_officer",
                               "reason": "visitor broke the rules"}]
    assert Close("b", "ended", "visitor broke the rules") in end
    assert of(end, Ending) == [Ending("ended_by_officer", "visitor broke the rules",
                                              START + 100)]


def test_everyone_leaving_ends_the_visit_after_the_grace() -> None:
    core, _ = live_pair()
    left = core.leave("a", "left", START + 10)
    assert sent(left, "b") == [{"type": "participant_left", "id": INMATE.sub, "cause": "left"}]
    assert ClosePeer("a") in left
    core.leave("b", "left", START + 20)
    assert core.next_deadline() == START + 20 + Policy().all_left_grace_s
    assert core.tick(START + 139) == []
    assert of(core.tick(START + 140), Ending) == [Ending("all_left", "", START + 140)]


def test_rejoin_keeps_the_slot_and_the_grace_is_cancelled() -> None:
    core, _ = live_pair()
    core.leave("b", "disconnected", START + 10)
    core.leave("a", "disconnected", START + 11)
    actions = seat(core, MUM, "b2", START + 60)
    assert core.members[MUM.sub].slot == 1
    assert RefreshPictures("b2") in actions
    assert ParticipantBack(core.members[MUM.sub], 50.0, START + 60) in actions
    assert of(core.tick(START + 300), Ending) == []  # nobody-left grace no longer runs


def test_a_dropped_connection_keeps_the_seat_and_others_see_reconnecting() -> None:
    core, _ = live_pair()
    dropped = core.leave("b", "disconnected", START + 10)
    assert ClosePeer("b") in dropped
    assert not of(dropped, Close)  # the socket is already gone
    assert sent(dropped, "a") == [{"type": "participant_updated", "participant": {
        **core.members[MUM.sub].describe(), "reconnecting": True}}]
    assert of(dropped, ParticipantLost) == [ParticipantLost(core.members[MUM.sub],
                                                            "disconnected", START + 10)]
    assert core.members[MUM.sub].slot == 1
    assert core.leave("b", "disconnected", START + 11) == []  # counted once
    back = seat(core, MUM, "b2", START + 14)
    assert not of(back, Close) and of(back, ParticipantBack)[0].gap_s == 4.0
    assert Feed("a", "b2", 0, True) in back and Feed("b2", "a", 1, True) in back
    assert sent(back, "a")[0]["type"] == "participant_joined"


def test_media_that_stops_closes_the_page_so_it_reconnects() -> None:
    core, _ = live_pair()
    lost = core.leave("b", "media_lost", START + 10)
    assert Close("b", "media_lost", "no media arrived from this device: reconnect") in lost
    assert ClosePeer("b") in lost


def test_a_participant_not_back_within_the_grace_has_left() -> None:
    core, _ = live_pair()
    core.leave("b", "disconnected", START + 10)
    deadline = START + 10 + Policy().reconnect_grace_s
    assert core.next_deadline() == deadline
    assert core.tick(deadline - 1) == []
    gone = core.tick(deadline)
    assert sent(gone, "a") == [{"type": "participant_left", "id": MUM.sub,
                                "cause": "disconnected"}]
    assert of(gone, ParticipantLeft)[0].at == deadline
    assert MUM.sub not in core.members


def test_leaving_on_purpose_or_revocation_frees_the_seat_at_once() -> None:
    core, _ = live_pair()
    assert of(core.leave("b", "left", START + 10), ParticipantLeft)
    assert MUM.sub not in core.members
    core.leave("a", "disconnected", START + 11)
    removed = core.remove(INMATE.sub, "revoked", "withdrawn", START + 12)
    assert removed is not None and not of(removed, Close)  # its socket is already gone
    assert of(removed, ParticipantLeft)[0].cause == "revoked"


def test_a_subscriber_that_connects_asks_its_publishers_for_a_picture() -> None:
    core = room()
    core.join(INMATE, "a", START)
    assert core.connected("a", START) == [RefreshPictures("a"), Started(START),
                                          MediaHeld(False)]
    assert core.connected("gone", START) == []


# -- officers and the records system -----------------------------------------------------------


def test_revocation_closes_the_participant_and_tells_the_others() -> None:
    core, _ = live_pair()
    actions = core.remove(MUM.sub, "revoked", "access withdrawn", START + 30)
    assert actions is not None
    assert actions[0] == Close("b", "revoked", "access withdrawn")
    assert sent(actions, "a") == [{"type": "participant_left", "id": MUM.sub,
                                   "cause": "revoked"}]
    assert [p.cause for p in of(actions, ParticipantLeft)] == ["revoked"]
    assert core.remove(MUM.sub, "revoked", "again", START + 31) is None
    seat(core, MUM, "b2", START + 40)  # the roster freed the seat
    assert core.members[MUM.sub].slot == 1


def test_officer_mute_stops_audio_and_survives_a_rejoin() -> None:
    core, _ = live_pair()
    actions = core.mute(MUM.sub, True)
    assert actions is not None and Mute("b", True) in actions
    assert sent(actions, "b") == [{"type": "muted", "muted": True, "by": "officer"}]
    updated = sent(actions, "a")[0]["participant"]
    assert (updated["audio"], updated["muted_by_officer"]) == (False, True)
    assert core.mute("nobody", True) is None
    # A reload or a second device does not lift an officer's mute.
    assert Mute("b2", True) in seat(core, MUM, "b2", START + 5)


def test_media_state_is_announced_to_the_others_only() -> None:
    core, _ = live_pair()
    actions = core.set_media("b", audio=True, video=False)
    assert types(actions, "a") == ["participant_updated"] and types(actions, "b") == []
    assert sent(actions, "a")[0]["participant"]["video"] is False
    assert core.set_media("gone", True, True) == []


# -- recording ---------------------------------------------------------------------------------


def test_a_ready_recorder_asks_for_a_keyframe_and_everyone_sees_recording_on() -> None:
    core, _ = live_pair()
    actions = core.tap_ready("b", "video")
    assert actions[0] == RequestKeyframe("b", "video")
    assert sent(actions, "a") == sent(actions, "b") == [
        {"type": "recording", "participant": MUM.sub, "kind": "video", "state": "on"}]
    assert core.tap_ready("gone", "video") == []


def test_a_recording_failure_ends_the_visit_for_everyone() -> None:
    core, _ = live_pair()
    actions = core.recording_failed("disk full", START + 50)
    assert of(actions, Ending) == [Ending("recording_failed",
                                                  "recording failed: disk full", START + 50)]
    assert {a.conn for a in of(actions, Close)} == {"a", "b"}
