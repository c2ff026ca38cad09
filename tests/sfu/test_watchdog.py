"""MediaWatch: a connected peer from which nothing arrives for the timeout is silent."""

from __future__ import annotations

from sfu.watchdog import MediaWatch, RtpIdle


def test_a_connection_that_receives_is_never_silent() -> None:
    watch = MediaWatch(5.0)
    assert not any(watch.silent("a", count, True, float(count)) for count in range(60))


def test_nothing_for_the_timeout_is_silent_once() -> None:
    watch = MediaWatch(5.0)
    assert not watch.silent("a", 10, True, 0.0)
    assert not watch.silent("a", 10, True, 4.9)
    assert watch.silent("a", 10, True, 5.0)
    assert not watch.silent("a", 10, True, 6.0)  # told once; watching starts again


def test_only_a_connected_peer_is_watched() -> None:
    watch = MediaWatch(5.0)
    assert not watch.silent("a", 0, False, 0.0)
    assert not watch.silent("a", 0, False, 30.0)  # ICE still setting up
    assert not watch.silent("a", 0, True, 30.0)  # the clock starts when it connects
    assert watch.silent("a", 0, True, 35.0)


def test_a_timeout_of_zero_turns_the_watch_off() -> None:
    watch = MediaWatch(0.0)
    assert not watch.silent("a", 0, True, 0.0) and not watch.silent("a", 0, True, 99.0)


def test_rtp_that_stops_is_reported_once_backdated_then_its_return() -> None:
    idle = RtpIdle(3.0)
    assert idle.update("a", 10, 0.0) is None
    assert idle.update("a", 50, 1.0) is None  # flowing
    assert idle.update("a", 50, 3.9) is None
    assert idle.update("a", 50, 4.0) == ("stopped", 1.0)  # from the last packet seen
    assert idle.update("a", 50, 9.0) is None  # told once
    assert idle.update("a", 51, 10.0) == ("resumed", 10.0)
    assert idle.update("a", 52, 11.0) is None


def test_a_publisher_that_never_sends_is_idle_from_when_it_was_first_watched() -> None:
    idle = RtpIdle(3.0)
    assert idle.update("a", 0, 5.0) is None
    assert idle.update("a", 0, 8.0) == ("stopped", 5.0)
    idle.forget("a")
    assert idle.update("a", 0, 20.0) is None  # a new connection is watched afresh
    assert RtpIdle(0.0).update("b", 0, 99.0) is None  # 0 turns it off
