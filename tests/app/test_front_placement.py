"""The front's placement table: held until the verified booked end, capped in size."""

from __future__ import annotations

import pytest

from app.placement import Placement, ServerFull

NOW = 1_750_000_000.0


def test_a_placement_is_held_until_its_booked_end_whatever_a_later_join_says() -> None:
    placement = Placement.of(2, max_participants=10, visit_size=5, max_visits=100)
    held = placement.admit("v-1", NOW + 1800, NOW)
    placement.release(held)
    # A later token of the same visit naming an earlier end does not cut it loose.
    assert placement.admit("v-1", 0, NOW + 10) == held
    assert placement.worker_of("v-1", NOW + 1800 + placement.grace_s - 1) == held
    assert placement.worker_of("v-1", NOW + 1800 + placement.grace_s + 1) is None
    assert placement.count(NOW + 1800 + placement.grace_s + 1) == 0


def test_the_table_is_capped_and_frees_room_as_visits_end() -> None:
    placement = Placement.of(2, max_participants=10, visit_size=5, max_visits=2)
    placement.admit("v-1", NOW + 600, NOW)
    placement.admit("v-2", NOW + 3600, NOW)
    with pytest.raises(ServerFull, match="placement table"):
        placement.admit("v-3", NOW + 600, NOW)
    placement.admit("v-1", NOW + 600, NOW + 1)  # a placed visit's members still join
    assert placement.count(NOW) == 2
    # Once v-1's booked end (and grace) has passed, a new visit fits again.
    later = NOW + 600 + placement.grace_s + 1
    placement.admit("v-3", later + 600, later)
    assert placement.count(later) == 2
    assert placement.worker_of("v-1", later) is None
