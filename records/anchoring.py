"""Anchoring the audit log and recording seals outside the server: checkpoints stored in
the database, and the background job that has each one time-stamped.

Worker 0 (or the only process) runs one ``Anchorer``. Every few seconds it asks
``records.checkpoint.due`` whether a checkpoint is needed (a seal waits, the interval
passed, a visit ended); then it builds and signs the next checkpoint, sends it to the
time-stamp authority and stores it with the token only once the token verifies. A
checkpoint is never stored without its token, so nothing half-anchored is left behind.

An authority that cannot be reached, or answers with something that does not verify,
delays anchoring and nothing else: visits, recordings and the audit log go on. The job
retries with capped exponential backoff, each time with a fresh checkpoint of the head
at that moment, counts failures in ``visitbridge_tsa_requests_total{result="error"}``
and logs each one. Entries written meanwhile are covered by the first checkpoint that
succeeds, with the authority's time of that success.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from cryptography import x509
from prometheus_client import Counter, Gauge

from records import checkpoint as checkpoints
from records import timestamp
from records.chain import GENESIS
from records.checkpoint import Checkpoint, Stored, Verdict
from records.dialect import ERRORS, Connection
from records.webhooks import backoff_s

log = logging.getLogger(__name__)

TSA_REQUESTS = Counter("visitbridge_tsa_requests",
                       "Requests to the time-stamp authority, by result", ["result"])
for _result in ("ok", "error"):
    TSA_REQUESTS.labels(_result)
ANCHOR_PENDING = Gauge("visitbridge_audit_anchor_pending",
                       "1 while a checkpoint is due but not yet time-stamped")
LAST_ANCHOR = Gauge("visitbridge_audit_anchored_timestamp_seconds",
                    "When the newest checkpoint was time-stamped (unix seconds)")


class CheckpointStore:
    """Reads and appends checkpoints; a connection from ``records.store.connect``."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def last(self) -> Checkpoint | None:
        row = self._db.execute("SELECT data FROM checkpoints ORDER BY n DESC LIMIT 1").fetchone()
        return checkpoints.parse(row[0].encode()) if row else None

    def head(self) -> tuple[int, str]:
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def pending_seals(self) -> dict[str, str]:
        """Seals of recordings that no checkpoint holds yet."""
        return {row[0]: row[1] for row in self._db.execute(
            "SELECT visit, seal FROM recordings r WHERE seal IS NOT NULL "
            "AND state IN ('sealed', 'recovered') AND NOT EXISTS (SELECT 1 FROM "
            "checkpoint_seals c WHERE c.visit = r.visit AND c.seal = r.seal)")}

    def last_visit_end(self) -> float | None:
        row = self._db.execute("SELECT MAX(ended_at) FROM visits").fetchone()
        return row[0] if row else None

    def add(self, cp: Checkpoint, sig: str, token: bytes, token_time: str, now: float) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO checkpoints (n, hash, data, sig, token, token_time, "
                       "audit_seq, created_at) VALUES (?,?,?,?,?,?,?,?)",
                       (cp.n, cp.hash(), cp.data().decode(), sig,
                        base64.b64encode(token).decode(), token_time, cp.audit_seq, now))
            for visit, seal in cp.seals.items():
                db.execute("INSERT INTO checkpoint_seals (visit, seal, n) VALUES (?,?,?) "
                           "ON CONFLICT DO NOTHING", (visit, seal, cp.n))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def rows(self, visit: str | None = None) -> list[dict[str, Any]]:
        """Stored checkpoints, oldest first (with ``visit``: those holding its seal), the
        token decoded to DER bytes."""
        sql = "SELECT n, hash, data, sig, token, token_time FROM checkpoints"
        args: tuple[str, ...] = ()
        if visit is not None:
            sql += " WHERE n IN (SELECT n FROM checkpoint_seals WHERE visit = ?)"
            args = (visit,)
        return [{"n": r[0], "hash": r[1], "data": r[2].encode(), "sig": r[3],
                 "token": base64.b64decode(r[4]), "token_time": r[5]}
                for r in self._db.execute(sql + " ORDER BY n", args)]


@dataclass(frozen=True)
class AnchorPacing:
    interval_s: float = 3600.0  # a checkpoint at least this often while the log moves
    max_backoff_s: float = 300.0  # longest wait between attempts while the TSA fails
    min_backoff_s: float = 1.0
    poll_s: float = 2.0  # how often to look for ended visits and new seals
    timeout_s: float = 10.0  # one request to the authority


class Signer(Protocol):
    """The key that signs checkpoints (the recording key): its id goes into each one."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> str: ...


class Anchorer:
    """Time-stamps checkpoints from a background task (one per database)."""

    def __init__(self, db: Connection, url: str, roots: list[x509.Certificate],
                 signer: Signer, pacing: AnchorPacing = AnchorPacing(), *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = CheckpointStore(db)
        self._url = url
        self._roots = roots
        self._signer = signer
        self._pacing = pacing
        self._clock = clock
        self._failures = 0
        self._retry_at = float("-inf")
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="anchoring")

    async def close(self, drain_s: float = 5.0) -> None:
        """Stop, then make one last attempt within ``drain_s`` if a checkpoint is due (a
        shutdown ends visits and seals recordings just before)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        self._retry_at = float("-inf")
        timeout = aiohttp.ClientTimeout(total=min(self._pacing.timeout_s, drain_s))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                await self._step(session)
            except ERRORS:
                log.exception("audit anchoring: database unavailable at shutdown")

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._pacing.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping.is_set():
                try:
                    delay = await self._step(session)
                except Exception:  # a busy database or a bug: anchoring must go on
                    log.exception("audit anchoring failed")
                    delay = self._pacing.max_backoff_s
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except TimeoutError:
                    pass

    async def _step(self, session: aiohttp.ClientSession) -> float:
        """Anchor if due; returns how long to wait before looking again."""
        now = self._clock()
        if now < self._retry_at:
            return min(self._retry_at - now, self._pacing.poll_s)
        store = self._store
        previous, head, seals = store.last(), store.head(), store.pending_seals()
        if not checkpoints.due(previous, head_seq=head[0], pending_seals=len(seals),
                               last_visit_end=store.last_visit_end(), now=now,
                               interval_s=self._pacing.interval_s):
            ANCHOR_PENDING.set(0)
            return self._pacing.poll_s
        ANCHOR_PENDING.set(1)
        cp = checkpoints.following(previous, head=head, seals=seals, now=now,
                                   key_id=self._signer.key_id)
        problem = await self._stamp(session, cp, now)
        if problem:
            self._failures += 1
            wait = backoff_s(self._failures, self._pacing.min_backoff_s,
                             self._pacing.max_backoff_s, random.random())
            self._retry_at = now + wait
            TSA_REQUESTS.labels("error").inc()
            log.warning("time-stamp authority failed: audit checkpoint %d not anchored, "
                        "retrying in %.0f s (%s)", cp.n, wait, problem,
                        extra={"tsa_url": self._url, "attempts": self._failures,
                               "audit_seq": cp.audit_seq})
            return min(wait, self._pacing.poll_s)
        self._failures, self._retry_at = 0, float("-inf")
        TSA_REQUESTS.labels("ok").inc()
        ANCHOR_PENDING.set(0)
        LAST_ANCHOR.set(now)
        return 0 if store.pending_seals() else self._pacing.poll_s

    async def _stamp(self, session: aiohttp.ClientSession, cp: Checkpoint, now: float) -> str:
        """Time-stamp and store one checkpoint; returns the problem, "" when stored."""
        data = cp.data()
        sent = timestamp.request(data)
        try:
            async with session.post(self._url, data=sent.as_bytes(),
                                    headers={"Content-Type": timestamp.CONTENT_TYPE}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    return f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        result = timestamp.check(body, data, self._roots, sent)
        if result.problem:
            return f"the token does not verify: {result.problem}"
        self._store.add(cp, self._signer.sign(cp.hash().encode("ascii")), body, result.time, now)
        log.info("audit checkpoint anchored", extra={
            "checkpoint": cp.n, "hash": cp.hash(), "audit_seq": cp.audit_seq,
            "audit_hash": cp.audit_hash, "seals": len(cp.seals), "tsa_time": result.time})
        return ""


def verify_anchors(db: Connection, roots: list[x509.Certificate],
                   signature_ok: Callable[[bytes, str], bool]) -> Verdict:
    """Check the stored checkpoints, their signatures (``signature_ok(hash_text, sig)``)
    and tokens, and the audit chain against them (``records.checkpoint.judge``)."""
    stored = [Stored(data=row["data"], stored_hash=row["hash"],
                     signature_ok=signature_ok(row["hash"].encode("ascii"), row["sig"]),
                     token_problem=(check := timestamp.check(row["token"], row["data"],
                                                             roots)).problem,
                     token_time=check.time)
              for row in CheckpointStore(db).rows()]
    chain: Mapping[int, str] = dict(db.execute("SELECT seq, hash FROM audit").fetchall())
    return checkpoints.judge(stored, chain, max(chain, default=0))
