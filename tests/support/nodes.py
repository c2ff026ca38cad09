"""Nodes sharing one real Redis for the cluster tests, and what a test reads of Redis.

``running_nodes`` starts nodes as a deployment that survives a node's loss runs them:
one PostgreSQL database, one recordings volume (a folder here) and one recording key
for all, so any node can open a visit another node started and continue its recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from app.cluster import Lease
from recorder.signing import load_or_create
from recorder.verify import verify_visit
from records.dialect import open_database
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
        for node_id in ids:  # the first node's token keys exist once it is made
            keys = nodes[0].data_dir / "keys" / "public" if nodes else None
            settings = node_env(redis, node_id, keys, node_ttl_s, lease_ttl_s)
            nodes.append(make_server(folder / node_id, **settings, **shared))
            for pem in key.iterdir():
                shutil.copy2(pem, nodes[-1].data_dir / "keys" / pem.name)
        start_all(nodes)
        yield nodes
    finally:
        for node in nodes:
            stop(node)


def start_all(servers: Sequence[Server]) -> None:
    """Start servers side by side: no server's start-up waits on another's. Each has been
    started (its process launched) when this returns or raises."""
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(start, servers))


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
                 deadline: float, pause: Callable[[int], float] = lambda attempt: 0.3
                 ) -> Participant:
    """Join again as a page does after losing its socket: one node after the other (as a
    load balancer would pick), waiting ``pause(attempt)`` between tries (0.3 s; the join
    page backs off from 0.5 s to 4 s), until one lets it in; fails at ``deadline``."""
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
        await asyncio.sleep(pause(attempt))
        attempt += 1


def other_slot(p: Participant) -> int:
    return 1 - int(p.events[0]["you"]["slot"])


async def flowing(p: Participant, deadline: float) -> None:
    """Pictures from the other party of a two-party visit reach ``p`` by ``deadline``."""
    await p.wait_for(lambda: p.video_from(other_slot(p)).frames >= 5, deadline - time.monotonic())


async def officer(node: Server, token: str, method: str, path: str, **kwargs: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.request(
            method, node.url + path, headers={"Authorization": f"Bearer {token}"},
            **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def watch_leases(url: str, seen: dict[str, list[Lease]]) -> None:
    """Every lease each visit had, in order, sampled every 50 ms."""
    async with Redis.from_url(url, decode_responses=True) as r:
        while True:
            values = await r.mget([f"visit:{v}" for v in seen])
            for held, value in zip(seen.values(), values, strict=True):
                parsed = Lease.parse(value)
                if parsed is not None and (not held or held[-1] != parsed):
                    held.append(parsed)
            await asyncio.sleep(0.05)


def sealed_recordings(node: Server, count: int, timeout: float = 30.0) -> dict[str, str]:
    """Every sealed recording's seal, once ``count`` are sealed (the shared records)."""
    db = open_database(node.env["VISITBRIDGE_DATABASE_URL"])
    try:
        deadline = time.monotonic() + timeout
        while len(sealed := dict(db.execute(
                "SELECT visit, seal FROM recordings WHERE seal IS NOT NULL").fetchall())) < count:
            assert time.monotonic() < deadline, f"{len(sealed)} of {count} sealed"
            time.sleep(0.2)
    finally:
        db.close()
    return sealed


def resumed_gaps(node: Server) -> dict[str, dict[str, Any]]:
    """The ``recording_resumed`` audit entries' details, by visit."""
    db = open_database(node.env["VISITBRIDGE_DATABASE_URL"])
    try:
        return {visit: json.loads(detail) for visit, detail in db.execute(
            "SELECT visit, detail FROM audit WHERE action = 'recording_resumed'").fetchall()}
    finally:
        db.close()


def chain_problems(folder: Path, visit_id: str, seal: str,
                   holders: Sequence[Lease]) -> tuple[list[str], list[dict[str, Any]]]:
    """What is wrong with a visit's recording in ``folder`` (``running_nodes``'): it must
    verify and name exactly ``holders``, in order, as its writers; and its entries."""
    visit_dir = folder / "recordings" / visit_id
    public = (folder / "recording-key" / "recording.public.pem").read_bytes()
    report = verify_visit(visit_dir, public, seal)
    problems = [f"{visit_id}: {problem}" for problem in report.problems]
    entries = [json.loads(line) for line in
               (visit_dir / "manifest.jsonl").read_text().splitlines()]
    signed = [e["detail"]["served_by"] for e in entries
              if e["type"] == "policy" and "served_by" in e["detail"]]
    if signed != [{"node": x.node, "epoch": x.epoch} for x in holders]:
        problems.append(f"{visit_id}: served by {signed}, not {holders}")
    return problems, entries


def verified_chain(folder: Path, visit_id: str, seal: str,
                   holders: Sequence[Lease]) -> list[dict[str, Any]]:
    """The entries of a visit's manifest, once ``chain_problems`` found none."""
    problems, entries = chain_problems(folder, visit_id, seal, holders)
    assert not problems, problems
    return entries
