"""The ledger while a participant's media stops reaching the server: it does not count."""

from __future__ import annotations

from tests.support.lifecycle import END, INMATE, MUM, START, live_visit, visit


def test_time_without_media_is_not_counted_until_it_resumes() -> None:
    lc = live_visit(INMATE, MUM)
    lc.media_stopped(MUM, START + 100)  # reported later, backdated to the last packet
    assert lc.ledger(START + 130) == {INMATE: 130.0, MUM: 100.0}
    assert lc.present() == [INMATE, MUM]  # still in the visit: no all_left grace
    lc.media_resumed(MUM, START + 160)
    assert lc.ledger(START + 200) == {INMATE: 200.0, MUM: 140.0}


def test_a_drop_or_the_end_while_paused_adds_nothing_more() -> None:
    lc = live_visit(INMATE, MUM)
    lc.media_stopped(MUM, START + 100)
    lc.disconnected(MUM, START + 105)
    assert lc.seconds(MUM, START + 300) == 100.0
    lc.connected(MUM, START + 400)  # a rejoin counts from the rejoin
    lc.media_stopped(MUM, START + 500)
    lc.end("ended_by_officer", START + 600)
    assert lc.ledger(END) == {INMATE: 600.0, MUM: 200.0}


def test_repeated_reports_and_waiting_room_pauses_change_nothing() -> None:
    lc = live_visit(INMATE)
    lc.media_stopped(INMATE, START + 10)
    lc.media_stopped(INMATE, START + 20)  # the first stop holds
    lc.media_resumed(INMATE, START + 30)
    lc.media_resumed(INMATE, START + 40)
    assert lc.seconds(INMATE, START + 50) == 30.0
    early = visit()
    early.connected(MUM, START - 60)
    early.media_stopped(MUM, START - 30)
    early.media_resumed(MUM, START - 10)
    early.tick(START)
    assert early.seconds(MUM, START + 10) == 10.0
    lc.media_stopped("nobody", START)  # not in the visit: ignored
