"""Roster: who is in a visit and in which slot."""

from __future__ import annotations

import pytest

from visit.roster import Admission, Identity, Roster, RosterError

INMATE = Identity("inmate-1", "Alex", "inmate")


def visitor(n: int, role: str = "family") -> Identity:
    return Identity(f"visitor-{n}", f"Visitor {n}", role)


def refusal(roster: Roster, who: Identity) -> str:
    with pytest.raises(RosterError) as info:
        roster.admit(who)
    return info.value.code


def test_inmate_takes_slot_0_and_visitors_take_1_to_n() -> None:
    roster = Roster(max_visitors=3)
    assert roster.slots == 4
    assert roster.admit(visitor(1)) == Admission(1, replaces=False)
    assert roster.admit(INMATE) == Admission(0, replaces=False)
    assert roster.admit(visitor(2, "attorney")).slot == 2
    assert roster.admit(visitor(3)).slot == 3
    assert len(roster) == 4
    assert roster.slot_of("inmate-1") == 0
    assert roster.slot_of("visitor-3") == 3


def test_visit_is_full_with_max_visitors_present() -> None:
    roster = Roster(max_visitors=2)
    roster.admit(visitor(1))
    roster.admit(visitor(2))
    assert refusal(roster, visitor(3)) == "visit_full"
    assert roster.slot_of("visitor-3") is None
    # The inmate's slot is not a visitor slot: the inmate still gets in.
    assert roster.admit(INMATE).slot == 0


def test_a_second_inmate_is_refused() -> None:
    roster = Roster(max_visitors=2)
    roster.admit(INMATE)
    assert refusal(roster, Identity("inmate-2", "Other", "inmate")) == "visit_full"
    assert roster.slot_of("inmate-2") is None
    assert len(roster) == 1


@pytest.mark.parametrize("role", ["officer", "compliance", "records", "nobody"])
def test_staff_and_unknown_roles_cannot_take_part(role: str) -> None:
    roster = Roster(max_visitors=2)
    assert refusal(roster, Identity("staff-1", "Officer", role)) == "wrong_role"
    assert len(roster) == 0


def test_the_same_identity_again_replaces_and_keeps_its_slot() -> None:
    roster = Roster(max_visitors=3)
    roster.admit(visitor(1))
    roster.admit(visitor(2))
    assert roster.admit(visitor(2)) == Admission(2, replaces=True)
    assert roster.admit(INMATE) == Admission(0, replaces=False)
    assert roster.admit(INMATE) == Admission(0, replaces=True)
    assert len(roster) == 3


def test_a_replacement_is_admitted_even_when_the_visit_is_full() -> None:
    roster = Roster(max_visitors=1)
    roster.admit(visitor(1))
    assert roster.admit(visitor(1)) == Admission(1, replaces=True)


def test_a_returning_visitor_gets_their_previous_slot_when_it_is_free() -> None:
    roster = Roster(max_visitors=3)
    for n in (1, 2, 3):
        roster.admit(visitor(n))
    roster.release("visitor-1")
    roster.release("visitor-2")
    assert roster.admit(visitor(2)).slot == 2  # slot 1 is free and lower, but 2 was theirs
    assert roster.admit(visitor(1)).slot == 1


def test_a_slot_freed_by_one_visitor_can_be_taken_by_a_new_visitor() -> None:
    roster = Roster(max_visitors=2)
    roster.admit(visitor(1))
    roster.admit(visitor(2))
    roster.release("visitor-1")
    assert roster.slot_of("visitor-1") is None
    assert roster.admit(visitor(3)) == Admission(1, replaces=False)
    # The first visitor comes back: their slot is taken and the visit is full again.
    assert refusal(roster, visitor(1)) == "visit_full"


def test_a_returning_visitor_whose_slot_was_taken_gets_another_free_slot() -> None:
    roster = Roster(max_visitors=3)
    roster.admit(visitor(1))
    roster.release("visitor-1")
    roster.admit(visitor(2))  # takes slot 1
    assert roster.admit(visitor(1)).slot == 2


def test_an_inmate_who_left_can_come_back() -> None:
    roster = Roster(max_visitors=1)
    roster.admit(INMATE)
    roster.release("inmate-1")
    assert roster.admit(INMATE) == Admission(0, replaces=False)


def test_releasing_someone_absent_changes_nothing() -> None:
    roster = Roster(max_visitors=1)
    roster.admit(visitor(1))
    roster.release("nobody")
    assert len(roster) == 1
    assert refusal(roster, visitor(2)) == "visit_full"
