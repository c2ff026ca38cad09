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
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
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

from app.config import Config
from app.placement import Placement, ServerFull
from app.server import WEB_DIR, add_security_headers

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
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host",
               "content-length"}


@dataclass
class Worker:
    index: int
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def worker_port(config: Config, index: int) -> int:
    """Fixed, so that Prometheus has a stable target for each worker."""
    return config.port + 1 + index


def _check_free(port: int) -> None:
    """Refuse to start on a taken port: the start-up check would mistake whatever listens
    there for the worker."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port}, needed for a worker, is in use ({exc})") from None


def start_workers(config: Config, count: int) -> list[Worker]:
    """Start worker 0 first (it recovers recordings), then the others."""
    workers = [Worker(i, worker_port(config, i)) for i in range(count)]
    for worker in workers:
        _check_free(worker.port)
    for worker in workers:
        env = {**os.environ, "VISITBRIDGE_HOST": "127.0.0.1",
               "VISITBRIDGE_PORT": str(worker.port), "VISITBRIDGE_WORKERS": str(count),
               "VISITBRIDGE_WORKER_INDEX": str(worker.index),
               "VISITBRIDGE_PUBLIC_URL": config.base_url}
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"], env=env)
        _wait_listening(worker)
    return workers


def _wait_listening(worker: Worker, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert worker.process is not None
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker {worker.index} exited at start-up")
        try:
            with socket.create_connection(("127.0.0.1", worker.port), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"worker {worker.index} did not start")


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process and worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        if worker.process:
            try:
                worker.process.wait(15)
            except subprocess.TimeoutExpired:
                worker.process.kill()


def _visit_of(message: dict[str, Any]) -> tuple[str | None, float]:
    """The visit a join or monitor message is for (routing only: the worker verifies)."""
    if message.get("type") == "monitor":
        visit = message.get("visit")
        return (visit if isinstance(visit, str) else None), 0.0
    try:
        claims = jwt.decode(str(message.get("token", "")), options={"verify_signature": False})
        visit = claims.get("visit") or {}
        return str(visit["id"]), float(visit.get("ends_at", 0))
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, AttributeError):
        return None, 0.0


class Front:
    def __init__(self, config: Config, workers: list[Worker]) -> None:
        self.config = config
        self.workers = workers
        self.placement = Placement.of(len(workers), config.worker_max_participants,
                                      config.max_visitors + 1)
        self._http: aiohttp.ClientSession | None = None

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        return self._http

    def app(self) -> web.Application:
        app = web.Application()
        app.on_response_prepare.append(add_security_headers)

        async def page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / request.match_info.route.name.split(":")[1])

        async def index(request: web.Request) -> web.Response:
            raise web.HTTPFound("/join")

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "workers": len(self.workers)})

        async def readyz(request: web.Request) -> web.Response:
            down = [w.index for w in self.workers
                    if w.process is None or w.process.poll() is not None]
            return web.json_response({"status": "not ready" if down else "ready",
                                      "workers_down": down}, status=503 if down else 200)

        async def metrics(request: web.Request) -> web.Response:
            """The front's own metrics (placement and refusals); workers serve theirs."""
            return web.Response(body=generate_latest(FRONT_REGISTRY),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def close(app: web.Application) -> None:
            if self._http is not None:
                await self._http.close()

        app.on_cleanup.append(close)
        app.router.add_get("/", index)
        for name in ("join", "officer", "compliance"):
            app.router.add_get(f"/{name}", page, name=f"page:{name}.html")
        app.router.add_static("/static/", WEB_DIR / "static")
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/api/visits", self.live_visits)
        app.router.add_route("*", "/api/visits/{visit}", self.proxy)
        app.router.add_route("*", "/api/visits/{visit}/{rest:.*}", self.proxy)
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
            async with http.get(worker.url + "/api/visits", headers={
                    "Authorization": request.headers.get("Authorization", "")}) as up:
                data = await up.json()
                if up.status != 200:
                    return web.json_response(data, status=up.status)
                visits += data.get("visits", [])
        return web.json_response({"visits": visits, "server_time": time.time()})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(heartbeat=10.0, max_msg_size=256 * 1024)
        await client.prepare(request)
        try:
            first = await asyncio.wait_for(client.receive(), 10.0)
        except TimeoutError:
            await client.close(code=4400, message=b"bad_message")
            return client
        if first.type != WSMsgType.TEXT:
            return client
        try:
            message = json.loads(first.data)
        except ValueError:
            message = {}
        visit, ends_at = _visit_of(message if isinstance(message, dict) else {})
        index: int | None = None
        if message.get("type") == "join" and visit is not None:
            try:
                index = self.placement.admit(visit, ends_at, time.time())
            except ServerFull:
                REFUSED_FULL.inc()
                log.warning("join refused: server full", extra={"visit": visit,
                                                               "load": self.placement.load()})
                await client.send_json({"type": "error", "code": "server_full",
                                        "message": "The server is at capacity; "
                                                   "please try again later."})
                await client.close(code=4014, message=b"server_full")
                return client
            self._report_load()
        if index is None:  # a monitor, or a message the worker will refuse
            index_of_visit = self.placement.worker_of(visit, time.time()) if visit else None
            worker = self.workers[index_of_visit or 0]
        else:
            worker = self.workers[index]
        try:
            await self._relay(client, worker, first.data)
        finally:
            if index is not None:
                self.placement.release(index)
                self._report_load()
        return client

    async def _relay(self, client: web.WebSocketResponse, worker: Worker, first: str) -> None:
        http = await self._session()
        async with http.ws_connect(worker.url.replace("http", "ws", 1) + "/ws",
                                   heartbeat=10.0, max_msg_size=256 * 1024) as upstream:
            await upstream.send_str(first)

            async def down() -> None:
                async for msg in upstream:
                    if msg.type == WSMsgType.TEXT:
                        await client.send_str(msg.data)
                if not client.closed:
                    await client.close(code=upstream.close_code or 1000)

            task = asyncio.ensure_future(down())
            try:
                async for msg in client:
                    if msg.type == WSMsgType.TEXT:
                        await upstream.send_str(msg.data)
            finally:
                if not upstream.closed:
                    await upstream.close()
                await task

    def _report_load(self) -> None:
        for w in self.placement.workers:
            WORKER_LOAD.labels(str(w.index)).set(w.participants)


def serve_front(config: Config, count: int) -> int:
    workers = start_workers(config, count)
    try:
        web.run_app(Front(config, workers).app(), host=config.host, port=config.port,
                    print=lambda _: print(f"Serving on {config.base_url} with {count} workers",
                                          flush=True), access_log=None)
    finally:
        stop_workers(workers)
    return 0
