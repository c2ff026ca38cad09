"""``serve --workers N``: a front process that places visits on N SFU worker processes.

Each worker is a whole server (signaling, SFU, recorder) on a loopback port with its own
event loop on its own core; all share the data directory (SQLite in WAL mode). The front
serves the pages, and relays each WebSocket session and API call to the worker that holds
the visit. Only signaling passes through the front: ICE candidates in the SDP are the
worker's own, so media goes straight between browsers and the worker.

Worker 0 also runs the jobs that must run once: crash recovery, the webhook sender and
retention. Worker i listens on ``port + 1 + i``, so that Prometheus can scrape each worker
as a target of its own beside the front (see docs/operations.md, "Monitoring"): each
keeps its process metrics, its event-loop lag and its own ``up``, and a dead worker
shows as a target down. The front's ``/metrics`` holds only the front's own metrics.

The front verifies a join's token (the workers' key store and checks) before it places
the visit: placement follows verified claims only, so a forged token can neither move a
running visit to a second worker nor grow the placement table. A refused token gets the
worker's own refusal (``error``, then the close), counted and audited as a worker would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from api.records import VISIT, VISITS
from app import relay
from app.config import Config
from app.pages import add_pages
from app.placement import Placement, ServerFull
from app.server import add_security_headers, key_store, refusal_audit
from app.workers import Worker, start_workers, stop_workers
from auth.tokens import TOKEN_REFUSALS, VISIT_ROLES, TokenError, TokenVerifier
from records import store as sqlite_store
from records.audit import AuditLog
from signaling.session import first_message, refuse

log = logging.getLogger(__name__)

# The front's own registry: the default one also holds the workers' metrics (imported
# with app.server) at zero, and a front reporting, say, 0 free bytes on the recordings
# volume would set off alerts.
FRONT_REGISTRY = CollectorRegistry()
ProcessCollector(registry=FRONT_REGISTRY)
PlatformCollector(registry=FRONT_REGISTRY)
REFUSED_FULL = Counter("visitbridge_server_full_refusals",
                       "Joins refused because every worker was at its admission threshold",
                       registry=FRONT_REGISTRY)
WORKER_LOAD = Gauge("visitbridge_worker_participants", "Participants placed per worker",
                    ["index"], registry=FRONT_REGISTRY)
PLACEMENTS = Gauge("visitbridge_front_placements",
                   "Visits placed on a worker, each held until its booked end",
                   registry=FRONT_REGISTRY)
WORKER_DEATHS = Counter("visitbridge_worker_deaths",
                        "Worker processes that died; their visits are placed again on rejoin",
                        registry=FRONT_REGISTRY)
FRONT_REGISTRY.register(TOKEN_REFUSALS)  # the front refuses forged tokens itself
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host",
               "content-length"}


def _first_message(data: str) -> dict[str, Any] | None:
    """A join or monitor with a string token, or None (refused as ``bad_message``)."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return None
    if (not isinstance(message, dict) or message.get("type") not in ("join", "monitor")
            or not isinstance(message.get("token"), str)):
        return None
    return message


class Front:
    def __init__(self, config: Config, workers: list[Worker]) -> None:
        self.config = config
        self.workers = workers
        self.placement = Placement.of(len(workers), config.worker_max_participants,
                                      config.max_visitors + 1, config.front_max_placements)
        self._keys = key_store(config)
        self.verifier = TokenVerifier(self._keys, config.token_issuer, config.token_audience,
                                      leeway_s=config.token_leeway_s)
        self._db = sqlite_store.connect(config.database)  # workers created it
        self.refusals = refusal_audit(config, AuditLog(self._db))
        self._http: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def _watch_workers(self, every_s: float = 0.5) -> None:
        """A worker that dies takes no new visits; its visits are placed again, on the
        live workers, when their pages rejoin (their recordings go on, the gap audited)."""
        while True:
            await asyncio.sleep(every_s)
            for worker in self.workers:
                self._dead(worker)

    def _dead(self, worker: Worker) -> bool:
        """Whether the worker's process has ended; the first time, take it out."""
        if worker.process is None or worker.process.poll() is None:
            return False
        if not self.placement.workers[worker.index].down:
            lost = self.placement.worker_down(worker.index)
            WORKER_DEATHS.inc()
            self._report_load()
            log.error("worker died", extra={"worker": worker.index, "visits": lost,
                                            "returncode": worker.process.returncode})
        return True

    async def _died(self, worker: Worker, within_s: float = 1.0) -> bool:
        """Whether a worker that dropped a connection ended: its sockets close a moment
        before the kernel reports the exit, so this waits for that report briefly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not self._dead(worker):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        return self._http

    def app(self) -> web.Application:
        app = web.Application()
        app.on_response_prepare.append(add_security_headers)

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "workers": len(self.workers)})

        async def readyz(request: web.Request) -> web.Response:
            down = [w.index for w in self.workers
                    if w.process is None or w.process.poll() is not None]
            return web.json_response({"status": "not ready" if down else "ready",
                                      "workers_down": down}, status=503 if down else 200)

        async def metrics(request: web.Request) -> web.Response:
            """The front's own metrics (placement and refusals); workers serve theirs."""
            PLACEMENTS.set(self.placement.count(time.time()))
            return web.Response(body=generate_latest(FRONT_REGISTRY),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def close(app: web.Application) -> None:
            if self._http is not None:
                await self._http.close()
            close_keys = getattr(self._keys, "close", None)
            if close_keys is not None:
                await close_keys()
            self.refusals.close()
            self._db.close()

        async def watch(app: web.Application) -> None:
            self._watcher = asyncio.ensure_future(self._watch_workers())

        async def unwatch(app: web.Application) -> None:
            if self._watcher is not None:
                self._watcher.cancel()

        app.on_startup.append(watch)
        app.on_shutdown.append(unwatch)
        app.on_cleanup.append(close)
        add_pages(app)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get(VISITS, self.live_visits)
        app.router.add_route("*", VISIT, self.proxy)
        app.router.add_route("*", VISIT + "/{rest:.*}", self.proxy)
        # Recordings: one worker answers (media tickets are signed per process).
        app.router.add_route("*", "/api/recordings", self.proxy)
        app.router.add_route("*", "/api/recordings/{rest:.*}", self.proxy)
        return app

    def _worker_for(self, request: web.Request) -> Worker:
        visit = request.match_info.get("visit")
        if visit and not request.path.startswith("/api/recordings"):
            index = self.placement.worker_of(visit, time.time())
            if index is not None:
                return self.workers[index]
        return self.workers[0]

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Relay an API call to the worker holding its visit (worker 0 otherwise)."""
        worker = self._worker_for(request)
        http = await self._session()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Forwarded-For"] = relay.forwarded_for(request)
        body = await request.read() if request.can_read_body else None
        async with http.request(request.method, worker.url + request.path_qs,
                                headers=headers, data=body, allow_redirects=False) as up:
            response = web.StreamResponse(status=up.status, headers={
                k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS})
            await response.prepare(request)
            async for chunk in up.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def live_visits(self, request: web.Request) -> web.Response:
        """The officer's list: every worker's live visits together."""
        http = await self._session()
        visits: list[Any] = []
        for worker in self.workers:
            async with http.get(worker.url + VISITS, headers={
                    "Authorization": request.headers.get("Authorization", "")}) as up:
                data = await up.json()
                if up.status != 200:
                    return web.json_response(data, status=up.status)
                visits += data.get("visits", [])
        return web.json_response({"visits": visits, "server_time": time.time()})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(heartbeat=10.0, max_msg_size=256 * 1024)
        await client.prepare(request)
        first = await first_message(client)
        if first is None:
            return client
        message = _first_message(first.data) if first.type == WSMsgType.TEXT else None
        if message is None:
            await refuse(client, "bad_message", "The first message must be a join with a token.")
            return client
        if message["type"] == "monitor":  # places nothing; the worker verifies the officer
            visit = message.get("visit")
            held = self.placement.worker_of(visit, time.time()) if isinstance(visit, str) else None
            await self._relay(client, self.workers[held or 0], first.data, request)
            return client
        source = self.refusals.source(request.remote, request.headers.get("X-Forwarded-For", ""))
        index = await self._place(client, message, source)
        if index is None:
            return client
        try:
            await self._relay(client, self.workers[index], first.data, request)
        finally:
            self.placement.release(index)
            self._report_load()
        return client

    async def _place(self, client: web.WebSocketResponse, message: dict[str, Any],
                     source: str) -> int | None:
        """The worker for a join with a verified token, or None once the join is refused."""
        expected = message.get("visit")
        bound = expected if isinstance(expected, str) else None  # as the worker binds it
        try:
            claims = await self.verifier.verify(message["token"], now=time.time(),
                                                roles=VISIT_ROLES, visit_id=bound)
        except TokenError as exc:
            await self._refuse_token(client, source, exc)
            return None
        assert claims.visit is not None  # VISIT_ROLES tokens always carry one
        try:
            index = self.placement.admit(claims.visit.id, claims.visit.ends_at, time.time())
        except ServerFull as exc:
            REFUSED_FULL.inc()
            log.warning("join refused: server full", extra={
                "visit": claims.visit.id, "reason": str(exc), "load": self.placement.load()})
            self.refusals.identified(action="join", code="server_full", actor=claims.sub,
                                     role=claims.role, visit=claims.visit.id,
                                     request=str(exc))
            await client.send_json({"type": "error", "code": "server_full",
                                    "message": "The server is at capacity; "
                                               "please try again later."})
            await client.close(code=4014, message=b"server_full")
            return None
        self._report_load()
        return index

    async def _refuse_token(self, client: web.WebSocketResponse, source: str,
                            exc: TokenError) -> None:
        """Refuse, count and audit a token as a worker would (the worker never sees it)."""
        log.info("join refused at the front", extra={"code": exc.code})
        TOKEN_REFUSALS.labels(exc.code).inc()
        self.refusals.anonymous(source=source, action="join", code=exc.code)
        await refuse(client, exc.code, exc.message)

    async def _relay(self, client: web.WebSocketResponse, worker: Worker, first: str,
                     request: web.Request) -> None:
        http = await self._session()
        try:
            upstream = await relay.connect(http, worker.url, request)
        except aiohttp.ClientConnectionError:
            if not await self._died(worker):
                raise
            await refuse(client, "server_shutdown", "The visit server stopped; try again.")
            return

        async def upstream_ended() -> None:
            if await self._died(worker):
                # The page reconnects on this code and is placed on a live worker.
                await refuse(client, "server_shutdown",
                             "The visit server stopped; reconnecting to another one.")
            else:
                await client.close(code=upstream.close_code or 1000)

        await relay.pump(client, upstream, first, upstream_ended)

    def _report_load(self) -> None:
        for w in self.placement.workers:
            WORKER_LOAD.labels(str(w.index)).set(w.participants)
        PLACEMENTS.set(self.placement.count(time.time()))


def serve_front(config: Config, count: int) -> int:
    workers = start_workers(config, count)
    try:
        web.run_app(Front(config, workers).app(), host=config.host, port=config.port,
                    print=lambda _: print(f"Serving on {config.base_url} with {count} workers",
                                          flush=True), access_log=None)
    finally:
        stop_workers(workers)
    return 0
