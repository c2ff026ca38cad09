"""The server under test: a real ``visitbridge serve`` process, and how to read it.

Benchmarks must measure the product as deployed, so the server runs as its own process
(its CPU can then be read from /proc without counting the load generator), configured
only through its documented environment variables, with its own data directory and a
token key pair made for the run. Tokens come from the reference issuer, exactly as a
records system would sign them. Starting and stopping it is the test suite's own helper
(which needs nothing from the test tooling), so both run the server the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.server import Server
from tests.support.server import start as start_server
from tests.support.server import stop as stop_server

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the file
    return (utime + stime) / CLOCK_TICKS


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's threads, from
    /proc/<pid>/task/*/status. A voluntary one is a thread going to sleep: for an event
    loop, mostly waiting for its next datagram; an involuntary one, a preemption."""
    voluntary = involuntary = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue  # the thread ended
        for line in lines:
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary += int(line.split()[1])
    return voluntary, involuntary


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (the SFU workers of a front process)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return children


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of a process, from /proc/<pid>/status (None if unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


@dataclass
class ServerProcess(Server):
    """The test suite's server process, as a benchmark drives it: logging only warnings,
    any module as its command (the baseline's too), its CPU and memory read from /proc."""

    def __post_init__(self) -> None:
        self.env = {"VISITBRIDGE_LOG_LEVEL": "warning", **self.env}
        super().__post_init__()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the process and wait until it accepts connections."""
        try:
            start_server(self, timeout_s)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_server(self)

    def entry(self, visit: int, party: int) -> str:
        """Every page connects to its one WebSocket."""
        return self.ws_url

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """The server's CPU: its own process and, with --workers, its worker processes."""
        return sum(process_cpu_seconds(pid) for pid in [self.pid, *child_pids(self.pid)])

    def context_switches(self) -> tuple[int, int]:
        """(voluntary, involuntary), summed like ``cpu_seconds``."""
        counts = [context_switches(pid) for pid in [self.pid, *child_pids(self.pid)]]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def rss_mb(self) -> float | None:
        return process_rss_mb(self.pid)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """Every sample of /metrics, summed over labels: {metric name: value}."""
        return parse_metrics(await self.metrics_text(http))

    async def metrics_text(self, http: aiohttp.ClientSession) -> str:
        async with http.get(self.url + "/metrics") as response:
            response.raise_for_status()
            return await response.text()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format, labels summed away (enough for counters and gauges)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals
