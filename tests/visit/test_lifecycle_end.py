"""VisitLifecycle's end: the slot running out, every other end cause, and finishing."""

from __future__ import annotations

import pytest

from tests.support.lifecycle import END, INMATE, MUM, SISTER, START, live_visit, refusal, visit
from visit.lifecycle import END_CAUSES, Ending, MediaHeld, State

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
