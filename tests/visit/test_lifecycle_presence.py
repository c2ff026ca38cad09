"""VisitLifecycle and who is connected: the connected-time ledger (drops, rejoins, late
arrivals) and ``all_left`` when everyone has gone."""

from __future__ import annotations

import pytest

from tests.support.lifecycle import (
    END,
    GRACE,
    INMATE,
    LAWYER,
    MUM,
    START,
    live_visit,
    refusal,
    visit,
)
from visit.lifecycle import Ending, EndWarning, MediaHeld, Policy, Started, State

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


def test_the_last_disconnect_while_ending_does_not_start_an_all_left() -> None:
    lc = live_visit(INMATE)
    lc.end("recording_failed", START + 50)
    assert lc.disconnected(INMATE, START + 51) == []
    assert lc.tick(START + 51 + GRACE) == []
    assert lc.cause == "recording_failed"
    assert lc.next_deadline() is None


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
