"""Which node serves which visit when nodes share a Redis (plain logic, no I/O).

Every node registers itself (``Node``: where to reach it, its capacity, its measured
load, whether it is draining) under a key that expires unless refreshed, so a node that
stops refreshing drops out of placement on its own. A visit lives whole on one node,
which holds it by a ``Lease`` (``visit:<id>`` = ``<node>:<epoch>``, set NX with a TTL and
renewed by the owner). The epoch grows by one each time the visit is placed, so an owner
that lost its lease can tell (its renewal names an epoch that is no longer there) and
never serves or records the visit beside the new owner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.placement import ServerFull

NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Node:
    id: str
    url: str  # where other nodes relay a page's signaling (reachable inside the facility)
    public_url: str  # how users reach it
    capacity: int  # admission threshold: participants it takes before refusing new visits
    participants: int = 0  # connected now, or reserved by a placement not yet joined
    visits: int = 0  # leases it holds
    cpu: float = 0.0  # share of one core its process used since the last refresh
    draining: bool = False  # takes no new visit; its running visits finish

    def fields(self) -> dict[str, str]:
        """The Redis hash of this node."""
        return {"url": self.url, "public_url": self.public_url,
                "capacity": str(self.capacity), "participants": str(self.participants),
                "visits": str(self.visits), "cpu": f"{self.cpu:.3f}",
                "draining": "1" if self.draining else "0"}

    @classmethod
    def from_fields(cls, node_id: str, raw: Mapping[str, str]) -> Node | None:
        """A registered node, or None for a record that is partial or malformed (a node
        that is half written or expiring is never a placement target)."""
        try:
            return cls(node_id, raw["url"], raw["public_url"], int(raw["capacity"]),
                       int(raw["participants"]), int(raw["visits"]), float(raw["cpu"]),
                       raw["draining"] == "1")
        except (KeyError, ValueError):
            return None

    @property
    def open(self) -> bool:
        return not self.draining and self.participants < self.capacity


def choose(nodes: Iterable[Node]) -> Node:
    """The node for a new visit: the least loaded one under its admission threshold
    (fewest participants, then fewest visits, then least CPU). ``ServerFull`` when every
    node is full or draining: overload never degrades the visits already running."""
    candidates = [n for n in nodes if n.open]
    if not candidates:
        raise ServerFull("every node is at its admission threshold or draining")
    return min(candidates, key=lambda n: (n.participants, n.visits, n.cpu, n.id))


@dataclass(frozen=True)
class Lease:
    node: str
    epoch: int

    @property
    def value(self) -> str:
        return f"{self.node}:{self.epoch}"

    @classmethod
    def parse(cls, value: str | None) -> Lease | None:
        if value is None:
            return None
        node, _, epoch = value.rpartition(":")
        if not NODE_ID.match(node) or not epoch.isdigit():
            return None
        return cls(node, int(epoch))
