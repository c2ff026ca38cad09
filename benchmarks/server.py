"""The server under test: a real ``visitbridge serve`` process, and how to read it.

Benchmarks must measure the product as deployed, so the server runs as its own process
(its CPU can then be read from /proc without counting the load generator), configured
only through its documented environment variables, with its own data directory and a
token key pair made for the run. Tokens come from the reference issuer, exactly as a
records system would sign them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from auth.issuer import issue_token
from auth.keys import PrivateKey, load_private_key, write_keypair
from auth.tokens import VisitClaim

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "bench-records"
AUDIENCE = "visitbridge-bench"
KID = "bench-1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the file
    return (utime + stime) / CLOCK_TICKS


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
class ServerProcess:
    """A server subprocess on loopback with its data dir, port and token key."""

    data_dir: Path
    module: str = "app.cli"  # or the baseline's module
    args: tuple[str, ...] = ("serve",)
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _key: PrivateKey | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "VISITBRIDGE_DATA_DIR": str(self.data_dir),
            "VISITBRIDGE_PORT": str(self.port),
            "VISITBRIDGE_TOKEN_ISSUER": ISSUER,
            "VISITBRIDGE_TOKEN_AUDIENCE": AUDIENCE,
            "VISITBRIDGE_ICE_LOOPBACK": "1",
            "VISITBRIDGE_LOG_LEVEL": "warning",
            **self.extra_env,
        }

    def start(self, timeout_s: float = 30.0) -> None:
        """Make the key pair, start the process, wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        private = self.data_dir / "keys" / f"{KID}.private.pem"
        if not private.exists():
            write_keypair(KID, self.data_dir / "keys" / "public", private)
        self._key = load_private_key(private)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], cwd=ROOT, env=self.env(),
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start-up:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """The server's CPU: its own process and, with --workers, its worker processes."""
        return sum(process_cpu_seconds(pid) for pid in [self.pid, *child_pids(self.pid)])

    def token(self, sub: str, role: str, visit: VisitClaim) -> str:
        assert self._key is not None, "start() first"
        return issue_token(self._key, kid=KID, issuer=ISSUER, audience=AUDIENCE, sub=sub,
                           role=role, name=sub, visit=visit, now=time.time())

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """Every sample of /metrics, summed over labels: {metric name: value}."""
        async with http.get(self.url + "/metrics") as response:
            response.raise_for_status()
            text = await response.text()
        return parse_metrics(text)


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
