"""RTCP feedback decisions: keyframe request rate limiting and the worst loss among an
audio track's subscribers."""

from __future__ import annotations

from sfu.feedback import KeyframeRequests, WorstLoss


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
