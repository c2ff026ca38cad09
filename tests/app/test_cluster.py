"""Placement across nodes and the lease value, as plain logic (app.cluster)."""

from __future__ import annotations

import pytest

from app.cluster import Lease, Node, choose
from app.placement import ServerFull


def node(node_id: str, participants: int = 0, capacity: int = 10, visits: int = 0,
         cpu: float = 0.0, draining: bool = False) -> Node:
    return Node(node_id, f"http://{node_id}:8080", f"https://{node_id}.example",
                capacity, participants, visits, cpu, draining)


def test_the_least_loaded_open_node_takes_a_new_visit() -> None:
    assert choose([node("a", 4), node("b", 2), node("c", 3)]).id == "b"
    # Equal participants: fewer visits, then less CPU decide.
    assert choose([node("a", 2, visits=2), node("b", 2, visits=1)]).id == "b"
    assert choose([node("a", 2, cpu=0.7), node("b", 2, cpu=0.2)]).id == "b"


def test_full_and_draining_nodes_take_no_new_visit() -> None:
    assert choose([node("a", 10), node("b", 9, draining=True), node("c", 9)]).id == "c"
    with pytest.raises(ServerFull):
        choose([node("a", 10), node("b", 0, draining=True)])
    with pytest.raises(ServerFull):
        choose([])


def test_a_node_record_round_trips_and_a_partial_one_is_no_target() -> None:
    full = node("a", 3, visits=1, cpu=0.25, draining=True)
    assert Node.from_fields("a", full.fields()) == full
    partial = {k: v for k, v in full.fields().items() if k != "url"}
    assert Node.from_fields("a", partial) is None
    assert Node.from_fields("a", {**full.fields(), "capacity": "many"}) is None


def test_a_lease_names_its_node_and_epoch() -> None:
    lease = Lease("node-a.1", 7)
    assert Lease.parse(lease.value) == lease
    for bad in (None, "node-a", "node-a:", ":3", "node-a:x", "no de:1"):
        assert Lease.parse(bad) is None
