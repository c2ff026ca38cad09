"""An hour-long receiver outage, replayed under a simulated clock: the sender's real
delivery loop posts to a real HTTP endpoint, and only the waits between attempts are
skipped. The outbox holds just the undelivered events, retries stay capped, and
everything arrives in order soon after the receiver is back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from records.store import connect
from records.webhooks import Outbox, Pacing, WebhookSender
from tests.support.webhooks import serving, signed_body

SECRET = b"records-system-shared-secret"
PACING = Pacing(min_backoff_s=0.5, max_backoff_s=60.0, timeout_s=2.0, max_attempts=20,
                keep_delivered_s=600.0)
HOUR_S = 3600.0


@dataclass
class SimulatedClock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Receiver:
    """Answers 503 while ``down`` (as a proxy in front of a stopped records system does)."""

    clock: SimulatedClock
    down: bool = True
    attempts_at: list[float] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await signed_body(request, SECRET, self.clock())
        self.attempts_at.append(self.clock())
        if self.down:
            return web.Response(status=503)
        self.accepted.append(json.loads(body)["data"]["n"])
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(SimulatedClock())
    async with serving(r.handle) as url:
        r.url = url
        yield r


async def run_until(sender: WebhookSender, session: aiohttp.ClientSession,
                    clock: SimulatedClock, end: float, outbox: Outbox | None = None,
                    queue_every_s: float = 300.0, queued: list[int] | None = None) -> None:
    """Drive the sender's loop until simulated time ``end``, skipping its waits; every
    ``queue_every_s`` a finished visit adds five events (when ``outbox`` is given)."""
    next_queue = clock.now
    while clock.now < end:
        if outbox is not None and queued is not None and clock.now >= next_queue:
            for _ in range(5):
                queued.append(len(queued) + 1)
                outbox.add("visit.event", {"n": queued[-1]}, clock.now)
            next_queue += queue_every_s
        delay = await sender.step(session)
        wake = min(clock.now + delay, end)
        if outbox is not None:
            wake = min(wake, next_queue)
        clock.now = max(wake, clock.now)


async def test_an_hour_long_outage_keeps_the_outbox_bounded_and_backoff_capped(
        database: Path | str, receiver: Receiver) -> None:
    clock = receiver.clock
    db = connect(database)
    outbox = Outbox(db)
    sender = WebhookSender(outbox, receiver.url, SECRET, PACING, clock=clock)
    queued: list[int] = []
    started = clock.now
    async with aiohttp.ClientSession() as session:
        await run_until(sender, session, clock, started + HOUR_S, outbox, queued=queued)
        # Only the head event is tried, ever more slowly, never more than a minute apart.
        gaps = [b - a for a, b in pairwise(receiver.attempts_at)]
        assert max(gaps) <= PACING.max_backoff_s + 1e-6, max(gaps)
        assert 60 <= len(receiver.attempts_at) <= 130, len(receiver.attempts_at)
        assert min(gaps[10:]) >= PACING.max_backoff_s / 2 - 1e-6  # settled at the cap
        # One row per undelivered event, none dead-lettered for an unavailable receiver.
        assert outbox.depth() == len(queued) == 60
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 60
        assert db.execute("SELECT COUNT(*) FROM outbox WHERE dead_at IS NOT NULL"
                          ).fetchone()[0] == 0
        # The receiver comes back: within one capped backoff, everything, in order.
        receiver.down = False
        back = clock.now
        await run_until(sender, session, clock, back + PACING.max_backoff_s + 1)
        assert receiver.accepted == queued
        assert outbox.depth() == 0
        # Delivered rows go once they are older than keep_delivered_s.
        await run_until(sender, session, clock, clock.now + PACING.prune_every_s + 1)
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
