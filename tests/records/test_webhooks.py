"""Webhooks: signed, in order, never lost across receiver outages or server restarts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from records.store import connect
from records.webhooks import Outbox, Pacing, WebhookSender, backoff_s, sign, verify_signature
from tests.support.process import free_port

SECRET = b"records-system-shared-secret"
FAST = Pacing(min_backoff_s=0.05, max_backoff_s=0.5, timeout_s=2.0)


@dataclass
class Receiver:
    """The records system's end: checks each signature, then answers with a scripted status."""

    script: list[int | str] = field(default_factory=list)  # status codes, or "hang"
    accepted: list[dict[str, Any]] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    requests: int = 0
    bad_signatures: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(SECRET, request.headers["Visitbridge-Signature"], body,
                                time.time()):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.requests += 1
        step = self.script.pop(0) if self.script else 200
        if step == "hang":
            await asyncio.sleep(5)
        if step != 200:
            return web.Response(status=500)
        event = json.loads(body)
        assert request.headers["Visitbridge-Event-Id"] == event["id"]
        assert request.headers["Visitbridge-Event-Type"] == event["type"]
        assert request.headers["Content-Type"] == "application/json"
        self.accepted.append(event)
        self.accepted_at.append(time.time())
        return web.Response(status=204)

    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        return self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.accepted]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    if r.runner is not None:
        await r.stop()


def deliveries(result: str) -> float:
    return REGISTRY.get_sample_value("visitbridge_webhook_deliveries_total",
                                     {"result": result}) or 0.0


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def add_visit_events(outbox: Outbox, sender: WebhookSender | None, visit: str) -> list[str]:
    now = time.time()
    ids = [
        outbox.add("visit.started", {"visit": visit}, now),
        outbox.add("participant.joined", {"visit": visit, "participant": "inmate-1"}, now),
        outbox.add("participant.joined", {"visit": visit, "participant": "family-2"}, now),
        outbox.add("participant.left", {"visit": visit, "participant": "family-2"}, now),
        outbox.add("visit.ended", {"visit": visit, "cause": "time_up", "minutes": 30}, now),
    ]
    if sender is not None:
        sender.wake()
    return ids


def test_a_signature_verifies_and_any_change_is_refused() -> None:
    body = b'{"id":"e1","type":"visit.started"}'
    now = 1_760_000_000
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, header, body, now + 10)
    assert not verify_signature(b"another-secret", header, body, now)
    assert not verify_signature(SECRET, header, body.replace(b"started", b"ended"), now)
    assert not verify_signature(SECRET, header, body, now + 301)  # replayed later
    assert not verify_signature(SECRET, header, body, now - 301)
    assert not verify_signature(SECRET, f"t={now + 1}," + header.split(",")[1], body, now)
    assert not verify_signature(SECRET, "garbage", body, now)
    assert not verify_signature(SECRET, f"t={now},v1=é", body, now)
    assert not verify_signature(SECRET, "t=²,v1=00", body, now)


def test_backoff_doubles_within_bounds_with_jitter() -> None:
    lows = [backoff_s(n, 0.5, 60.0, 0.0) for n in range(1, 12)]
    highs = [backoff_s(n, 0.5, 60.0, 0.999) for n in range(1, 12)]
    assert lows == sorted(lows) and highs == sorted(highs)
    assert all(0.5 <= low < high <= 60.0 for low, high in zip(lows, highs, strict=True))
    assert backoff_s(1, 0.5, 60.0, 0.0) == 0.5
    assert backoff_s(1, 0.5, 60.0, 0.999) == pytest.approx(1.0, abs=0.01)
    assert backoff_s(4, 0.5, 60.0, 0.0) == 4.0
    assert backoff_s(10_000, 0.5, 60.0, 0.999) == pytest.approx(60.0, abs=0.1)


async def test_events_arrive_signed_and_in_order(database: Path | str, receiver: Receiver) -> None:
    port = await receiver.start()
    outbox = Outbox(connect(database))
    sender = WebhookSender(outbox, f"http://127.0.0.1:{port}/hooks", SECRET, FAST)
    sender.start()
    ids = add_visit_events(outbox, sender, "v-1")
    await until(lambda: outbox.depth() == 0)
    await sender.close()

    assert receiver.ids == ids
    assert receiver.bad_signatures == 0
    assert receiver.accepted[-1]["type"] == "visit.ended"
    assert receiver.accepted[-1]["data"] == {"visit": "v-1", "cause": "time_up", "minutes": 30}
    assert set(receiver.accepted[0]) == {"id", "type", "created_at", "data"}
    assert REGISTRY.get_sample_value("visitbridge_webhook_outbox_depth") == 0


async def test_events_queued_while_the_receiver_is_down_arrive_once_in_order(
        database: Path | str, receiver: Receiver) -> None:
    port = free_port()  # nothing listens here yet
    outbox = Outbox(connect(database))
    sender = WebhookSender(outbox, f"http://127.0.0.1:{port}/hooks", SECRET, FAST)
    sender.start()
    failed_before = deliveries("failed")
    ids = add_visit_events(outbox, sender, "v-2")
    await until(lambda: deliveries("failed") >= failed_before + 3)
    assert outbox.depth() == 5
    assert REGISTRY.get_sample_value("visitbridge_webhook_outbox_depth") == 5

    await receiver.start(port)
    await until(lambda: outbox.depth() == 0)
    await asyncio.sleep(0.3)  # room for any duplicate to show up
    await sender.close()
    assert receiver.ids == ids


async def test_a_failing_receiver_gets_the_same_event_again_until_it_accepts(
        database: Path | str, receiver: Receiver) -> None:
    receiver.script = [500, 500]
    port = await receiver.start()
    outbox = Outbox(connect(database))
    sender = WebhookSender(outbox, f"http://127.0.0.1:{port}/hooks", SECRET, FAST)
    sender.start()
    failed_before, delivered_before = deliveries("failed"), deliveries("delivered")
    event_id = outbox.add("visit.started", {"visit": "v-3"}, time.time())
    sender.wake()
    await until(lambda: outbox.depth() == 0)
    await sender.close()

    assert receiver.requests == 3
    assert receiver.ids == [event_id]
    assert deliveries("failed") - failed_before == 2
    assert deliveries("delivered") - delivered_before == 1


async def test_a_receiver_that_does_not_answer_in_time_gets_the_event_again(
        database: Path | str, receiver: Receiver) -> None:
    receiver.script = ["hang"]
    port = await receiver.start()
    outbox = Outbox(connect(database))
    sender = WebhookSender(outbox, f"http://127.0.0.1:{port}/hooks", SECRET,
                           replace(FAST, timeout_s=0.3))
    sender.start()
    first = outbox.add("visit.started", {"visit": "v-4"}, time.time())
    second = outbox.add("visit.ended", {"visit": "v-4"}, time.time())
    sender.wake()
    await until(lambda: outbox.depth() == 0)
    await sender.close()
    assert receiver.ids == [first, second]


async def test_pending_events_survive_a_restart_and_arrive_once(
        database: Path | str, receiver: Receiver) -> None:
    path = database
    port = await receiver.start()
    url = f"http://127.0.0.1:{port}/hooks"

    db = connect(path)
    outbox = Outbox(db)
    sender = WebhookSender(outbox, url, SECRET, FAST)
    sender.start()
    before = [outbox.add("visit.started", {"visit": "v-5"}, time.time())]
    sender.wake()
    await until(lambda: outbox.depth() == 0)
    await sender.close()
    # Written while the sender is stopped, e.g. in the moments before a crash.
    after = [outbox.add("participant.joined", {"visit": "v-5", "participant": p}, time.time())
             for p in ("inmate-1", "family-2", "family-3")]
    db.close()

    outbox = Outbox(connect(path))
    assert outbox.depth() == 3
    sender = WebhookSender(outbox, url, SECRET, FAST)
    sender.start()
    await until(lambda: outbox.depth() == 0)
    await asyncio.sleep(0.3)
    await sender.close()
    assert receiver.ids == before + after


async def test_a_restart_keeps_the_retry_schedule(database: Path | str, receiver: Receiver) -> None:
    path = database
    db = connect(path)
    outbox = Outbox(db)
    event_id = outbox.add("visit.ended", {"visit": "v-6"}, time.time())
    retry_at = time.time() + 0.8
    outbox.mark_failed(event_id, "HTTP 503 Service Unavailable", retry_at, counted=False)
    db.close()

    port = await receiver.start()
    outbox = Outbox(connect(path))
    sender = WebhookSender(outbox, f"http://127.0.0.1:{port}/hooks", SECRET, FAST)
    sender.start()
    await until(lambda: outbox.depth() == 0)
    await sender.close()
    assert receiver.ids == [event_id]
    assert receiver.accepted_at[0] >= retry_at
