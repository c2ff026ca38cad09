"""VisitLifecycle's clock: the end warnings, late or coarse ticks, and next_deadline."""

from __future__ import annotations

from tests.support.lifecycle import END, GRACE, INMATE, MUM, SISTER, START, live_visit, visit
from visit.lifecycle import Ending, EndWarning, MediaHeld, Policy, Started, State

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
