"""VisitLifecycle until the visit is live: defaults, the waiting room, going live."""

from __future__ import annotations

import pytest

from tests.support.lifecycle import EARLY, END, GRACE, INMATE, MUM, START, refusal, visit
from visit.lifecycle import (
    END_CAUSES,
    Ending,
    MediaHeld,
    Policy,
    Refused,
    Started,
    State,
    VisitLifecycle,
)

# --- construction and defaults ----------------------------------------------------------


def test_the_default_policy_and_end_causes() -> None:
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
    # The page is told when to come back, on the server's clock.
    assert info.value.details == {"opens_at": START - EARLY, "server_time": START - EARLY - 0.001}
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


def test_a_join_refused_as_too_early_leaves_a_late_joiner_fine() -> None:
    lc = visit()
    assert refusal(lc, MUM, START - EARLY - 1) == "too_early"
    assert lc.connected(MUM, START - EARLY + 1) == []


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
