"""A real ``redis-server`` for the cluster tests: no persistence, in its own folder."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.binaries import need_binary
from tests.support.process import free_port, read_log, stop_process, wait_listening


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    binary = need_binary("redis-server")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port(following=0)
    log_path = folder / "redis.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(process, port, 10, "redis-server", lambda: read_log(log_path))
        yield RedisServer(port, process)
    finally:
        stop_process(process)
