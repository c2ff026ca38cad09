"""A subscriber's downlink: when its video is thinned, how its link is probed while thinned,
when the full encoding comes back, and the rate meter behind the figures."""

from __future__ import annotations

from sfu.downlink import Downlink, DownlinkPolicy, RateMeter

FULL = 550_000  # the video the subscriber would be sent with the full encoding (bits/s)
LOW = 100_000  # what it is sent thinned


def thinned(at: float = 10.0) -> Downlink:
    link = Downlink()
    assert not link.estimate(800_000, FULL, at - 1)
    assert link.estimate(250_000, FULL, at)  # a 300 kb/s cap: the estimate falls
    return link


def probe_until_done(link: Downlink, start: float, nack_at: float | None = None) -> float:
    """Ticks of 20 ms from ``start`` until the link is no longer probed or thinned; the
    subscriber NACKs at ``nack_at``. Returns when the probe ended."""
    now = start
    while now < start + 10:
        if nack_at is not None and now >= nack_at:
            link.nacked(1, now)
            return now
        if link.probe_bps(LOW, FULL, now) == 0 and not link.thin:
            return now
        now += 0.02
    raise AssertionError("the probe never ended")


def test_an_estimate_near_what_is_sent_keeps_the_full_encoding() -> None:
    link = Downlink()
    for t in range(10):  # an estimate dipping to 0.8 of the rate, as on a busy machine
        assert not link.estimate(int(FULL * (0.8 if t % 2 else 1.4)), FULL, float(t))
    assert link.probe_bps(FULL, FULL, 10.0) == 0


def test_an_estimate_falling_well_under_what_is_sent_thins_at_once() -> None:
    assert thinned().thin


def test_an_estimate_climbing_after_a_join_does_not_thin() -> None:
    link = Downlink()
    for t, estimate in enumerate(range(300_000, 700_000, 50_000)):
        assert not link.estimate(estimate, FULL, float(t))


def test_heavy_loss_over_a_second_thins_and_random_loss_does_not() -> None:
    link = Downlink()
    # 5 % random loss, a report with every NACK: thinning would not help.
    for i in range(20):
        assert not link.loss(lost=i, highest=1000 + 20 * i, now=i * 0.1)
    # Three packets out of four in one short report are not a second of loss either.
    assert not link.loss(lost=22, highest=1384, now=2.05)
    for i in range(1, 12):  # half of what is sent lost, over a second
        link.loss(lost=22 + 10 * i, highest=1384 + 20 * i, now=2.05 + 0.1 * i)
    assert link.thin


def test_a_thinned_link_is_probed_after_the_wait_and_ramps_to_the_full_rate() -> None:
    link = thinned(10.0)
    assert link.probe_bps(LOW, FULL, 13.9) == 0  # not before the 4 s wait
    assert link.probe_bps(LOW, FULL, 15.0) == (FULL - LOW) // 2  # half way up the ramp
    assert link.probe_bps(LOW, FULL, 16.2) == FULL - LOW  # then held at the full rate
    assert link.thin


def test_a_probe_that_passes_brings_the_full_encoding_back() -> None:
    link = thinned(10.0)
    ended = probe_until_done(link, 12.0)
    assert not link.thin and 17.0 <= ended <= 17.1  # 4 s wait, 2 s ramp, 1 s hold


def test_a_nack_ends_a_probe_and_doubles_the_wait_up_to_its_maximum() -> None:
    link = thinned(10.0)
    failed = probe_until_done(link, 14.0, nack_at=14.4)
    assert link.thin and link.probe_bps(LOW, FULL, failed + 0.1) == 0
    assert link.probe_bps(LOW, FULL, failed + 7.9) == 0  # now 8 s
    assert link.probe_bps(LOW, FULL, failed + 8.1) > 0
    failed = probe_until_done(link, failed + 8.1, nack_at=failed + 8.2)
    assert link.probe_bps(LOW, FULL, failed + 7.9) == 0  # 16 s, held to 8
    assert link.probe_bps(LOW, FULL, failed + 8.1) > 0


def test_nacks_outside_a_probe_change_nothing() -> None:
    link = thinned(10.0)
    link.nacked(5, 11.0)  # random loss while thinned, before the probe
    assert probe_until_done(link, 14.0) <= 17.1 and not link.thin


def test_a_falling_estimate_ends_a_probe() -> None:
    link = thinned(10.0)
    assert link.probe_bps(LOW, FULL, 14.5) > 0
    link.estimate(200_000, LOW, 14.6)
    assert link.thin and link.probe_bps(LOW, FULL, 14.7) == 0


def test_a_queue_on_the_link_thins_and_jitter_does_not() -> None:
    link = Downlink()
    for t in range(10):  # tens of milliseconds of jitter, as on a Wi-Fi link
        assert not link.queue(79.0 * (t % 2), t * 0.1)  # or a keyframe's burst
    assert link.queue(80.0, 1.0)  # the link's queue fills: thinned at this report
    assert link.probe_bps(LOW, FULL, 5.1) > 0  # and probed after the usual wait


def test_a_queue_or_a_falling_estimate_is_a_flooded_link_and_loss_alone_is_not() -> None:
    assert thinned().flooded  # a falling estimate
    link = Downlink()
    link.queue(80.0, 1.0)
    assert link.flooded
    probe_until_done(link, 5.0)
    assert not link.thin and not link.flooded
    link = Downlink()
    link.loss(lost=0, highest=1000, now=0.0)
    assert link.loss(lost=50, highest=1100, now=1.1) and not link.flooded


def test_a_queue_ends_a_probe_and_outside_a_probe_changes_nothing() -> None:
    link = Downlink()
    link.queue(80.0, 10.0)
    assert link.thin and link.queue(200.0, 11.0)  # the queue that thinned it, still draining
    assert link.probe_bps(LOW, FULL, 14.5) > 0
    link.queue(20.0, 14.6)  # a short queue during a probe: it goes on
    assert link.probe_bps(LOW, FULL, 14.7) > 0
    link.queue(25.0, 14.8)  # the queue grows: the probe ends, the next one waits 8 s
    assert link.thin and link.probe_bps(LOW, FULL, 14.9) == 0
    assert link.probe_bps(LOW, FULL, 22.7) == 0 and link.probe_bps(LOW, FULL, 22.9) > 0


def test_a_switch_up_that_fails_soon_doubles_the_wait() -> None:
    link = thinned(10.0)
    up = probe_until_done(link, 12.0)
    link.estimate(800_000, FULL, up + 0.5)
    assert link.estimate(300_000, FULL, up + 1.0)  # flooded again: thinned
    assert link.probe_bps(LOW, FULL, up + 8.9) == 0  # 8 s, not 4
    assert link.probe_bps(LOW, FULL, up + 9.1) > 0


def test_a_switch_up_that_lasts_resets_the_wait() -> None:
    link = thinned(10.0)
    up = probe_until_done(link, 12.0)
    link.estimate(800_000, FULL, up + 30)
    assert link.estimate(300_000, FULL, up + 31)
    assert link.probe_bps(LOW, FULL, up + 35.1) > 0  # 4 s again


def test_the_policy_sets_the_first_wait() -> None:
    link = Downlink(DownlinkPolicy(wait_s=1.0))
    link.estimate(800_000, FULL, 0.0)
    link.estimate(200_000, FULL, 1.0)
    assert link.probe_bps(LOW, FULL, 2.1) > 0


def test_the_rate_meter_averages_the_last_window() -> None:
    meter = RateMeter(0.25, window_s=1.0)
    for octets in (1000, 3000, 1000, 3000, 1000):
        meter.octets += octets
        meter.tick()
    assert meter.bps == 8 * 8000 / 1.0  # the last four periods
    assert meter.octets == 0
