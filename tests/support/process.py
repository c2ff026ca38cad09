"""Child processes that serve on loopback: a free port, waiting until one listens, stopping
one for good. Shared by the test helpers (the server, Prometheus, coturn) and the
benchmarks, so it needs nothing beyond the standard library."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(following: int = 4) -> int:
    """A free TCP port on loopback whose next ``following`` ports are free too: a server
    started with workers listens on the ports after its own."""
    while True:
        with contextlib.ExitStack() as held:
            first = held.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                for offset in range(1, following + 1):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port + offset))
            except (OSError, OverflowError):  # taken, or past 65535
                continue
            return port


def read_log(path: Path | None) -> str:
    """A child's log so far ("" before it has written one), for error messages."""
    return path.read_text(errors="replace") if path and path.exists() else ""


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout_s: float, what: str,
                   log_text: Callable[[], str], host: str = "127.0.0.1") -> None:
    """Return once ``port`` accepts TCP connections; raise with the child's log if it
    exits or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode} at start-up:\n{log_text()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {timeout_s:g} s:\n{log_text()}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 10) -> None:
    """Terminate a child that is still running, kill it if it outlives ``timeout_s``, and
    reap it either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
