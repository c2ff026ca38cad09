"""The worker processes of ``serve --workers N``: start, wait until listening, stop.

Worker i is a whole ``visitbridge serve`` on loopback port ``port + 1 + i``, so that
Prometheus has a stable target for each; worker 0 starts first, as it recovers
recordings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from app.config import Config


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
               "VISITBRIDGE_PUBLIC_URL": config.base_url,
               # the front relays every request: its address is a proxy to them
               "VISITBRIDGE_TRUSTED_PROXIES": ",".join((*config.trusted_proxies,
                                                        "127.0.0.1/32"))}
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
