"""QualityMeter and the stats message: what a page may report, and the level its tile shows."""

from __future__ import annotations

import json

import pytest

from visit.quality import MAX_STATS_BYTES, QualityMeter, QualityPolicy, Report, parse_report
from visit.roster import RosterError

POLICY = QualityPolicy(interval_s=5.0)


def report(lost: int = 0, received: int = 0, rtt: float | None = 0.05, jitter: float = 0.01,
           frozen: float = 0.0, concealed: int = 0) -> Report:
    return Report(audio_concealed_samples=concealed, packets_lost=lost,
                  packets_received=received, rtt_s=rtt, jitter_s=jitter, video_frozen_s=frozen)


def feed(meter: QualityMeter, reports: list[Report], start: float = 0.0) -> list[str]:
    """The level after each report, one report every interval."""
    levels = []
    for i, r in enumerate(reports):
        meter.report(r, (0, 0), start + i * POLICY.interval_s)
        levels.append(meter.level)
    return levels


def refused(message: object, size: int | None = None) -> str:
    text = json.dumps(message)
    with pytest.raises(RosterError) as info:
        parse_report(message, len(text) if size is None else size)  # type: ignore[arg-type]
    return info.value.code


def test_a_page_message_is_checked_field_by_field_and_clamped() -> None:
    got = parse_report({"type": "stats", "packets_lost": -5, "packets_received": 1e300,
                        "rtt_s": 1e9, "jitter_s": 0.02, "unknown": "ignored"}, 100)
    assert got.packets_lost == 0 and got.packets_received == 2**53
    assert got.rtt_s == 60.0 and got.jitter_s == 0.02 and got.video_frozen_s == 0.0
    assert parse_report({"type": "stats", "rtt_s": None}, 30).rtt_s is None
    assert refused({"type": "stats", "packets_lost": "12"}) == "bad_message"
    assert refused({"type": "stats", "jitter_s": True}) == "bad_message"
    assert refused({"type": "stats", "rtt_s": [1]}) == "bad_message"
    assert refused({"type": "stats"}, MAX_STATS_BYTES + 1) == "bad_message"


def test_loss_makes_a_tile_weak_at_once_and_good_only_after_two_good_reports() -> None:
    meter = QualityMeter(POLICY, streams=1)
    levels = feed(meter, [report(0, 0), report(0, 500), report(100, 900), report(100, 1400),
                          report(130, 1800), report(130, 2300), report(130, 2800)])
    # 20% lost, then none, then 7% (between the thresholds: no good streak), then good twice.
    assert levels == ["good", "good", "weak", "weak", "weak", "weak", "good"]


def test_round_trip_or_jitter_alone_makes_a_tile_weak() -> None:
    assert feed(QualityMeter(POLICY, 1), [report(rtt=0.5)]) == ["weak"]
    assert feed(QualityMeter(POLICY, 1), [report(jitter=0.08)]) == ["weak"]
    assert feed(QualityMeter(POLICY, 1), [report(rtt=None)]) == ["good"]


def test_a_few_packets_say_nothing_about_loss() -> None:
    meter = QualityMeter(POLICY, 1)
    assert feed(meter, [report(0, 0), report(3, 5)]) == ["good", "good"]


def test_loss_that_retransmissions_repaired_still_makes_a_tile_weak() -> None:
    meter = QualityMeter(POLICY, 1)
    meter.report(report(0, 0), (0, 0), 0.0)
    meter.report(Report(packets_lost=2, packets_received=1000, packets_nacked=80), (0, 0), 5.0)
    assert meter.level == "weak"  # 8 % of the packets NACKed, though 0.2 % stayed lost


def test_the_server_measured_uplink_loss_counts_too() -> None:
    meter = QualityMeter(POLICY, 1)
    meter.report(report(), (1000, 1000), 0.0)
    meter.report(report(), (1400, 1500), 5.0)  # 100 of the publisher's packets missing
    assert meter.level == "weak"


def test_only_the_server_says_lost_and_the_rated_level_returns_after() -> None:
    meter = QualityMeter(POLICY, 1)
    feed(meter, [report(rtt=0.5)])
    meter.media_stopped(True)
    assert meter.level == "lost"
    meter.report(report(), (0, 0), 10.0)  # a page saying all is fine changes nothing
    assert meter.level == "lost"
    meter.media_stopped(False)
    assert meter.level == "weak"


def test_reports_closer_than_half_the_interval_are_refused() -> None:
    meter = QualityMeter(POLICY, 1)
    meter.report(report(), (0, 0), 100.0)
    with pytest.raises(RosterError) as info:
        meter.report(report(rtt=0.9), (0, 0), 102.0)
    assert info.value.code == "rate_limited"
    assert meter.level == "good"  # the refused report changed nothing
    meter.report(report(), (0, 0), 102.5)


def test_impairment_is_the_clamped_delta_and_a_new_connection_is_a_new_baseline() -> None:
    meter = QualityMeter(POLICY, streams=2)
    assert meter.report(report(frozen=3.0, concealed=48_000), (0, 0), 0.0).frozen_s == 0.0
    step = meter.report(report(frozen=4.5, concealed=48_000 * 3), (0, 0), 5.0)
    assert (step.frozen_s, step.concealed_s) == (1.5, 2.0)
    # A lying page: 10 hours frozen in 5 s of two tiles counts 10 s at most.
    assert meter.report(report(frozen=36_000.0, concealed=48_000 * 3), (0, 0),
                        10.0).frozen_s == 10.0
    # The page restarted its peer connection: its counters went back to zero.
    assert meter.report(report(frozen=1.0), (0, 0), 15.0).frozen_s == 0.0
    assert meter.report(report(frozen=2.0), (0, 0), 20.0).frozen_s == 1.0
