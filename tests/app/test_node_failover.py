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

import time
from pathlib import Path

import pytest

from app.redis_cluster import RedisCluster
from recorder.manifest import Manifest, ManifestError
from recorder.signing import load_existing
from tests.support.failover import Failover, kill_the_busiest, recording_problems
from tests.support.nodes import node_id, running_nodes
from tests.support.redis import running_redis

pytestmark = pytest.mark.solo  # visits resume within a deadline, beside real media


NODE_TTL_S = 2  # a dead node leaves placement after this, before its leases lapse
TTL_S = 3  # a lease: a dead node's visits are free to move after this
VISITS = 10  # twenty, all in one process beside the nodes, took up to 15.3 s here
RESUME_S = 15.0


async def test_a_killed_nodes_visits_resume_on_the_live_nodes(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis, running_nodes(
            tmp_path, redis, ("a", "b", "c"), NODE_TTL_S, TTL_S,
            VISITBRIDGE_SEGMENT_S="2") as nodes:

        async def fenced(run: Failover) -> None:
            """The dead node's epoch is fenced off in Redis and in the recording."""
            stale = run.before[run.moved[0]]
            cluster = RedisCluster(redis.url)
            try:
                assert not await cluster.renew(run.moved[0], stale, 60_000)
            finally:
                await cluster.close()
            keys = tmp_path / "recording-key"
            key = load_existing(keys / "recording.private.pem", keys / "recording.public.pem")
            with pytest.raises(ManifestError, match="fenced"):
                Manifest.open(tmp_path / "recordings" / run.moved[0], key, time.time,
                              served_by={"node": stale.node, "epoch": stale.epoch})

        run = await kill_the_busiest(nodes, redis, VISITS, RESUME_S, before_end=fenced)
        problems = recording_problems(tmp_path, run, VISITS, (TTL_S - 1, RESUME_S + 3))
    print(f"{len(run.moved)} visits moved, {len(run.resumed)} pages rejoined; "
          f"the last was back {max(run.resumed):.1f} s after the kill")
    assert {x.node for x in run.before.values()} == {"a", "b", "c"}  # spread over all
    assert max(run.resumed) <= RESUME_S
    assert run.same_seats
    # Each moved visit is held by a live node under the next epoch; no epoch was ever
    # held by two nodes; every visit runs on exactly the node holding it.
    for v in run.moved:
        assert run.after[v].node != node_id(run.victim)
        assert run.after[v].epoch == run.before[v].epoch + 1, (v, run.seen[v])
    for held in run.seen.values():
        assert [x.epoch for x in held] == sorted({x.epoch for x in held}), held
    for v, lease in run.after.items():
        assert [n for n, ids in run.rooms.items() if v in ids] == [lease.node], run.rooms
    assert not problems, problems
