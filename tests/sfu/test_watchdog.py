"""MediaWatch: a connected peer from which nothing arrives for the timeout is silent."""

from __future__ import annotations

from sfu.watchdog import MediaWatch


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
