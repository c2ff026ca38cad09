"""Signed webhooks to the records system, sent from a SQLite outbox.

Every event is committed to the ``outbox`` table before anything is sent, so a crash,
restart or receiver outage loses nothing. One sender delivers strictly in order: the
oldest undelivered event is retried (with backoff) until the receiver answers 2xx, and
nothing newer overtakes it, because the records system must see ``visit.ended`` after
``visit.started``. Delivery is at least once: if the receiver's answer is lost the event
is sent again with the same ``Visitbridge-Event-Id``, which receivers must use to ignore
repeats. One sender delivers at a time: on SQLite the one process that runs the once-only
jobs; on PostgreSQL, which several servers share, the one holding the delivery lock
(``Outbox.lease``) until its connection ends; the others wait to take over.

An event the receiver rejects for good (a 4xx other than 408 and 429), or keeps failing
(``Pacing.max_attempts`` failed answers), is dead-lettered: kept in the outbox, marked
with ``dead_at`` and skipped, so it cannot block every later event; an alert says so.
A receiver that cannot be reached or says it is unavailable (no answer, 408, 429, 502,
503, 504) fails every event alike, so those attempts never dead-letter: the events wait,
in order. Delivered events are deleted after ``Pacing.keep_delivered_s``. An outbox made
with ``enabled=False`` (no webhook configured) stores nothing.

Each request is signed with HMAC-SHA256 over ``"<unix ts>." + body`` (header
``Visitbridge-Signature: t=<ts>,v1=<hex>``); the timestamp lets receivers refuse replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import Counter, Gauge

from records.dialect import DELIVERY_LOCK, ERRORS, Connection, try_lock

log = logging.getLogger(__name__)

DELIVERIES = Counter("visitbridge_webhook_deliveries",
                     "Webhook delivery attempts, by result", ["result"])
OUTBOX_DEPTH = Gauge("visitbridge_webhook_outbox_depth",
                     "Webhook events not yet delivered to the records system")
DEAD_LETTERS = Counter("visitbridge_webhook_dead_letters",
                       "Webhook events given up on and set aside, by reason", ["reason"])
for _reason in ("rejected", "attempts"):
    DEAD_LETTERS.labels(_reason)  # series exist at 0, so the alert has data
# Answers that say the receiver is unavailable rather than that this event is wrong.
UNAVAILABLE = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    body: str
    attempts: int
    next_attempt_at: float
    rejections: int  # failed answers that count towards dead-lettering


class Outbox:
    """The durable queue; each method commits before returning. Takes a connection from
    ``records.store.connect``, which creates the ``outbox`` table."""

    def __init__(self, db: Connection, *, enabled: bool = True) -> None:
        self._db = db
        self._enabled = enabled
        self._leased = False
        OUTBOX_DEPTH.set(self.depth())

    def lease(self) -> bool:
        """Whether this process is the outbox's one deliverer (taking the role if it is
        free); a sender delivers nothing without it, so no event overtakes another."""
        self._leased = self._leased or try_lock(self._db, DELIVERY_LOCK)
        return self._leased

    def add(self, event_type: str, data: Mapping[str, Any], now: float) -> str | None:
        """Queue an event; returns its id, or None when no webhook is configured."""
        if not self._enabled:
            return None
        event_id = uuid.uuid4().hex
        body = json.dumps({"id": event_id, "type": event_type, "created_at": now,
                           "data": dict(data)}, separators=(",", ":"), ensure_ascii=False)
        with self._db:
            self._db.execute("INSERT INTO outbox (id, type, created_at, body, next_attempt_at) "
                             "VALUES (?, ?, ?, ?, ?)", (event_id, event_type, now, body, now))
        OUTBOX_DEPTH.set(self.depth())
        return event_id

    def next_pending(self) -> Event | None:
        row = self._db.execute(
            "SELECT id, type, body, attempts, next_attempt_at, rejections FROM outbox "
            "WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else Event(*tuple(row))

    def mark_delivered(self, event_id: str, now: float) -> None:
        with self._db:
            self._db.execute("UPDATE outbox SET delivered_at = ?, last_error = '' "
                             "WHERE id = ? AND delivered_at IS NULL", (now, event_id))
        OUTBOX_DEPTH.set(self.depth())

    def mark_failed(self, event_id: str, error: str, retry_at: float, *,
                    counted: bool) -> None:
        """Schedule a retry; ``counted`` failures move the event towards dead-lettering."""
        with self._db:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                             "next_attempt_at = ?, rejections = rejections + ? WHERE id = ?",
                             (error, retry_at, int(counted), event_id))

    def mark_dead(self, event_id: str, error: str, now: float) -> None:
        """Set the event aside for good (kept for an operator), so later ones can go."""
        with self._db:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1, "
                             "rejections = rejections + 1, last_error = ?, dead_at = ? "
                             "WHERE id = ?", (error, now, event_id))
        OUTBOX_DEPTH.set(self.depth())

    def prune(self, delivered_before: float) -> int:
        """Delete events delivered before the given time; returns how many."""
        with self._db:
            return self._db.execute("DELETE FROM outbox WHERE delivered_at < ?",
                                    (delivered_before,)).rowcount

    def depth(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox "
                                "WHERE delivered_at IS NULL AND dead_at IS NULL").fetchone()[0]


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, header: str, body: bytes, now: float,
                     tolerance_s: float = 300) -> bool:
    """What a receiver runs. Several ``v1`` values are accepted, for secret rotation."""
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            macs.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    # compare_digest on every candidate, without stopping early, so timing reveals nothing.
    return any([hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))
                for mac in macs])


def backoff_s(attempts: int, min_s: float, max_s: float, rand: float) -> float:
    """Delay after failure number ``attempts`` (1 = the first); ``rand`` in [0, 1).

    Exponential with "equal jitter": a random point in the upper half of a ceiling that
    doubles per failure (2 * min_s, 4 * min_s, ... up to max_s), so a receiver coming back
    is not hit by every retry at the same instant, yet each wait is at least min_s.
    """
    ceiling = min(max_s, min_s * 2.0 ** min(attempts, 60))
    return max(min_s, ceiling * (0.5 + 0.5 * rand))


@dataclass(frozen=True)
class Pacing:
    """How a sender paces delivery: the bounds of its backoff after a failed attempt, how
    long a receiver has to answer, how often it looks at an outbox that other processes
    add to without waking it (None: only when woken), after how many failed answers it
    gives up on an event, and how long it keeps delivered events."""

    min_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    timeout_s: float = 10.0
    idle_poll_s: float | None = None
    lease_poll_s: float = 1.0  # how often a sender without the delivery lease asks again
    max_attempts: int = 20
    keep_delivered_s: float = 7 * 86400.0

    @property
    def prune_every_s(self) -> float:
        return min(3600.0, self.keep_delivered_s)


class WebhookSender:
    """Delivers the outbox to one URL from a background task."""

    def __init__(self, outbox: Outbox, url: str, secret: bytes, pacing: Pacing = Pacing(), *,
                 clock: Callable[[], float] = time.time) -> None:
        self._outbox = outbox
        self._url = url
        self._secret = secret
        self._pacing = pacing
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = float("-inf")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    def wake(self) -> None:
        self._wakeup.set()

    async def close(self, drain_s: float = 0.0) -> None:
        """Stop after the request in flight, if any, so it is not sent twice; then, for up
        to ``drain_s``, deliver in order what is due (a shutdown sends the visits' ends
        before the process exits; what fails waits in the outbox for the next start)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        timeout = aiohttp.ClientTimeout(total=min(self._pacing.timeout_s, drain_s or 1.0))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while loop.time() < deadline and self._outbox.lease():
                event = self._outbox.next_pending()
                if event is None or event.next_attempt_at > self._clock():
                    break
                await self._deliver(session, event)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._pacing.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping:
                # Cleared before reading the outbox, so an add() after the read still wakes us.
                self._wakeup.clear()
                try:
                    delay = await self.step(session)
                except ERRORS:
                    # A locked or busy database must not end delivery for good.
                    log.exception("webhook outbox unavailable")
                    delay = self._pacing.max_backoff_s
                if delay != 0:
                    await self._sleep(delay)

    async def step(self, session: aiohttp.ClientSession) -> float:
        """One pass of the delivery loop: prune if it is time, deliver the head event if
        due; returns how long to wait (an idle sender wakes to prune). Public so a whole
        outage can be replayed under a simulated clock."""
        if not self._outbox.lease():
            return self._pacing.lease_poll_s  # another process delivers
        now = self._clock()
        if now - self._pruned_at >= self._pacing.prune_every_s:
            self._pruned_at = now
            self._outbox.prune(now - self._pacing.keep_delivered_s)
        event = self._outbox.next_pending()
        if event is None:
            return self._pacing.prune_every_s
        delay = event.next_attempt_at - self._clock()
        if delay > 0:
            return delay
        await self._deliver(session, event)
        return 0

    async def _sleep(self, delay: float | None) -> None:
        poll_s = self._pacing.idle_poll_s
        if poll_s is not None:
            delay = poll_s if delay is None else min(delay, poll_s)
        try:
            await asyncio.wait_for(self._wakeup.wait(), delay)
        except TimeoutError:
            pass

    async def _deliver(self, session: aiohttp.ClientSession, event: Event) -> None:
        body = event.body.encode()
        headers = {
            "Content-Type": "application/json",
            "Visitbridge-Event-Id": event.id,
            "Visitbridge-Event-Type": event.type,
            "Visitbridge-Signature": sign(self._secret, body, int(self._clock())),
        }
        status: int | None = None
        try:
            async with session.post(self._url, data=body, headers=headers) as response:
                status = response.status
                error = "" if 200 <= status < 300 else (
                    f"HTTP {status} {response.reason or ''}".strip())
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        now = self._clock()
        if not error:
            DELIVERIES.labels(result="delivered").inc()
            self._outbox.mark_delivered(event.id, now)
            return
        DELIVERIES.labels(result="failed").inc()
        counted = status is not None and status not in UNAVAILABLE
        rejected = counted and status is not None and 400 <= status < 500
        if rejected or (counted and event.rejections + 1 >= self._pacing.max_attempts):
            reason = "rejected" if rejected else "attempts"
            DEAD_LETTERS.labels(reason=reason).inc()
            self._outbox.mark_dead(event.id, error, now)
            log.error("webhook event dead-lettered", extra={
                "event_id": event.id, "event_type": event.type, "reason": reason,
                "attempts": event.attempts + 1, "error": error})
            return
        pacing = self._pacing
        delay = backoff_s(event.attempts + 1, pacing.min_backoff_s, pacing.max_backoff_s,
                          random.random())
        self._outbox.mark_failed(event.id, error, now + delay, counted=counted)
        log.warning("webhook delivery failed, retrying", extra={
            "event_id": event.id, "event_type": event.type, "attempts": event.attempts + 1,
            "error": error, "retry_in_s": round(delay, 2)})
