"""A node killed mid-visit, as the failover test and the failover benchmark run it.

``kill_the_busiest`` seats two real aiortc parties in each of ``visits`` recorded visits
over nodes started by ``running_nodes``, kills (SIGKILL) the node holding the most, and
rejoins every page that lost its socket the way the join page does, timing each until
pictures flow again. ``recording_problems`` then checks the moved visits' recordings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.cluster import Lease
from tests.support.nodes import (
    chain_problems,
    flowing,
    node_id,
    officer,
    rejoin,
    resumed_gaps,
    sealed_recordings,
    until,
    watch_leases,
)
from tests.support.redis import RedisServer
from tests.support.server import BLUE, RED, Participant, Server, visit_now


def page_backoff(attempt: int) -> float:
    """The join page's wait before its next reconnect: 0.5 s, doubling up to 2 s."""
    return min(0.5 * 2 ** attempt, 2.0)


@dataclass
class Failover:
    victim: Server
    live: list[Server]
    before: dict[str, Lease]  # each visit's lease just before the kill
    seen: dict[str, list[Lease]]  # every lease each visit had, in order
    resumed: list[float] = field(default_factory=list)  # per rejoined page: s after the kill
    same_seats: bool = False
    rooms: dict[str, set[str]] = field(default_factory=dict)  # live node id -> its visits

    @property
    def moved(self) -> list[str]:
        return [v for v, x in self.before.items() if x.node == node_id(self.victim)]

    @property
    def after(self) -> dict[str, Lease]:
        return {v: held[-1] for v, held in self.seen.items()}


async def kill_the_busiest(nodes: Sequence[Server], redis: RedisServer, visits: int,
                           deadline_s: float, prefix: str = "failover",
                           pause: Callable[[int], float] = lambda attempt: 0.3,
                           before_end: Callable[[Failover], Awaitable[None]] | None = None
                           ) -> Failover:
    """Run one failover; ``before_end`` looks at the visits still running after it, then
    every visit is ended by an officer at its owner."""
    issuer = nodes[0]  # every node trusts its token key
    staff = issuer.token("officer-1", "officer", None)
    people: dict[str, list[Participant]] = {}
    for i in range(visits):
        visit = visit_now(f"{prefix}-{i:02d}")
        people[visit.id] = [Participant(nodes[(i + k) % len(nodes)],
                                        issuer.token(f"{role}-{i}", role, visit), colour)
                            for k, (role, colour) in enumerate((("inmate", RED),
                                                                ("family", BLUE)))]
    everyone = [p for pair in people.values() for p in pair]
    seen: dict[str, list[Lease]] = {v: [] for v in people}
    watcher = asyncio.ensure_future(watch_leases(redis.url, seen))
    try:
        # Visits open one after the other (placement spreads them by load), then their
        # families join together.
        answers = [await pair[0].join() for pair in people.values()]
        answers += await asyncio.gather(*(pair[1].join() for pair in people.values()))
        assert all(a["type"] == "joined" for a in answers), answers
        start = time.monotonic()
        await asyncio.gather(*(flowing(p, start + 60) for p in everyone))
        slots = {p.token: p.events[0]["you"]["slot"] for p in everyone}
        before = {v: held[-1] for v, held in seen.items()}
        victim = max(nodes, key=lambda n: sum(x.node == node_id(n) for x in before.values()))
        run = Failover(victim, [n for n in nodes if n is not victim], before, seen)
        await asyncio.sleep(3)  # a few segments sealed on the victim

        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)
        killed = time.monotonic()

        async def dropped() -> bool:
            return all(p.disconnected for v in run.moved for p in people[v])

        await until(dropped, 5)
        await asyncio.sleep(0.5)  # sessions relayed through the victim drop too

        async def back(p: Participant) -> Participant:
            await p.close()
            new = await rejoin(run.live, p.token, p.colour, killed + deadline_s, pause)
            await flowing(new, killed + deadline_s)
            run.resumed.append(time.monotonic() - killed)
            return new

        returned = await asyncio.gather(*(back(p) for p in everyone if p.disconnected))
        for pair in people.values():
            pair[:] = [next((new for new in returned if new.token == p.token), p)
                       for p in pair]
        run.same_seats = all(new.events[0]["you"]["slot"] == slots[new.token]
                             for new in returned)
        run.rooms = {node_id(n): {d["id"] for d in (
            await officer(n, staff, "GET", "/api/visits"))["visits"]} for n in run.live}
        if before_end is not None:
            await before_end(run)
        for v, lease in run.after.items():
            owner = next(n for n in run.live if node_id(n) == lease.node)
            await officer(owner, staff, "POST", f"/api/visits/{v}/end",
                          json={"reason": "failover over"})
    finally:
        watcher.cancel()
        for p in everyone + [p for pair in people.values() for p in pair]:
            await p.close()
    return run


def recording_problems(folder: Path, run: Failover, visits: int,
                       gap_s: tuple[float, float]) -> list[str]:
    """What is wrong with the recordings once every visit is sealed: each moved visit's
    must verify as one chain signed by both holders in turn, hold the dead node's open
    segments salvaged, and have its gap (within ``gap_s``) audited."""
    sealed = sealed_recordings(run.live[0], visits)
    gaps = resumed_gaps(run.live[0])
    problems = [] if set(gaps) == set(run.moved) else [f"gaps audited for {sorted(gaps)}"]
    for v in run.moved:
        found, entries = chain_problems(folder, v, sealed[v], [run.before[v], run.after[v]])
        problems += found
        if not any(e["type"] == "recovered" for e in entries):
            problems.append(f"{v}: nothing salvaged")
        gap = gaps.get(v, {}).get("gap_s")
        if gap is None or not gap_s[0] <= gap <= gap_s[1]:
            problems.append(f"{v}: gap {gap} s")
    return problems
