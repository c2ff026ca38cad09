"""RTCP feedback decisions: keyframe request rate limiting, the folded REMB estimate and
the worst loss among an audio track's subscribers."""

from __future__ import annotations

from sfu.feedback import BitrateEstimates, KeyframeRequests, WorstLoss

CAP = 800_000


def test_a_burst_of_keyframe_requests_relays_one() -> None:
    requests = KeyframeRequests(min_interval_s=0.5)
    # Every subscriber asks at about the same moment (after a source switch).
    decisions = [requests.should_relay(t) for t in (100.0, 100.01, 100.1, 100.3, 100.49)]
    assert decisions == [True, False, False, False, False]
    assert (requests.relayed, requests.suppressed) == (1, 4)


def test_a_request_after_the_interval_is_relayed_again() -> None:
    requests = KeyframeRequests(min_interval_s=0.5)
    assert requests.should_relay(100.0)
    assert not requests.should_relay(100.4)
    # The suppressed request did not extend the window: it counts from the relayed one.
    assert requests.should_relay(100.5)
    assert not requests.should_relay(100.9)
    assert requests.should_relay(102.0)
    assert (requests.relayed, requests.suppressed) == (3, 2)


def test_without_estimates_the_target_is_the_cap() -> None:
    assert BitrateEstimates(CAP).target(now=10.0) == CAP


def test_target_is_the_lowest_fresh_estimate() -> None:
    estimates = BitrateEstimates(CAP, max_age_s=5.0)
    estimates.report("kiosk", 600_000, now=10.0)
    estimates.report("family phone", 250_000, now=10.5)
    estimates.report("family laptop", 700_000, now=11.0)
    assert estimates.target(now=12.0) == 250_000


def test_target_never_exceeds_the_cap() -> None:
    estimates = BitrateEstimates(CAP)
    estimates.report("kiosk", 5_000_000, now=10.0)
    estimates.report("laptop", 2_000_000, now=10.0)
    assert estimates.target(now=10.0) == CAP


def test_a_new_report_replaces_the_same_subscribers_old_one() -> None:
    estimates = BitrateEstimates(CAP)
    estimates.report("phone", 200_000, now=10.0)
    estimates.report("phone", 500_000, now=11.0)  # the downlink recovered
    assert estimates.target(now=11.0) == 500_000


def test_stale_estimates_are_ignored_after_max_age() -> None:
    estimates = BitrateEstimates(CAP, max_age_s=5.0)
    estimates.report("gone quiet", 150_000, now=10.0)
    estimates.report("kiosk", 600_000, now=14.0)
    assert estimates.target(now=14.0) == 150_000
    assert estimates.target(now=16.0) == 600_000
    assert estimates.target(now=20.0) == CAP


def test_forget_drops_a_subscribers_estimate() -> None:
    estimates = BitrateEstimates(CAP)
    estimates.report("phone", 150_000, now=10.0)
    estimates.report("kiosk", 600_000, now=10.0)
    estimates.forget("phone")
    assert estimates.target(now=10.0) == 600_000
    estimates.forget("never reported")  # harmless
    estimates.forget("kiosk")
    assert estimates.target(now=10.0) == CAP


def test_an_estimate_of_zero_is_raised_to_the_floor() -> None:
    estimates = BitrateEstimates(CAP, floor_bps=150_000)
    assert estimates.report("hostile", 0, now=10.0)
    assert not estimates.report("kiosk", 600_000, now=10.0)
    assert estimates.target(now=10.0) == 150_000


def test_estimates_above_the_floor_are_kept() -> None:
    estimates = BitrateEstimates(CAP, floor_bps=150_000)
    assert not estimates.report("phone", 250_000, now=10.0)
    assert estimates.target(now=10.0) == 250_000


def test_the_worst_fresh_subscriber_loss_is_what_the_publisher_hears() -> None:
    loss = WorstLoss(max_age_s=5.0)
    assert loss.worst(100.0) == 0  # nobody reported yet
    loss.report("near", 3, 100.0)
    loss.report("far", 13, 101.0)  # 5 % on one subscriber's downlink
    assert loss.worst(102.0) == 13
    loss.report("far", 0, 103.0)  # its link recovered
    assert loss.worst(103.0) == 3
    loss.report("far", 40, 104.0)
    assert loss.worst(109.5) == 0  # both stale: a subscriber that stopped reporting
    loss.report("far", 40, 110.0)
    loss.forget("far")
    assert loss.worst(110.0) == 0
