"""The media gap tracker: one gap per outage, however many ways the server saw it."""

from visit.gaps import Gap, GapTracker


def test_a_stop_then_a_resume_is_one_gap_from_the_last_media_to_the_first() -> None:
    gaps = GapTracker(3)
    gaps.stopped("sam", 100.0)
    assert gaps.resumed("sam", 105.5) == Gap(100.0, 105.5)
    assert Gap(100.0, 105.5).seconds == 5.5
    assert gaps.resumed("sam", 110.0) is None  # closed once


def test_every_report_of_the_same_outage_keeps_the_earliest_start() -> None:
    gaps = GapTracker(3)
    gaps.stopped("sam", 100.0)  # RTP idle, backdated to the last packet
    gaps.stopped("sam", 105.0)  # then the watchdog dropped the connection
    assert gaps.resumed("sam", 107.0) == Gap(100.0, 107.0)
    gaps.stopped("sam", 120.0)
    gaps.stopped("sam", 119.0)  # a report that reaches further back wins
    assert gaps.resumed("sam", 125.0) == Gap(119.0, 125.0)


def test_a_resume_without_a_stop_or_shorter_than_the_minimum_is_no_gap() -> None:
    gaps = GapTracker(3)
    assert gaps.resumed("sam", 100.0) is None  # a first connection starts flowing
    gaps.stopped("sam", 100.0)
    assert gaps.resumed("sam", 102.9) is None  # a blink
    gaps.stopped("sam", 110.0)
    assert gaps.resumed("sam", 113.0) == Gap(110.0, 113.0)


def test_gaps_are_per_participant_and_a_departure_forgets_an_open_one() -> None:
    gaps = GapTracker(3)
    gaps.stopped("sam", 100.0)
    gaps.stopped("ina", 101.0)
    gaps.forget("sam")
    assert gaps.resumed("sam", 110.0) is None
    assert gaps.resumed("ina", 110.0) == Gap(101.0, 110.0)
