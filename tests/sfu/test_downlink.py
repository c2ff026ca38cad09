"""A subscriber's downlink: when its video is thinned, when it gets the full encoding
back, how much padding probes its link meanwhile, and the rate meter behind the figures."""

from __future__ import annotations

from sfu.downlink import Downlink, DownlinkPolicy, RateMeter

FULL = 650_000  # what the subscriber would be sent with the full encoding (bits/s)
LOW = 160_000  # what it is sent thinned


def thinned(at: float = 10.0) -> Downlink:
    link = Downlink()
    assert link.estimate(250_000, FULL, FULL, at)  # a 300 kb/s cap: the estimate falls
    return link


def test_an_estimate_near_what_is_sent_keeps_the_full_encoding() -> None:
    link = Downlink()
    for t in range(10):  # an estimate dipping to 0.8 of the rate, as on a busy machine
        assert not link.estimate(int(FULL * (0.8 if t % 2 else 1.4)), FULL, FULL, float(t))
    assert link.padding_bps(FULL, FULL) == 0


def test_an_estimate_well_under_what_is_sent_thins_at_once() -> None:
    assert thinned().thin


def test_heavy_loss_thins_and_random_loss_does_not() -> None:
    link = Downlink()
    assert not link.loss(0.06, 1.0)  # 5 % random loss: thinning would not help
    assert link.loss(0.3, 2.0)


def test_the_full_encoding_comes_back_once_the_estimate_covers_it_for_a_while() -> None:
    link = thinned(10.0)
    assert link.estimate(FULL - 1, LOW, FULL, 13.0)  # not yet covered
    assert link.estimate(FULL, LOW, FULL, 13.5)  # covered from now on
    assert link.estimate(FULL + 10_000, LOW, FULL, 14.0)
    assert not link.estimate(FULL + 20_000, LOW, FULL, 14.5)  # covered for the hold


def test_a_dip_restarts_the_hold() -> None:
    link = thinned(10.0)
    link.estimate(FULL, LOW, FULL, 13.0)
    link.estimate(FULL // 2, LOW, FULL, 13.6)
    assert link.estimate(FULL, LOW, FULL, 14.2)
    assert not link.estimate(FULL, LOW, FULL, 15.2)


def test_not_back_sooner_than_the_wait_after_thinning() -> None:
    link = thinned(10.0)
    link.estimate(FULL, LOW, FULL, 10.2)
    assert link.estimate(FULL, LOW, FULL, 11.5)  # covered 1.3 s, thinned only 1.5 s ago
    assert not link.estimate(FULL, LOW, FULL, 12.0)


def test_a_failed_switch_up_doubles_the_wait_and_a_lasting_one_resets_it() -> None:
    link = thinned(0.0)
    link.estimate(FULL, LOW, FULL, 1.0)
    assert not link.estimate(FULL, LOW, FULL, 2.0)  # back up at 2 s
    assert link.estimate(300_000, FULL, FULL, 3.0)  # thinned again within 5 s: failed
    link.estimate(FULL, LOW, FULL, 3.5)
    assert link.estimate(FULL, LOW, FULL, 6.9)  # a 4 s wait now
    assert not link.estimate(FULL, LOW, FULL, 7.0)
    assert link.estimate(300_000, FULL, FULL, 8.0)  # failed again: 8 s
    link.estimate(FULL, LOW, FULL, 8.5)
    assert link.estimate(FULL, LOW, FULL, 15.9)
    assert not link.estimate(FULL, LOW, FULL, 16.0)
    assert link.estimate(300_000, FULL, FULL, 30.0)  # lasted 14 s: back to 2 s
    link.estimate(FULL, LOW, FULL, 31.0)
    assert not link.estimate(FULL, LOW, FULL, 32.0)


def test_the_wait_never_passes_its_maximum() -> None:
    policy = DownlinkPolicy(max_wait_s=5.0)
    link = Downlink(policy)
    now = 0.0
    for _ in range(6):  # every switch up fails
        link.estimate(100_000, FULL, FULL, now)
        link.estimate(FULL, LOW, FULL, now + 0.1)
        up = now + 0.2
        while link.estimate(FULL, LOW, FULL, up):
            up += 0.1
        assert up - now <= 5.0 + 0.3
        now = up + 1.0


def test_padding_tops_a_thinned_link_up_to_its_estimate_and_no_further_than_needed() -> None:
    link = thinned()
    assert link.padding_bps(LOW, FULL) == 90_000  # up to the 250 kb/s estimate
    link.estimate(400_000, LOW, FULL, 11.0)
    assert link.padding_bps(LOW, FULL) == 240_000
    link.estimate(2_000_000, LOW, FULL, 11.5)
    assert link.padding_bps(LOW, FULL) == int(1.1 * FULL) - LOW
    link.estimate(100_000, LOW, FULL, 12.0)
    assert link.padding_bps(LOW, FULL) == 0


def test_the_rate_meter_averages_the_last_window() -> None:
    meter = RateMeter(0.25, window_s=1.0)
    for octets in (1000, 3000, 1000, 3000, 1000):
        meter.octets += octets
        meter.tick()
    assert meter.bps == 8 * 8000 / 1.0  # the last four periods
    assert meter.octets == 0
