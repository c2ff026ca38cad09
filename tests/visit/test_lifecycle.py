"""VisitLifecycle: the state machine of one booked visit, driven by a fake clock.

Times are plain floats. A 30-minute visit from START to END with the default policy:
waiting room opens 15 minutes early, warnings 300 s and 60 s before the end, and
``all_left`` after 120 s with nobody connected while live.
"""

from __future__ import annotations

import pytest

from visit.lifecycle import (
    END_CAUSES,
    Ending,
    EndWarning,
    MediaHeld,
    Policy,
    Refused,
    Started,
    State,
    VisitLifecycle,
)

START = 10_000.0
END = START + 1800.0
EARLY = 15 * 60.0  # Policy().early_entry_s
GRACE = 120.0  # Policy().all_left_grace_s

INMATE = "inmate-1"
MUM = "visitor-1"
SISTER = "visitor-2"
LAWYER = "visitor-3"


def visit(policy: Policy | None = None, starts_at: float = START,
          ends_at: float = END) -> VisitLifecycle:
    if policy is None:
        return VisitLifecycle(starts_at, ends_at)
    return VisitLifecycle(starts_at, ends_at, policy)


def refusal(lc: VisitLifecycle, sub: str, now: float) -> str:
    with pytest.raises(Refused) as info:
        lc.connected(sub, now)
    return info.value.code


def live_visit(*subs: str, at: float = START) -> VisitLifecycle:
    """A visit that went live at ``at`` with ``subs`` connected from then."""
    lc = visit()
    assert lc.tick(at) == [Started(at), MediaHeld(False)]
    for sub in subs:
        assert lc.connected(sub, at) == []
    return lc


# --- construction and defaults ----------------------------------------------------------


def test_defaults_match_the_product_issue() -> None:
    policy = Policy()
    assert policy.early_entry_s == EARLY
    assert policy.warnings_s == (300.0, 60.0)
    assert policy.all_left_grace_s == GRACE
    assert set(END_CAUSES) == {"slot_ended", "ended_by_officer", "cancelled",
                               "recording_failed", "all_left", "server_shutdown"}


def test_a_new_visit_is_waiting_with_no_media_and_no_cause() -> None:
    lc = visit()
    assert lc.state is State.WAITING
    assert lc.media_allowed is False
    assert lc.cause is None
    assert lc.reason == ""
    assert lc.started_at is None
    assert lc.ended_at is None
    assert lc.present() == []
    assert lc.ledger(START) == {}


@pytest.mark.parametrize("ends_at", [START, START - 1.0, START - 3600.0])
def test_a_visit_must_end_after_it_starts(ends_at: float) -> None:
    with pytest.raises(ValueError):
        VisitLifecycle(START, ends_at)


def test_states_are_plain_strings_for_the_wire() -> None:
    assert [str(s) for s in State] == ["waiting", "live", "ending", "ended"]
    assert State("live") is State.LIVE


# --- the waiting room --------------------------------------------------------------------


def test_early_arrival_inside_the_window_waits_without_media() -> None:
    lc = visit()
    arrival = START - 10 * 60
    assert lc.connected(MUM, arrival) == []
    assert lc.state is State.WAITING
    assert lc.media_allowed is False
    assert lc.present() == [MUM]
    # Time in the waiting room is not billable: nothing flows before starts_at.
    assert lc.seconds(MUM, START - 1) == 0.0
    assert lc.ledger(START - 1) == {MUM: 0.0}
    assert lc.tick(START - 1) == []
    assert lc.state is State.WAITING


def test_waiting_room_opens_exactly_early_entry_s_before_the_start() -> None:
    lc = visit()
    assert lc.connected(MUM, START - EARLY) == []
    assert lc.present() == [MUM]


def test_arriving_before_the_waiting_room_opens_is_refused_too_early() -> None:
    lc = visit()
    with pytest.raises(Refused) as info:
        lc.connected(MUM, START - EARLY - 0.001)
    assert info.value.code == "too_early"
    assert info.value.message
    assert isinstance(info.value, Exception)
    # A refused join leaves no trace.
    assert lc.present() == []
    assert lc.ledger(START) == {}
    assert lc.state is State.WAITING


def test_check_join_alone_refuses_without_changing_anything() -> None:
    lc = visit()
    with pytest.raises(Refused) as info:
        lc.check_join(START - EARLY - 60)
    assert info.value.code == "too_early"
    lc.check_join(START - EARLY)  # no exception
    lc.check_join(END - 0.001)
    with pytest.raises(Refused) as info:
        lc.check_join(END)
    assert info.value.code == "visit_ended"
    assert lc.state is State.WAITING


def test_the_early_entry_window_is_configurable() -> None:
    lc = visit(Policy(early_entry_s=60.0))
    assert refusal(lc, MUM, START - 61) == "too_early"
    assert lc.connected(MUM, START - 60) == []
    lc0 = visit(Policy(early_entry_s=0.0))
    assert refusal(lc0, MUM, START - 0.5) == "too_early"
    assert lc0.connected(MUM, START) == [Started(START), MediaHeld(False)]


def test_a_tick_in_the_waiting_room_never_warns_or_ends() -> None:
    lc = visit()
    lc.connected(MUM, START - 300)
    for t in (START - 300, START - 60, START - 0.001):
        assert lc.tick(t) == []
    assert lc.state is State.WAITING


# --- going live --------------------------------------------------------------------------


def test_start_at_starts_at_emits_started_then_media_released() -> None:
    lc = visit()
    lc.connected(MUM, START - 120)
    lc.connected(INMATE, START - 30)
    assert lc.tick(START) == [Started(START), MediaHeld(False)]
    assert lc.state is State.LIVE
    assert lc.media_allowed is True
    assert lc.started_at == START
    # The ledger starts at starts_at for both, however early they came.
    assert lc.ledger(START + 90) == {MUM: 90.0, INMATE: 90.0}
    # Started is emitted once.
    assert lc.tick(START + 1) == []


def test_the_first_join_after_the_start_time_starts_the_visit() -> None:
    lc = visit()
    assert lc.connected(MUM, START + 5) == [Started(START + 5), MediaHeld(False)]
    assert lc.state is State.LIVE
    assert lc.ledger(START + 65) == {MUM: 60.0}


def test_a_late_start_tick_opens_media_and_the_ledger_only_from_then() -> None:
    # Media is gated by the event: before MediaHeld(False) nothing flowed, so nothing is
    # billed even though the booked start has passed.
    lc = visit()
    lc.connected(MUM, START - 60)
    assert lc.tick(START + 7) == [Started(START + 7), MediaHeld(False)]
    assert lc.ledger(START + 10) == {MUM: 3.0}


def test_the_visit_is_live_without_anyone_connected() -> None:
    lc = visit()
    assert lc.tick(START) == [Started(START), MediaHeld(False)]
    assert lc.state is State.LIVE
    # Nobody ever came: no all_left (nobody left), the slot ends it.
    assert lc.tick(START + 10 * GRACE) == []
    assert lc.state is State.LIVE
    assert lc.tick(END) == [MediaHeld(True), Ending("slot_ended", "", END)]


# --- warnings ------------------------------------------------------------------------------


def test_both_warnings_once_each_in_order_with_remaining_seconds() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.tick(END - 301) == []
    assert lc.tick(END - 300) == [EndWarning(300)]
    assert lc.tick(END - 299) == []
    assert lc.tick(END - 120) == []
    assert lc.tick(END - 60) == [EndWarning(60)]
    assert lc.tick(END - 59) == []
    assert lc.tick(END - 1) == []
    assert lc.state is State.LIVE


def test_a_late_tick_warns_with_the_true_remaining_time() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.tick(END - 290.4) == [EndWarning(290)]
    assert lc.tick(END - 45) == [EndWarning(45)]


def test_a_coarse_tick_past_both_warnings_emits_both_in_order_with_the_true_remaining() -> None:
    # Decided behaviour: every configured warning reaches the pages exactly once, in order
    # (earliest first), and none claims more time than is actually left.
    lc = live_visit(INMATE, MUM)
    assert lc.tick(START + 60) == []
    assert lc.tick(END - 30) == [EndWarning(30), EndWarning(30)]
    assert lc.tick(END - 20) == []
    assert lc.tick(END - 1) == []
    assert lc.state is State.LIVE


def test_a_tick_that_jumps_past_the_end_ends_without_stale_warnings() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.tick(END - 400) == []
    assert lc.tick(END + 50) == [MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.tick(END + 60) == []


def test_warnings_reach_callers_through_joins_and_leaves_too() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.connected(SISTER, END - 300) == [EndWarning(300)]
    assert lc.disconnected(SISTER, END - 60) == [EndWarning(60)]


def test_warning_times_are_configurable_and_emitted_earliest_first() -> None:
    lc = visit(Policy(warnings_s=(30.0, 600.0, 120.0)))
    lc.tick(START)
    assert lc.tick(END - 600) == [EndWarning(600)]
    assert lc.tick(END - 120) == [EndWarning(120)]
    assert lc.tick(END - 10) == [EndWarning(10)]
    assert lc.tick(END) == [MediaHeld(True), Ending("slot_ended", "", END)]


def test_a_coarse_tick_with_custom_warnings_keeps_them_in_order() -> None:
    lc = visit(Policy(warnings_s=(30.0, 600.0, 120.0)))
    lc.tick(START)
    assert lc.tick(END - 20) == [EndWarning(20)] * 3


def test_no_warnings_configured() -> None:
    lc = visit(Policy(warnings_s=()))
    lc.tick(START)
    assert lc.tick(END - 1) == []
    assert lc.next_deadline() == END
    assert lc.tick(END) == [MediaHeld(True), Ending("slot_ended", "", END)]


def test_a_visit_shorter_than_a_warning_warns_at_the_start() -> None:
    lc = visit(ends_at=START + 200)
    assert lc.tick(START) == [Started(START), MediaHeld(False), EndWarning(200)]
    assert lc.tick(START + 140) == [EndWarning(60)]


def test_a_start_tick_that_comes_late_past_the_warnings_starts_and_warns() -> None:
    lc = visit()
    assert lc.tick(END - 50) == [Started(END - 50), MediaHeld(False),
                                 EndWarning(50), EndWarning(50)]


def test_no_warnings_after_the_visit_ended_early() -> None:
    lc = live_visit(INMATE, MUM)
    lc.end("ended_by_officer", START + 100, "conduct")
    assert lc.tick(END - 300) == []
    assert lc.tick(END - 60) == []
    assert lc.tick(END) == []


# --- the slot ends -----------------------------------------------------------------------


def test_the_slot_ends_at_ends_at_media_held_then_ending() -> None:
    lc = live_visit(INMATE, MUM)
    lc.tick(END - 300)
    lc.tick(END - 60)
    assert lc.tick(END - 0.001) == []
    assert lc.tick(END) == [MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.state is State.ENDING
    assert lc.media_allowed is False
    assert lc.cause == "slot_ended"
    assert lc.reason == ""
    assert lc.ended_at == END
    assert lc.ledger(END) == {INMATE: 1800.0, MUM: 1800.0}


def test_a_late_end_tick_ends_at_ends_at_and_bills_no_overtime() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.tick(END + 42.5) == [MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.ended_at == END
    assert lc.ledger(END + 42.5) == {INMATE: 1800.0, MUM: 1800.0}
    assert lc.ledger(END + 1000) == {INMATE: 1800.0, MUM: 1800.0}


def test_a_late_end_noticed_by_a_disconnect_bills_no_overtime() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.disconnected(MUM, END + 30) == [MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.ledger(END + 30) == {INMATE: 1800.0, MUM: 1800.0}


def test_the_ledger_never_runs_past_ends_at_before_the_tick() -> None:
    lc = live_visit(INMATE)
    assert lc.seconds(INMATE, END + 500) == 1800.0


def test_a_visit_nobody_joined_ends_from_waiting_without_media_events() -> None:
    lc = visit()
    assert lc.tick(END + 5) == [Ending("slot_ended", "", END)]
    assert lc.state is State.ENDING
    assert lc.started_at is None


def test_joining_at_or_after_ends_at_is_refused_visit_ended() -> None:
    lc = live_visit(INMATE)
    # Even before the tick that ends the slot.
    assert refusal(lc, MUM, END) == "visit_ended"
    assert refusal(lc, MUM, END + 600) == "visit_ended"
    assert lc.state is State.LIVE
    assert MUM not in lc.ledger(END)


def test_joining_after_the_visit_ended_is_refused_visit_ended() -> None:
    lc = live_visit(INMATE, MUM)
    lc.end("ended_by_officer", START + 600)
    # Inside the booked slot, but the visit is over: no rejoin.
    assert refusal(lc, MUM, START + 601) == "visit_ended"
    assert refusal(lc, SISTER, START + 700) == "visit_ended"
    lc.finished()
    assert refusal(lc, MUM, START + 800) == "visit_ended"
    assert lc.state is State.ENDED


def test_a_join_refused_as_too_early_leaves_a_late_joiner_fine() -> None:
    lc = visit()
    assert refusal(lc, MUM, START - EARLY - 1) == "too_early"
    assert lc.connected(MUM, START - EARLY + 1) == []


# --- the ledger: rejoins and late arrivals ------------------------------------------------


def test_a_rejoin_after_a_drop_inside_the_slot_excludes_the_gap() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.disconnected(MUM, START + 100) == []
    assert lc.present() == [INMATE]
    assert lc.ledger(START + 130) == {INMATE: 130.0, MUM: 100.0}
    assert lc.connected(MUM, START + 160) == []  # rejoin allowed
    assert lc.present() == [INMATE, MUM]
    assert lc.ledger(START + 200) == {INMATE: 200.0, MUM: 140.0}
    lc.tick(END)
    assert lc.ledger(END) == {INMATE: 1800.0, MUM: 1800.0 - 60.0}


def test_several_drops_add_up() -> None:
    lc = live_visit(INMATE, MUM)
    for t in (START + 100, START + 500, START + 900):
        lc.disconnected(MUM, t)
        lc.connected(MUM, t + 10)
    lc.tick(END)
    assert lc.ledger(END)[MUM] == 1800.0 - 30.0


def test_rejoin_allowed_until_just_before_ends_at_and_never_extends() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.disconnected(MUM, END - 100) == [EndWarning(100)]  # 300 s warning, late
    assert lc.connected(MUM, END - 1) == [EndWarning(1)]  # 60 s warning, late
    assert lc.present() == [INMATE, MUM]
    assert lc.tick(END) == [MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.ledger(END + 30) == {INMATE: 1800.0, MUM: 1701.0}


def test_a_duplicate_connected_keeps_the_original_connection_time() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.connected(MUM, START + 50) == []
    assert lc.ledger(START + 100) == {INMATE: 100.0, MUM: 100.0}


def test_a_late_third_visitor_is_billed_only_for_their_time() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.connected(LAWYER, START + 600) == []
    assert lc.ledger(START + 600) == {INMATE: 600.0, MUM: 600.0, LAWYER: 0.0}
    assert lc.ledger(START + 700) == {INMATE: 700.0, MUM: 700.0, LAWYER: 100.0}
    lc.tick(END)
    assert lc.ledger(END) == {INMATE: 1800.0, MUM: 1800.0, LAWYER: 1200.0}


def test_someone_who_left_the_waiting_room_before_the_start_is_billed_nothing() -> None:
    lc = visit()
    lc.connected(MUM, START - 300)
    lc.connected(INMATE, START - 200)
    lc.disconnected(MUM, START - 100)
    lc.tick(START)
    assert lc.ledger(START + 500) == {MUM: 0.0, INMATE: 500.0}


def test_a_drop_across_the_start_counts_only_connected_live_time() -> None:
    lc = visit()
    lc.connected(INMATE, START - 60)
    lc.connected(MUM, START - 60)
    lc.tick(START)
    lc.disconnected(MUM, START + 40)
    assert lc.ledger(START + 100) == {INMATE: 100.0, MUM: 40.0}


def test_unknown_participants_have_no_seconds_and_are_not_in_the_ledger() -> None:
    lc = live_visit(INMATE)
    assert lc.seconds("nobody", START + 100) == 0.0
    assert "nobody" not in lc.ledger(START + 100)
    # A stray disconnect of someone unknown changes nothing.
    assert lc.disconnected("nobody", START + 100) == []
    assert lc.ledger(START + 100) == {INMATE: 100.0}


def test_ledger_rounds_to_milliseconds() -> None:
    lc = live_visit(INMATE)
    assert lc.ledger(START + 1.23456) == {INMATE: 1.235}
    assert lc.seconds(INMATE, START + 1.23456) == pytest.approx(1.23456)


# --- the other end causes --------------------------------------------------------------


def test_cancel_in_the_waiting_room_no_media_event_and_zero_ledger() -> None:
    lc = visit()
    lc.connected(MUM, START - 600)
    lc.connected(INMATE, START - 300)
    events = lc.end("cancelled", START - 120, "lockdown")
    assert events == [Ending("cancelled", "lockdown", START - 120)]
    assert not any(isinstance(e, MediaHeld) for e in events)
    assert lc.state is State.ENDING
    assert lc.cause == "cancelled"
    assert lc.reason == "lockdown"
    assert lc.ended_at == START - 120
    assert lc.media_allowed is False
    # The start time passing does not revive a cancelled visit.
    assert lc.tick(START) == []
    assert lc.state is State.ENDING
    assert lc.started_at is None
    assert lc.ledger(END) == {MUM: 0.0, INMATE: 0.0}
    assert refusal(lc, SISTER, START - 60) == "visit_ended"


def test_ended_by_officer_with_a_reason() -> None:
    lc = live_visit(INMATE, MUM)
    events = lc.end("ended_by_officer", START + 900, "contraband shown on camera")
    assert events == [MediaHeld(True),
                      Ending("ended_by_officer", "contraband shown on camera", START + 900)]
    assert lc.cause == "ended_by_officer"
    assert lc.reason == "contraband shown on camera"
    assert lc.ended_at == START + 900
    assert lc.state is State.ENDING
    assert lc.media_allowed is False
    assert lc.ledger(START + 1000) == {INMATE: 900.0, MUM: 900.0}


def test_recording_failed_stops_media() -> None:
    lc = live_visit(INMATE, MUM)
    events = lc.end("recording_failed", START + 42, "recorder disk full")
    assert events == [MediaHeld(True), Ending("recording_failed", "recorder disk full",
                                              START + 42)]
    assert lc.cause == "recording_failed"
    assert lc.ledger(START + 100) == {INMATE: 42.0, MUM: 42.0}


def test_server_shutdown_stops_media() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.end("server_shutdown", START + 500) == [
        MediaHeld(True), Ending("server_shutdown", "", START + 500)]
    assert lc.cause == "server_shutdown"
    assert lc.reason == ""
    assert lc.ledger(END) == {INMATE: 500.0, MUM: 500.0}


@pytest.mark.parametrize("cause", ["ended_by_officer", "cancelled", "recording_failed",
                                   "server_shutdown"])
def test_every_explicit_cause_ends_a_waiting_visit_without_media_events(cause: str) -> None:
    lc = visit()
    lc.connected(MUM, START - 60)
    assert lc.end(cause, START - 10, "why") == [Ending(cause, "why", START - 10)]
    assert lc.cause == cause
    assert lc.ledger(END) == {MUM: 0.0}


@pytest.mark.parametrize("cause", END_CAUSES)
def test_every_cause_ends_a_live_visit_with_media_held_first(cause: str) -> None:
    lc = live_visit(INMATE)
    assert lc.end(cause, START + 10, "r") == [MediaHeld(True), Ending(cause, "r", START + 10)]
    assert lc.cause == cause
    assert lc.state is State.ENDING
    assert lc.ledger(START + 20) == {INMATE: 10.0}


def test_an_unknown_cause_raises_value_error_and_changes_nothing() -> None:
    lc = live_visit(INMATE)
    with pytest.raises(ValueError):
        lc.end("power_cut", START + 10)
    with pytest.raises(ValueError):
        lc.end("", START + 10)
    assert lc.state is State.LIVE
    assert lc.cause is None
    assert lc.media_allowed is True
    lc.end("server_shutdown", START + 20)
    with pytest.raises(ValueError):
        lc.end("SLOT_ENDED", START + 30)
    assert lc.cause == "server_shutdown"


def test_a_second_end_keeps_the_first_cause() -> None:
    lc = live_visit(INMATE, MUM)
    lc.end("recording_failed", START + 300, "disk full")
    assert lc.end("ended_by_officer", START + 310, "too late") == []
    assert lc.end("server_shutdown", START + 320) == []
    assert lc.tick(END) == []  # the slot ending later does not overwrite it either
    assert lc.cause == "recording_failed"
    assert lc.reason == "disk full"
    assert lc.ended_at == START + 300
    lc.finished()
    assert lc.end("cancelled", END + 10) == []
    assert lc.cause == "recording_failed"
    assert lc.ledger(END) == {INMATE: 300.0, MUM: 300.0}


def test_after_the_slot_ended_an_officer_end_keeps_slot_ended() -> None:
    lc = live_visit(INMATE)
    lc.tick(END)
    assert lc.end("ended_by_officer", END + 5, "late click") == []
    assert lc.cause == "slot_ended"
    assert lc.reason == ""


# --- all_left ----------------------------------------------------------------------------


def test_all_left_after_the_grace_with_nobody_connected() -> None:
    lc = live_visit(INMATE, MUM)
    assert lc.disconnected(MUM, START + 200) == []
    assert lc.disconnected(INMATE, START + 300) == []
    assert lc.present() == []
    assert lc.state is State.LIVE  # still live during the grace: rejoin allowed
    assert lc.next_deadline() == START + 300 + GRACE
    assert lc.tick(START + 300 + GRACE - 0.001) == []
    assert lc.tick(START + 300 + GRACE) == [
        MediaHeld(True), Ending("all_left", "", START + 300 + GRACE)]
    assert lc.cause == "all_left"
    assert lc.state is State.ENDING
    assert lc.ledger(END) == {INMATE: 300.0, MUM: 200.0}
    assert refusal(lc, MUM, START + 500) == "visit_ended"


def test_a_rejoin_within_the_grace_cancels_all_left() -> None:
    lc = live_visit(INMATE, MUM)
    lc.disconnected(MUM, START + 200)
    lc.disconnected(INMATE, START + 210)
    assert lc.connected(INMATE, START + 210 + GRACE - 1) == []
    assert lc.next_deadline() == END - 300
    assert lc.tick(START + 210 + GRACE) == []
    assert lc.tick(START + 210 + 10 * GRACE) == []
    assert lc.state is State.LIVE
    assert lc.ledger(START + 210 + GRACE + 9) == {INMATE: 220.0, MUM: 200.0}


def test_a_new_empty_spell_restarts_the_grace() -> None:
    lc = live_visit(INMATE)
    lc.disconnected(INMATE, START + 100)
    lc.connected(INMATE, START + 150)
    lc.disconnected(INMATE, START + 200)
    assert lc.tick(START + 100 + GRACE) == []
    assert lc.next_deadline() == START + 200 + GRACE
    assert lc.tick(START + 200 + GRACE) == [
        MediaHeld(True), Ending("all_left", "", START + 200 + GRACE)]


def test_one_person_leaving_is_not_all_left() -> None:
    lc = live_visit(INMATE, MUM)
    lc.disconnected(MUM, START + 100)
    assert lc.tick(START + 100 + 5 * GRACE) == []
    assert lc.state is State.LIVE


def test_a_zero_grace_ends_on_the_last_disconnect() -> None:
    lc = visit(Policy(all_left_grace_s=0.0))
    lc.tick(START)
    lc.connected(INMATE, START + 1)
    assert lc.disconnected(INMATE, START + 60) == [
        MediaHeld(True), Ending("all_left", "", START + 60)]
    assert lc.ledger(START + 60) == {INMATE: 59.0}


def test_an_empty_waiting_room_never_ends_the_visit_before_it_starts() -> None:
    lc = visit()
    lc.connected(MUM, START - 800)
    lc.disconnected(MUM, START - 700)
    assert lc.tick(START - 700 + GRACE) == []
    assert lc.tick(START - 1) == []
    assert lc.state is State.WAITING


def test_leaving_the_waiting_room_does_not_end_the_visit_at_its_start() -> None:
    lc = visit()
    lc.connected(MUM, START - 600)
    lc.disconnected(MUM, START - 300)  # e.g. the tablet dropped in the waiting room
    events = lc.tick(START)
    assert events == [Started(START), MediaHeld(False)]
    assert lc.state is State.LIVE
    # Rejoining is allowed until ends_at.
    assert lc.connected(MUM, START + 30) == []
    assert lc.ledger(START + 90) == {MUM: 60.0}


def test_the_all_left_grace_only_counts_live_time() -> None:
    lc = visit()
    lc.connected(MUM, START - 200)
    lc.disconnected(MUM, START - 60)
    assert lc.tick(START) == [Started(START), MediaHeld(False)]
    assert lc.tick(START + GRACE - 60) == []
    assert lc.state is State.LIVE
    assert lc.connected(MUM, START + GRACE - 1) == []


def test_a_join_after_the_all_left_deadline_is_refused_even_if_the_tick_is_late() -> None:
    lc = live_visit(INMATE)
    lc.disconnected(INMATE, START + 100)
    late = START + 100 + GRACE + 10  # the caller's timer did not fire at the deadline
    assert refusal(lc, MUM, late) == "visit_ended"
    assert MUM not in lc.present()
    lc.tick(late)
    assert lc.cause == "all_left"


def test_a_join_after_the_all_left_deadline_with_a_prompt_tick_is_refused() -> None:
    lc = live_visit(INMATE)
    lc.disconnected(INMATE, START + 100)
    lc.tick(START + 100 + GRACE)
    assert refusal(lc, MUM, START + 100 + GRACE + 10) == "visit_ended"


# --- late ticks must not change the cause -------------------------------------------------


def test_an_end_arriving_after_ends_at_before_the_tick_reports_slot_ended() -> None:
    lc = live_visit(INMATE, MUM)
    events = lc.end("ended_by_officer", END + 5, "late click")
    assert events == [MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.cause == "slot_ended"
    assert lc.ended_at == END


def test_all_left_before_the_end_is_reported_even_if_the_tick_comes_after_the_end() -> None:
    lc = live_visit(INMATE, MUM)
    lc.disconnected(MUM, END - 400)
    lc.disconnected(INMATE, END - 300)  # empty; all_left due at END - 180
    lc.tick(END + 10)
    assert lc.cause == "all_left"
    assert lc.ended_at is not None and lc.ended_at <= END


# --- finished ------------------------------------------------------------------------------


def test_finished_moves_ending_to_ended() -> None:
    lc = live_visit(INMATE, MUM)
    lc.tick(END)
    assert lc.state is State.ENDING
    lc.finished()
    assert lc.state is State.ENDED
    assert lc.media_allowed is False
    assert lc.cause == "slot_ended"
    assert lc.tick(END + 100) == []
    lc.finished()  # idempotent
    assert lc.state is State.ENDED
    assert lc.ledger(END + 100) == {INMATE: 1800.0, MUM: 1800.0}


@pytest.mark.parametrize("live", [False, True])
def test_finished_before_the_end_does_nothing(live: bool) -> None:
    lc = live_visit(INMATE) if live else visit()
    before = lc.state
    lc.finished()
    assert lc.state is before


def test_disconnects_while_ending_do_not_change_the_ledger() -> None:
    lc = live_visit(INMATE, MUM)
    lc.end("server_shutdown", START + 500)
    assert lc.ledger(START + 500) == {INMATE: 500.0, MUM: 500.0}
    # Connections are torn down a little later: media had already stopped.
    assert lc.disconnected(MUM, START + 503) == []
    assert lc.disconnected(INMATE, START + 504) == []
    assert lc.present() == []
    lc.finished()
    assert lc.ledger(START + 600) == {INMATE: 500.0, MUM: 500.0}
    assert lc.state is State.ENDED


def test_the_last_disconnect_while_ending_does_not_start_an_all_left() -> None:
    lc = live_visit(INMATE)
    lc.end("recording_failed", START + 50)
    assert lc.disconnected(INMATE, START + 51) == []
    assert lc.tick(START + 51 + GRACE) == []
    assert lc.cause == "recording_failed"
    assert lc.next_deadline() is None


# --- next_deadline -------------------------------------------------------------------------


def test_next_deadline_in_every_state() -> None:
    lc = visit()
    assert lc.next_deadline() == START  # waiting: the start
    lc.connected(MUM, START - 100)
    assert lc.next_deadline() == START
    lc.tick(START)
    lc.connected(INMATE, START + 1)
    assert lc.next_deadline() == END - 300  # live: the first warning
    lc.tick(END - 300)
    assert lc.next_deadline() == END - 60  # then the second
    lc.tick(END - 60)
    assert lc.next_deadline() == END  # then the end of the slot
    lc.tick(END)
    assert lc.next_deadline() is None  # ending: nothing left for the timer
    lc.finished()
    assert lc.next_deadline() is None  # ended


def test_next_deadline_includes_the_all_left_grace_when_it_comes_first() -> None:
    lc = live_visit(INMATE)
    lc.disconnected(INMATE, START + 100)
    assert lc.next_deadline() == START + 100 + GRACE
    lc.connected(INMATE, START + 150)
    assert lc.next_deadline() == END - 300


def test_next_deadline_prefers_a_warning_that_comes_before_the_grace() -> None:
    lc = live_visit(INMATE)
    lc.disconnected(INMATE, END - 310)
    assert lc.next_deadline() == END - 300
    lc.tick(END - 300)
    assert lc.next_deadline() == END - 310 + GRACE


def test_next_deadline_after_a_coarse_tick_skips_to_the_end() -> None:
    lc = live_visit(INMATE)
    lc.tick(END - 30)
    assert lc.next_deadline() == END


def test_next_deadline_after_an_early_end_is_none() -> None:
    lc = visit()
    lc.end("cancelled", START - 500)
    assert lc.next_deadline() is None


def test_driving_the_visit_by_its_own_deadlines_yields_the_full_story() -> None:
    lc = visit()
    lc.connected(MUM, START - 300)
    lc.connected(INMATE, START - 10)
    events = []
    while (deadline := lc.next_deadline()) is not None:
        events += lc.tick(deadline)
    assert events == [Started(START), MediaHeld(False), EndWarning(300), EndWarning(60),
                      MediaHeld(True), Ending("slot_ended", "", END)]
    assert lc.ledger(END) == {MUM: 1800.0, INMATE: 1800.0}
