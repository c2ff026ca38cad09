"""A node killed with SIGKILL mid-visit: its visits resume on the other nodes.

Three ``visitbridge serve`` nodes on loopback share a real ``redis-server``, a real
PostgreSQL database and one recordings folder (the shared volume). Ten recorded
visits of real aiortc participants, joined at every node; then the node holding the most
is killed. Its participants' sockets drop; they rejoin as the pages do (any node, every
0.3 s) and must be back in the same seats, with media flowing, within 15 s. The new
owner holds each visit under the next fencing epoch, continues the dead node's signed
chain (its unfinished segments salvaged), counts and audits the gap, and a write under
the dead node's epoch is refused. Throughout, each visit has one holder at a time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from app.cluster import Lease
from app.redis_cluster import RedisCluster
from recorder.manifest import Manifest, ManifestError
from recorder.signing import load_existing
from tests.support.nodes import (
    flowing,
    node_id,
    officer,
    rejoin,
    resumed_gaps,
    running_nodes,
    sealed_recordings,
    until,
    verified_chain,
    watch_leases,
)
from tests.support.redis import running_redis
from tests.support.server import BLUE, RED, Participant, Server, visit_now

# The heaviest real-media tests one after another (one worker of a parallel run takes them
# all): two at once would share the CPU their rates and deadlines depend on.
pytestmark = pytest.mark.xdist_group("heavy")

NODE_TTL_S = 2  # a dead node leaves placement after this, before its leases lapse
TTL_S = 3  # a lease: a dead node's visits are free to move after this
VISITS = 10  # twenty, all in one process beside the nodes, took up to 15.3 s here
RESUME_S = 15.0


async def test_a_killed_nodes_visits_resume_on_the_live_nodes(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis, running_nodes(
            tmp_path, redis, ("a", "b", "c"), NODE_TTL_S, TTL_S,
            VISITBRIDGE_SEGMENT_S="2") as nodes:
        issuer = nodes[0]  # every node trusts its token key
        staff = issuer.token("officer-1", "officer", None)
        people: dict[str, list[Participant]] = {}
        for i in range(VISITS):
            visit = visit_now(f"failover-{i:02d}")
            people[visit.id] = [Participant(nodes[(i + k) % 3],
                                            issuer.token(f"{role}-{i}", role, visit), colour)
                                for k, (role, colour) in enumerate((("inmate", RED),
                                                                    ("family", BLUE)))]
        everyone = [p for pair in people.values() for p in pair]
        seen: dict[str, list[Lease]] = {v: [] for v in people}
        watcher = asyncio.ensure_future(watch_leases(redis.url, seen))
        try:
            # Visits open one after the other (placement spreads them by load), then
            # their families join together.
            answers = [await pair[0].join() for pair in people.values()]
            answers += await asyncio.gather(*(pair[1].join() for pair in people.values()))
            assert all(a["type"] == "joined" for a in answers), answers
            start = time.monotonic()
            await asyncio.gather(*(flowing(p, start + 60) for p in everyone))
            slots = {p.token: p.events[0]["you"]["slot"] for p in everyone}
            before = {v: held[-1] for v, held in seen.items()}
            victim = max(nodes, key=lambda n: sum(x.node == node_id(n) for x in before.values()))
            moved = [v for v, x in before.items() if x.node == node_id(victim)]
            live = [n for n in nodes if n is not victim]
            assert {x.node for x in before.values()} == {"a", "b", "c"}  # spread over all
            await asyncio.sleep(3)  # a few segments sealed on the victim

            assert victim.process is not None
            os.kill(victim.process.pid, signal.SIGKILL)
            killed = time.monotonic()

            async def dropped() -> bool:
                return all(p.disconnected for v in moved for p in people[v])

            await until(dropped, 5)
            await asyncio.sleep(0.5)  # sessions relayed through the victim drop too

            async def back(p: Participant) -> tuple[Participant, float]:
                await p.close()
                new = await rejoin(live, p.token, p.colour, killed + RESUME_S)
                await flowing(new, killed + RESUME_S)
                return new, time.monotonic() - killed

            returned = await asyncio.gather(*(back(p) for p in everyone if p.disconnected))
            for pair in people.values():
                pair[:] = [next((new for new, _ in returned if new.token == p.token), p)
                           for p in pair]
            worst = max(seconds for _, seconds in returned)
            print(f"{len(moved)} visits moved, {len(returned)} pages rejoined; "
                  f"the last was back {worst:.1f} s after the kill")
            assert worst <= RESUME_S
            assert all(new.events[0]["you"]["slot"] == slots[new.token] for new, _ in returned)

            # Each moved visit is held by a live node under the next epoch; no epoch was
            # ever held by two nodes; every visit runs on exactly the node holding it.
            after = {v: held[-1] for v, held in seen.items()}
            for v in moved:
                assert after[v].node != node_id(victim)
                assert after[v].epoch == before[v].epoch + 1, (v, seen[v])
            for held in seen.values():
                assert [x.epoch for x in held] == sorted({x.epoch for x in held}), held
            rooms = {node_id(n): {d["id"] for d in (
                await officer(n, staff, "GET", "/api/visits"))["visits"]} for n in live}
            for v in people:
                assert [n for n, ids in rooms.items() if v in ids] == [after[v].node], rooms

            # The dead node's epoch is fenced off in Redis and in the recording.
            stale = before[moved[0]]
            cluster = RedisCluster(redis.url)
            try:
                assert not await cluster.renew(moved[0], stale, 60_000)
            finally:
                await cluster.close()
            keys = tmp_path / "recording-key"
            key = load_existing(keys / "recording.private.pem", keys / "recording.public.pem")
            with pytest.raises(ManifestError, match="fenced"):
                Manifest.open(tmp_path / "recordings" / moved[0], key, time.time,
                              served_by={"node": stale.node, "epoch": stale.epoch})

            for v in people:
                owner = next(n for n in live if node_id(n) == after[v].node)
                await officer(owner, staff, "POST", f"/api/visits/{v}/end",
                              json={"reason": "test over"})
        finally:
            watcher.cancel()
            for pair in people.values():
                for p in pair:
                    await p.close()
        check_recordings(tmp_path, issuer, {v: [before[v], after[v]] for v in moved})


def check_recordings(folder: Path, node: Server, moved: dict[str, list[Lease]]) -> None:
    """Each moved visit's recording: sealed, one chain that verifies, both holders and
    their epochs signed into it, the dead node's open segments salvaged, the gap audited."""
    sealed = sealed_recordings(node, VISITS)
    gaps = resumed_gaps(node)
    assert set(gaps) == set(moved), gaps
    for v, holders in moved.items():
        entries = verified_chain(folder, v, sealed[v], holders)
        assert any(e["type"] == "recovered" for e in entries), v
        assert TTL_S - 1 <= gaps[v]["gap_s"] <= RESUME_S + 3, gaps[v]
