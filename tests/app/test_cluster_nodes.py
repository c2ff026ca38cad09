"""Real nodes sharing one real Redis: visits spread, any node accepts a join, and a lease
keeps each visit on exactly one node.

Three ``visitbridge serve`` processes with the same token keys and their own data
folders register in a redis-server started here, with short TTLs (3 s) so that a node
killed with SIGKILL leaves, and its visits' leases lapse, within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from redis.asyncio import Redis

from auth.issuer import issue_token
from auth.keys import load_private_key, write_keypair
from tests.support.nodes import lease, start_all, until
from tests.support.nodes import node_env as nodes_env
from tests.support.process import ROOT
from tests.support.redis import RedisServer, running_redis
from tests.support.server import (
    AUDIENCE,
    ISSUER,
    KID,
    Participant,
    Server,
    family_visit,
    in_visit,
    inmate_and_family,
    make_server,
    running_server,
    stop,
    visit_now,
)

pytestmark = pytest.mark.solo  # nodes leave by their TTL, timed

TTL_S = 3


def node_env(redis: RedisServer, node_id: str, keys: Path | None) -> dict[str, str]:
    return nodes_env(redis, node_id, keys, TTL_S, TTL_S)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def nodes(redis_server: RedisServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    base = tmp_path_factory.mktemp("nodes")
    a = make_server(base / "a", **node_env(redis_server, "a", None))
    b = make_server(base / "b", **node_env(redis_server, "b", a.data_dir / "keys" / "public"))
    try:
        start_all((a, b))
        yield a, b
    finally:
        stop(b)
        stop(a)


async def registered(redis: RedisServer) -> dict[str, dict[str, str]]:
    async with Redis.from_url(redis.url, decode_responses=True) as r:
        return {key[5:]: await r.hgetall(key) async for key in r.scan_iter("node:*")}


def at(server: Server, token: str, **kwargs: object) -> Participant:
    return Participant(server, token, **kwargs)  # type: ignore[arg-type]


async def test_visits_spread_and_a_join_at_any_node_reaches_the_owner(
        nodes: tuple[Server, Server], redis_server: RedisServer) -> None:
    a, b = nodes
    first, second = visit_now("spread-1"), visit_now("spread-2")
    inmate1, family1 = inmate_and_family(a, first, "s1")
    inmate2, _ = inmate_and_family(a, second, "s2")
    async with in_visit(at(a, inmate1.token), at(a, inmate2.token)):
        owners = {(await lease(redis_server, v.id) or "").split(":")[0] for v in (first, second)}
        assert owners == {"a", "b"}  # both joined at a; the second went to the idle node
        owner = (await lease(redis_server, first.id) or "").split(":")[0]
        other = b if owner == "a" else a
        # The family member of the first visit joins at the node that does not own it.
        async with in_visit(at(a, inmate1.token, colour=(220, 30, 30)),
                            at(other, family1.token, colour=(30, 30, 220))) as (inm, fam):
            await fam.wait_for(lambda: fam.video_from(0).frames >= 10, 20)
            await inm.wait_for(lambda: inm.video_from(1).frames >= 10, 20)
            assert fam.video_from(0).colour is not None and fam.video_from(0).colour[0] > 150
            assert inm.video_from(1).colour is not None and inm.video_from(1).colour[2] > 150
        # The owner recorded it, and signed its node and lease epoch into the manifest.
        node, epoch = (await lease(redis_server, first.id) or ":").split(":")
        recorder = a if node == "a" else b
        manifests = [m for m in recorder.data_dir.rglob("manifest.jsonl") if first.id in str(m)]
        entries = [json.loads(line) for line in manifests[0].read_text().splitlines()]
        assert {"node": node, "epoch": int(epoch)} in [
            e["detail"].get("served_by") for e in entries if e["type"] == "policy"]


async def test_a_forged_or_unsigned_token_never_places_nor_moves_a_visit(
        nodes: tuple[Server, Server], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = nodes
    write_keypair(KID, tmp_path / "public", tmp_path / "forger.pem")
    forger = load_private_key(tmp_path / "forger.pem")
    held = visit_now("held-1")
    async with in_visit(at(a, a.token("inmate-h", "inmate", held))):
        before = await lease(redis_server, held.id)
        assert before is not None
        for visit in (visit_now("forged-1"), held):
            forged = issue_token(forger, kid=KID, issuer=ISSUER, audience=AUDIENCE,
                                 sub="family-x", role="family", name="X", visit=visit,
                                 now=time.time())
            claims = jwt.decode(forged, options={"verify_signature": False})
            unsigned = jwt.encode(claims, None, algorithm="none")
            for token in (forged, unsigned):
                for node in (a, b):
                    p = at(node, token)
                    answer = await p.join()
                    await p.close()
                    assert answer["type"] == "error" and p.close_code == 4001, answer
        assert await lease(redis_server, "forged-1") is None
        assert await lease(redis_server, held.id) == before


async def test_an_owner_that_lost_its_lease_lets_the_visit_go(
        nodes: tuple[Server, Server], redis_server: RedisServer) -> None:
    a, _ = nodes
    visit = visit_now("fence-1")
    async with family_visit(a, visit, "f") as (inmate, family):
        owner = (await lease(redis_server, visit.id) or "").split(":")[0]
        async with Redis.from_url(redis_server.url, decode_responses=True) as r:
            await r.set(f"visit:{visit.id}", "elsewhere:99", px=60_000)  # another owner
        for p in (inmate, family):  # let go at the old owner's next renewal, not ended
            await p.wait_for(lambda p=p: p.close_code is not None, 2 * TTL_S)
            assert not [e for e in p.events if e["type"] == "ended"], p.events
            assert (p.error or {}).get("code") == "server_shutdown" and p.close_code == 4011
    # And the old owner refuses a join for it (its fence), whichever node it arrives at.
    rejoin = at(a, a.token("inmate-f", "inmate", visit))
    answer = await rejoin.join()
    await rejoin.close()
    assert answer["type"] == "error" and answer["code"] == "server_shutdown", (owner, answer)


async def test_draining_and_a_killed_node(nodes: tuple[Server, Server],
                                          redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = nodes

    def drain(node: str, *undo: str) -> None:
        """As an operator on that node runs it (its configuration names the node)."""
        env = {**os.environ, **node_env(redis_server, node, None)}
        subprocess.run([sys.executable, "-m", "app.cli", "drain", *undo],
                       cwd=ROOT, env=env, check=True, capture_output=True)

    async def draining(ids: set[str]) -> bool:
        return {n for n, f in (await registered(redis_server)).items()
                if f.get("draining") == "1"} == ids

    drain("a"), drain("b")
    try:
        await until(lambda: draining({"a", "b"}))
        full = at(a, a.token("inmate-k0", "inmate", visit_now("full-1")))
        answer = await full.join()
        await full.close()
        assert answer.get("code") == "server_full" and full.close_code == 4014, answer
        keys = a.data_dir / "keys" / "public"
        with running_server(tmp_path / "c", **node_env(redis_server, "c", keys)) as c:
            visit = visit_now("kill-1")
            async with in_visit(at(a, a.token("inmate-k", "inmate", visit))):
                assert (await lease(redis_server, visit.id) or "").startswith("c:")
                assert c.process is not None
                os.kill(c.process.pid, signal.SIGKILL)
                killed = time.monotonic()

                async def gone() -> bool:
                    return ("c" not in await registered(redis_server)
                            and await lease(redis_server, visit.id) is None)

                await until(gone, 2 * TTL_S)
                assert time.monotonic() - killed >= TTL_S - 1  # by TTL, not by a goodbye
    finally:
        drain("a", "--undo"), drain("b", "--undo")
    await until(lambda: draining(set()))
    # The visit can be placed again: a rejoin lands on a live node, under a new epoch.
    async with in_visit(at(b, a.token("inmate-k", "inmate", visit))):
        node, epoch = (await lease(redis_server, visit.id) or ":").split(":")
        assert node in ("a", "b") and int(epoch) == 2
