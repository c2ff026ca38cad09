"""A node that is alive but lost its lease lets the visit go, without ending it.

Two ``visitbridge serve`` nodes share a real ``redis-server``, a real PostgreSQL database
and one recordings folder. The owner of a recorded visit is paused (SIGSTOP) past its
lease's TTL, as a long stall or a cut to Redis would leave it; meanwhile the inmate's
page rejoins through the other node, which takes the visit over under the next epoch.
When the paused node wakes (SIGCONT) it must let the visit go at once: its pages are told
``server_shutdown`` (close 4011) and reconnect into the same seats on the new owner; it
writes no end record and nothing more into the recording, which verifies as one chain
signed by both holders in turn. The recording is encrypted at rest with the data keys in
one shared folder, so the new owner can read (and salvage) what the old one left open.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from app.cluster import Lease
from recorder.keystore import create_keyring
from records.dialect import open_database
from tests.support.nodes import (
    flowing,
    lease,
    node_id,
    officer,
    rejoin,
    running_nodes,
    sealed_recordings,
    until,
    verified_chain,
    watch_leases,
)
from tests.support.redis import running_redis
from tests.support.server import BLUE, RED, Participant, Server, visit_now

pytestmark = pytest.mark.solo  # a lease's TTL against a paused owner, beside real media

NODE_TTL_S = 2  # the paused node leaves placement after this, before its lease lapses
TTL_S = 3


def ended_records(node: Server, visit_id: str) -> tuple[str | None, int]:
    """The visit's state in the shared records and how many ``visit.ended`` events the
    webhook outbox holds for it."""
    db = open_database(node.env["VISITBRIDGE_DATABASE_URL"])
    try:
        row = db.execute("SELECT state FROM visits WHERE id = ?", (visit_id,)).fetchone()
        events = db.execute("SELECT body FROM outbox WHERE type = 'visit.ended'").fetchall()
    finally:
        db.close()
    return (row[0] if row else None), sum(visit_id in body for (body,) in events)


async def test_a_paused_owner_lets_its_visit_go_without_ending_it(tmp_path: Path) -> None:
    create_keyring(tmp_path / "keyring.json")
    with running_redis(tmp_path / "redis") as redis, running_nodes(
            tmp_path, redis, ("a", "b"), NODE_TTL_S, TTL_S, VISITBRIDGE_SEGMENT_S="1",
            VISITBRIDGE_RECORDINGS_KEY_FILE=str(tmp_path / "keyring.json"),
            VISITBRIDGE_RECORDINGS_DATA_KEYS_PATH=str(tmp_path / "data-keys"),
            # Webhook events queue in the shared outbox (nothing listens: they stay there).
            VISITBRIDGE_WEBHOOK_URL="http://127.0.0.1:9/visitbridge",
            VISITBRIDGE_WEBHOOK_SECRET="lease-loss-test-secret") as nodes:
        issuer = nodes[0]
        visit = visit_now("paused-1")
        inmate_token = issuer.token("inmate-p", "inmate", visit)
        family_token = issuer.token("family-p", "family", visit)
        # Each page at its own node: one of them is relayed to the owner.
        first = [Participant(nodes[0], inmate_token, RED),
                 Participant(nodes[1], family_token, BLUE)]
        again: list[Participant] = []
        seen: dict[str, list[Lease]] = {visit.id: []}
        watcher = asyncio.ensure_future(watch_leases(redis.url, seen))
        try:
            for p in first:
                assert (await p.join())["type"] == "joined"
            start = time.monotonic()
            await asyncio.gather(*(flowing(p, start + 30) for p in first))
            slots = {p.token: p.events[0]["you"]["slot"] for p in first}
            before = Lease.parse(await lease(redis, visit.id))
            assert before is not None
            owner = next(n for n in nodes if node_id(n) == before.node)
            other = next(n for n in nodes if n is not owner)
            await asyncio.sleep(2.5)  # segments sealed by the owner, one open
            assert owner.process is not None

            os.kill(owner.process.pid, signal.SIGSTOP)
            try:
                paused = time.monotonic()

                async def lapsed() -> bool:
                    return await lease(redis, visit.id) is None

                await until(lapsed, TTL_S + 2)
                # The inmate's page gives up on the silent node and joins elsewhere.
                again.append(await rejoin([other], inmate_token, RED, paused + 10))
                after = Lease.parse(await lease(redis, visit.id))
                assert after == Lease(node_id(other), before.epoch + 1), after
            finally:
                os.kill(owner.process.pid, signal.SIGCONT)

            # Awake, the old owner lets the visit go: told to reconnect, not ended.
            for p in first:
                await p.wait_for(lambda p=p: p.close_code is not None, 5)
                assert not [e for e in p.events if e["type"] == "ended"], p.events
                assert (p.error or {}).get("code") == "server_shutdown", p.events[-3:]
                assert p.close_code == 4011
            # The family's page reconnects through the old owner, which relays it now.
            again.append(await rejoin([owner], family_token, BLUE, time.monotonic() + 10))
            start = time.monotonic()
            await asyncio.gather(*(flowing(p, start + 15) for p in again))
            assert {p.token: p.events[0]["you"]["slot"] for p in again} == slots
            assert ended_records(owner, visit.id) == ("live", 0)
            staff = issuer.token("officer-1", "officer", None)
            for node, listed in ((owner, set()), (other, {visit.id})):
                running = await officer(node, staff, "GET", "/api/visits")
                assert {d["id"] for d in running["visits"]} == listed, node_id(node)
            assert seen[visit.id] == [before, after]  # one holder at a time, epochs rising
            await officer(other, staff, "POST", f"/api/visits/{visit.id}/end",
                          json={"reason": "test over"})
        finally:
            watcher.cancel()
            for p in first + again:
                await p.close()
        assert ended_records(owner, visit.id) == ("ended", 1)
        sealed = sealed_recordings(owner, 1)
        # No double recording: every file in the folder is in the one chain, each line
        # after the new owner's claim is its own (the old owner's appends are fenced).
        entries = verified_chain(tmp_path, visit.id, sealed[visit.id], [before, after])
        salvaged = [e for e in entries if e["type"] == "recovered"]  # the one left open
        assert salvaged and all("remuxed" in e["note"] for e in salvaged), salvaged
