"""Visit leases and the node registry against a real redis-server (app.redis_cluster)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from app.cluster import Node
from app.config import Config
from app.node import NodeGate
from app.redis_cluster import RedisCluster
from tests.support.redis import RedisServer, running_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[RedisCluster]:
    cluster = RedisCluster(redis_server.url)
    await cluster.redis.flushdb()
    yield cluster
    await cluster.close()


async def test_a_visit_has_one_lease_and_each_placement_a_new_epoch(
        cluster: RedisCluster) -> None:
    first = await cluster.acquire("v-1", "a", 200)
    # A second placement while the lease holds gets the holder, not a lease of its own.
    assert await cluster.acquire("v-1", "b", 200) == first
    assert await cluster.owner("v-1") == first
    await asyncio.sleep(0.3)
    assert await cluster.owner("v-1") is None  # its owner stopped renewing
    second = await cluster.acquire("v-1", "b", 10_000)
    assert (second.node, second.epoch) == ("b", first.epoch + 1)


async def test_an_owner_whose_lease_lapsed_can_never_renew_it(cluster: RedisCluster) -> None:
    old = await cluster.acquire("v-2", "a", 200)
    assert await cluster.renew("v-2", old, 200)
    await asyncio.sleep(0.3)
    assert not await cluster.renew("v-2", old, 10_000)  # lapsed: not brought back
    # Placed again, even on the same node: the old epoch is fenced off.
    new = await cluster.acquire("v-2", "a", 10_000)
    assert not await cluster.renew("v-2", old, 10_000)
    await cluster.release("v-2", old)  # nor can the old epoch release it
    assert await cluster.owner("v-2") == new
    assert await cluster.renew("v-2", new, 10_000)


async def test_a_node_that_stops_refreshing_leaves_the_registry(cluster: RedisCluster) -> None:
    a = Node("a", "http://10.0.0.1:8080", "https://a.example", 40, participants=3)
    b = Node("b", "http://10.0.0.2:8080", "https://b.example", 40)
    await cluster.publish(a, 300)
    await cluster.publish(b, 10_000)
    await cluster.acquire("v-0", "a", 10_000)  # a placement counts its participant at once
    assert {n.id: n.participants for n in await cluster.nodes()} == {"a": 4, "b": 0}
    await asyncio.sleep(0.4)
    assert [n.id for n in await cluster.nodes()] == ["b"]
    await cluster.acquire("v-00", "a", 10_000)  # racing the expiry: it does not come back
    assert [n.id for n in await cluster.nodes()] == ["b"]
    assert await cluster.redis.exists("node:a") == 0


async def test_a_node_accepts_joins_only_under_its_own_live_lease(
        cluster: RedisCluster, redis_server: RedisServer) -> None:
    """The owner's fence, checked before every join: the routing before it may have read
    a lease that changed since (a join elsewhere placed the visit, or it lapsed)."""
    config = Config(redis_url=redis_server.url, node_id="a", lease_ttl_s=1)
    gate = NodeGate(config, cluster, verifier=None, rooms=None,  # type: ignore[arg-type]
                    refusals=None)  # type: ignore[arg-type]
    assert not await gate.fence("v-3")  # placed nowhere
    held = await cluster.acquire("v-3", "a", 300)
    assert await gate.fence("v-3")
    assert gate.served_by("v-3") == {"node": "a", "epoch": held.epoch}
    assert await cluster.redis.pttl("visit:v-3") > 300  # renewed to the node's lease TTL
    await cluster.redis.set("visit:v-3", f"b:{held.epoch + 1}")  # taken by another node
    assert not await gate.fence("v-3")


async def test_a_burst_of_first_joins_spreads_over_the_nodes(cluster: RedisCluster) -> None:
    """Twelve visits placed at once, each read of the registry made before any of them
    is placed: a choice made on a count that moved since is made again."""
    for node_id in ("a", "b", "c"):
        await cluster.publish(Node(node_id, f"http://{node_id}", f"https://{node_id}", 40),
                              10_000)
    placed = await asyncio.gather(*(cluster.place(f"burst-{i}", 10_000) for i in range(12)))
    assert all(new for _, new in placed)
    assert Counter(lease.node for lease, _ in placed) == {"a": 4, "b": 4, "c": 4}
    assert {n.id: n.participants for n in await cluster.nodes()} == {"a": 4, "b": 4, "c": 4}
    # A second join of a placed visit follows its lease and counts nothing more.
    lease, new = await cluster.place("burst-0", 10_000)
    assert (lease, new) == (placed[0][0], False)
    assert sum(n.participants for n in await cluster.nodes()) == 12


async def test_a_lease_not_renewed_for_a_ttl_is_let_go_without_asking_redis(
        cluster: RedisCluster, redis_server: RedisServer) -> None:
    """A node that was paused, or cut off from Redis, for a whole TTL may have lost the
    visit: it lets it go before acting on it, whatever Redis would answer."""
    config = Config(redis_url=redis_server.url, node_id="a", lease_ttl_s=1)
    gate = NodeGate(config, cluster, verifier=None, rooms={},  # type: ignore[arg-type]
                    refusals=None)  # type: ignore[arg-type]
    await cluster.acquire("v-4", "a", 300)
    assert await gate.fence("v-4") and gate.holds("v-4")
    await cluster.redis.pexpire("visit:v-4", 60_000)  # Redis would still say ours
    await asyncio.sleep(1.1)  # no renewal sent meanwhile
    assert not gate.holds("v-4")
    assert "v-4" not in gate.held and gate.served_by("v-4") is None
