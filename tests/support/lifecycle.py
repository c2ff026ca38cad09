"""The visit the lifecycle tests drive: its times, its participants, and helpers.

Times are plain floats. A 30-minute visit from START to END with the default policy:
waiting room opens 15 minutes early, warnings 300 s and 60 s before the end, and
``all_left`` after 120 s with nobody connected while live.
"""

from __future__ import annotations

import pytest

from visit.lifecycle import MediaHeld, Policy, Refused, Started, VisitLifecycle

START = 10_000.0
END = START + 1800.0
EARLY = 15 * 60.0  # Policy().early_entry_s
GRACE = 120.0  # Policy().all_left_grace_s

INMATE = "inmate-1"
MUM = "visitor-1"
SISTER = "visitor-2"
LAWYER = "visitor-3"


def visit(policy: Policy | None = None, starts_at: float = START,
          ends_at: float = END) -> VisitLifecycle:
    if policy is None:
        return VisitLifecycle(starts_at, ends_at)
    return VisitLifecycle(starts_at, ends_at, policy)


def refusal(lc: VisitLifecycle, sub: str, now: float) -> str:
    with pytest.raises(Refused) as info:
        lc.connected(sub, now)
    return info.value.code


def live_visit(*subs: str, at: float = START) -> VisitLifecycle:
    """A visit that went live at ``at`` with ``subs`` connected from then."""
    lc = visit()
    assert lc.tick(at) == [Started(at), MediaHeld(False)]
    for sub in subs:
        assert lc.connected(sub, at) == []
    return lc
