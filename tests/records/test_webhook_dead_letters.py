"""The outbox stays bounded and moving: nothing stored without a webhook, delivered events
pruned, and an event the receiver will not take set aside so the others still arrive in
order. Against a real receiver (an aiohttp endpoint that checks signatures)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from records.dialect import Connection, open_database
from records.store import connect
from records.webhooks import Outbox, Pacing, WebhookSender
from tests.support.postgres import server_database
from tests.support.server import in_visit, inmate_and_family, running_server, visit_now
from tests.support.webhooks import serving, signed_body

SECRET = b"records-system-shared-secret"
FAST = Pacing(min_backoff_s=0.02, max_backoff_s=0.1, timeout_s=2.0, max_attempts=3)


@dataclass
class Receiver:
    """Answers each event by its ``data.n``: a fixed status from ``answers``, or 204 (and
    the event is accepted). ``unavailable`` answers the first requests with 503."""

    answers: dict[int, int] = field(default_factory=dict)
    unavailable: int = 0
    accepted: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        n = json.loads(await signed_body(request, SECRET, time.time()))["data"]["n"]
        self.seen.append(n)
        if self.unavailable:
            self.unavailable -= 1
            return web.Response(status=503)
        if n in self.answers:
            return web.Response(status=self.answers[n])
        self.accepted.append(n)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    async with serving(r.handle) as url:
        r.url = url
        yield r


def dead_letters(reason: str) -> float:
    return REGISTRY.get_sample_value("visitbridge_webhook_dead_letters_total",
                                     {"reason": reason}) or 0.0


def rows(db: Connection) -> list[dict[str, Any]]:
    return [{**dict(r), "n": json.loads(r["body"])["data"]["n"]} for r in db.execute(
        "SELECT body, attempts, last_error, delivered_at, dead_at FROM outbox ORDER BY seq")]


async def deliver(database: Path | str, receiver: Receiver, count: int,
                  pacing: Pacing = FAST, settle_s: float = 0.0) -> Connection:
    """Queue events 1..count, run a sender until none is pending (then ``settle_s``)."""
    db = connect(database)
    outbox = Outbox(db)
    sender = WebhookSender(outbox, receiver.url, SECRET, pacing)
    sender.start()
    for n in range(1, count + 1):
        outbox.add("visit.started", {"n": n}, time.time())
    sender.wake()
    deadline = time.monotonic() + 10
    while outbox.depth():
        assert time.monotonic() < deadline, rows(db)
        await asyncio.sleep(0.02)
    await asyncio.sleep(settle_s)
    await sender.close()
    return db


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_an_event_refused_for_good_is_set_aside_and_the_rest_arrive_in_order(
        database: Path | str, receiver: Receiver, status: int) -> None:
    receiver.answers = {2: status}
    before = dead_letters("rejected")
    db = await deliver(database, receiver, 4)
    assert receiver.accepted == [1, 3, 4]
    assert receiver.seen == [1, 2, 3, 4]  # one try: a 4xx will not change its mind
    assert dead_letters("rejected") - before == 1
    dead = [r for r in rows(db) if r["dead_at"] is not None]
    assert [(r["n"], r["delivered_at"], r["last_error"][:8]) for r in dead] == [
        (2, None, f"HTTP {status}")]


async def test_an_event_that_keeps_failing_is_set_aside_after_max_attempts(
        database: Path | str, receiver: Receiver) -> None:
    receiver.answers = {1: 500, 3: 429}  # 429 is "slow down", never a reason to give up
    before = dead_letters("attempts")
    db = connect(database)
    outbox = Outbox(db)
    sender = WebhookSender(outbox, receiver.url, SECRET, FAST)
    sender.start()
    for n in (1, 2, 3):
        outbox.add("visit.started", {"n": n}, time.time())
    sender.wake()
    deadline = time.monotonic() + 10
    while receiver.seen.count(3) < 6:  # well past max_attempts for event 3
        assert time.monotonic() < deadline, receiver.seen
        await asyncio.sleep(0.02)
    await sender.close()
    assert receiver.seen[:4] == [1, 1, 1, 2]  # three failed answers, then the next event
    assert receiver.accepted == [2]
    assert dead_letters("attempts") - before == 1
    assert [(r["n"], r["dead_at"] is not None) for r in rows(db)] == [
        (1, True), (2, False), (3, False)]
    assert outbox.depth() == 1  # event 3 waits, in order, for the receiver to take it


async def test_an_unavailable_receiver_makes_events_wait_never_dead_letters(
        database: Path | str, receiver: Receiver) -> None:
    receiver.unavailable = 8  # more than max_attempts: 503 says nothing about the event
    db = await deliver(database, receiver, 3)
    assert receiver.accepted == [1, 2, 3]
    assert all(r["dead_at"] is None for r in rows(db))


async def test_delivered_events_are_pruned_and_dead_letters_kept(
        database: Path | str, receiver: Receiver) -> None:
    receiver.answers = {2: 400}
    db = await deliver(database, receiver, 3, replace(FAST, keep_delivered_s=0.3),
                       settle_s=1.0)  # the idle sender wakes to prune
    assert receiver.accepted == [1, 3]
    assert [(r["n"], r["dead_at"] is not None) for r in rows(db)] == [(2, True)]


async def test_without_a_webhook_the_server_stores_no_events(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        inmate, family = inmate_and_family(server, visit_now("no-hooks-1"), "n1",
                                           publish=False)
        async with in_visit(inmate, family):
            await family.send({"type": "leave"})
            await inmate.wait_for(lambda: any(e["type"] == "participant_left"
                                              for e in inmate.events), 10)
    db = open_database(server_database(tmp_path / "server"), readonly=True)
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM participants WHERE visit = 'no-hooks-1'"
                      ).fetchone()[0] == 2  # the visit itself was recorded
