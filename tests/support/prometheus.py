"""A real Prometheus (Debian's package) started for a test, and its HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.binaries import need_binary
from tests.support.process import ROOT, free_port, read_log, stop_process, wait_listening
from tests.support.server import Server, make_server, start, stop

DEPLOY = ROOT / "deploy"


ALERTS = DEPLOY / "prometheus" / "alerts.yml"


class WebhookSink:
    """Accepts every webhook, so deliveries are counted as delivered.

    It answers from a thread of its own: a server stopped from the test's event loop
    (``running_server`` waits for it synchronously) still gets its last deliveries
    answered at once, instead of waiting on a sink that cannot run until it exits."""

    def __init__(self) -> None:
        self.received = 0
        self.port = free_port()
        self._http: ThreadingHTTPServer | None = None

    async def __aenter__(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        self._http.shutdown()
        self._http.server_close()


class Prometheus:
    def __init__(self, tmp: Path, target_port: int) -> None:
        self.binary = need_binary("prometheus")
        self.promtool = need_binary("promtool")
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "prometheus.yml"
        self.log_path = tmp / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        tmp.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: the deploy config's job, with a 0.5 s interval and the real rules.
        self.config.write_text(json.dumps({
            "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms",
                       "scrape_timeout": "450ms"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "visitbridge", "metrics_path": "/metrics",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
        }, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return read_log(self.log_path)

    def check_config(self) -> None:
        done = subprocess.run([self.promtool, "check", "config", str(self.config)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        # Always all three flags: the defaults point at the system service's files.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        wait_listening(self.process, self.port, 20, "prometheus", self.log_text)
        # It listens before its storage is open, answering 503 to queries until then.
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus was not ready in 20 s:\n{self.log_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def running_prometheus(tmp: Path, target_port: int) -> Iterator[Prometheus]:
    prom = Prometheus(tmp, target_port)
    prom.check_config()
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


@contextlib.contextmanager
def scraped_server(tmp: Path, **env: str) -> Iterator[tuple[Server, Prometheus]]:
    """A real server (data in ``tmp/server``) and a Prometheus scraping it. Prometheus
    starts first: its first scrape comes some 5 s after it starts (it throttles target
    discovery updates to one per 5 s), and the server starts within that wait."""
    server = make_server(tmp / "server", **env)
    with running_prometheus(tmp / "prometheus", server.port) as prom:
        start(server)
        try:
            yield server, prom
        finally:
            stop(server)


async def api(http: aiohttp.ClientSession, prom: Prometheus, path: str,
              **params: Any) -> dict[str, Any]:
    async with http.get(prom.url + path, params={k: str(v) for k, v in params.items()}) \
            as resp:
        body = await resp.json()
    return body


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)

