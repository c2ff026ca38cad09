"""Relayed joins: the first picture of a page that joins at a node which does not own its
visit (and is relayed to the owner), against one that joins at the owner.

Part of the nodes benchmark (benchmarks/nodes.py): on two fresh nodes sharing a Redis,
joins go straight to the visit's owner and through the other node, alternately, each
into a new visit whose first party already publishes; each is timed from sending
``join`` to the first forwarded video packet and to the first keyframe (the first
picture a browser can show).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from app.cluster import Lease
from auth.tokens import VisitClaim
from tests.support.redis import running_redis

from .cores import ServerCores
from .measure import distribution_ms
from .media import EncodedClip
from .node_group import Nodes, running_nodes
from .party import Party

PICTURE_TIMEOUT_S = 10.0


async def _until_connected(party: Party) -> None:
    deadline = time.monotonic() + PICTURE_TIMEOUT_S
    while party.pc is None or party.pc.connectionState != "connected":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{party.name} did not connect")
        await asyncio.sleep(0.05)


async def _timed_join(nodes: Nodes, redis: Redis, visit_id: str, through_other: bool,
                      video: EncodedClip, audio: EncodedClip) -> Party:
    """A visit whose inmate already publishes; the family member then joins at its owner
    or at the other node. Returns the family member once it has a picture."""
    now = int(time.time())
    claim = VisitClaim(id=visit_id, starts_at=now - 5, ends_at=now + 3600, privileged=True)
    inmate = Party(f"inmate-{visit_id}", nodes.ws_urls[0],
                   nodes.token(f"inmate-{visit_id}", "inmate", claim), video, audio)
    family: Party | None = None
    try:
        await inmate.join()
        await _until_connected(inmate)
        await asyncio.sleep(0.5)  # its media reaches the owner before anyone subscribes
        lease = Lease.parse(await redis.get(f"visit:{visit_id}"))
        assert lease is not None, f"visit {visit_id} has no lease"
        owner = nodes.ids.index(lease.node)
        url = nodes.ws_urls[1 - owner if through_other else owner]
        family = Party(f"family-{visit_id}", url,
                       nodes.token(f"family-{visit_id}", "family", claim), video, audio)
        await family.join()
        deadline = time.monotonic() + PICTURE_TIMEOUT_S
        while family.first_keyframe_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return family
    finally:
        await inmate.close()
        if family is not None:
            await family.close()


async def _joins(nodes: Nodes, redis_url: str, count: int, video: EncodedClip,
                 audio: EncodedClip) -> dict[str, Any]:
    """``count`` joins at the owner and ``count`` through the other node, alternately."""
    timed: dict[str, list[Party]] = {"direct": [], "relayed": []}
    stamp = int(time.time())
    async with Redis.from_url(redis_url, decode_responses=True) as redis:
        for i in range(2 * count):
            kind = "relayed" if i % 2 else "direct"
            timed[kind].append(await _timed_join(nodes, redis, f"join-{stamp}-{i}",
                                                 kind == "relayed", video, audio))
    result: dict[str, Any] = {}
    for kind, parties in timed.items():
        result[kind] = {
            "without_picture": sum(p.picture_seconds is None for p in parties),
            "to_video_ms": distribution_ms([s for p in parties
                                            if (s := p.join_seconds) is not None]),
            "to_picture_ms": distribution_ms([s for p in parties
                                              if (s := p.picture_seconds) is not None])}
    direct, relayed = result["direct"]["to_picture_ms"], result["relayed"]["to_picture_ms"]
    result["relayed_minus_direct_picture_ms"] = {
        stat: (round(relayed[stat] - direct[stat], 1)
               if relayed[stat] is not None and direct[stat] is not None else None)
        for stat in ("median", "p95")}
    return result


def join_phase(args: argparse.Namespace, video: EncodedClip, audio: EncodedClip,
                seats: ServerCores) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="visitbridge-nodes-") as tmp, \
            running_redis(Path(tmp) / "redis") as redis, \
            running_nodes(Path(tmp), 2, seats, redis) as nodes:
        return asyncio.run(_joins(nodes, redis.url, args.joins, video, audio))
