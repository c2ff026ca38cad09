"""Nodes sharing one real Redis for the cluster tests, and what a test reads of Redis.

``running_nodes`` starts nodes as a deployment that survives a node's loss runs them:
one PostgreSQL database, one recordings volume (a folder here) and one recording key
for all, so any node can open a visit another node started and continue its recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from recorder.signing import load_or_create
from tests.support.postgres import cluster
from tests.support.redis import RedisServer
from tests.support.server import Participant, Server, make_server, start, stop


def node_env(redis: RedisServer, node_id: str, keys: Path | None, node_ttl_s: int,
             lease_ttl_s: int) -> dict[str, str]:
    """A node's settings: its id and the Redis, with short TTLs so a killed node leaves
    and its leases lapse within seconds; ``keys``: the token keys it trusts. Its database
    sessions carry its id as PostgreSQL's application name, so a test can tell which node
    holds a lock."""
    env = {"VISITBRIDGE_REDIS_URL": redis.url, "VISITBRIDGE_NODE_ID": node_id,
           "PGAPPNAME": f"node-{node_id}",
           "VISITBRIDGE_NODE_TTL_S": str(node_ttl_s),
           "VISITBRIDGE_LEASE_TTL_S": str(lease_ttl_s)}
    return {**env, "VISITBRIDGE_TOKEN_KEYS_DIR": str(keys)} if keys else env


@contextlib.contextmanager
def running_nodes(folder: Path, redis: RedisServer, ids: Sequence[str], node_ttl_s: int,
                  lease_ttl_s: int, **env: str) -> Iterator[list[Server]]:
    """Nodes with shared records, recordings and keys (the first node's token keys)."""
    shared = {"VISITBRIDGE_DATABASE_URL": cluster().new_database(),
              "VISITBRIDGE_RECORDINGS_PATH": str(folder / "recordings"), **env}
    key = folder / "recording-key"
    load_or_create(key / "recording.private.pem", key / "recording.public.pem")
    nodes: list[Server] = []
    try:
        for node_id in ids:
            keys = nodes[0].data_dir / "keys" / "public" if nodes else None
            settings = node_env(redis, node_id, keys, node_ttl_s, lease_ttl_s)
            node = make_server(folder / node_id, **settings, **shared)
            for pem in key.iterdir():
                shutil.copy2(pem, node.data_dir / "keys" / pem.name)
            nodes.append(start(node))
        yield nodes
    finally:
        for node in nodes:
            stop(node)


def node_id(node: Server) -> str:
    return node.env["VISITBRIDGE_NODE_ID"]


async def lease(redis: RedisServer, visit_id: str) -> str | None:
    """``<node>:<epoch>`` of the node that holds the visit, or None."""
    async with Redis.from_url(redis.url, decode_responses=True) as r:
        return await r.get(f"visit:{visit_id}")


async def forget(redis: RedisServer, node: str) -> None:
    """What its registration's expiry does a few seconds after a node dies: new visits
    are no longer placed on it."""
    async with Redis.from_url(redis.url) as r:
        await r.delete(f"node:{node}")


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def rejoin(nodes: Sequence[Server], token: str, colour: tuple[int, int, int],
                 deadline: float) -> Participant:
    """Join again as a page does after losing its socket: one node after the other (as a
    load balancer would pick), every 0.3 s, until one lets it in; fails at ``deadline``."""
    attempt = 0
    while True:
        p = Participant(nodes[attempt % len(nodes)], token, colour)
        try:
            answer = await p.join()
        except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError):
            answer = {"type": "unreachable"}
        if answer["type"] == "joined":
            return p
        await p.close()
        assert time.monotonic() < deadline, f"not back in time: {answer}"
        attempt += 1
        await asyncio.sleep(0.3)
