"""Several servers on loopback measured as one load target: the nodes of the nodes
benchmark, sharing a Redis or independent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from auth.tokens import VisitClaim
from tests.support.redis import RedisServer

from .cores import ServerCores, pin
from .server import ServerProcess, process_cpu_seconds

# The benchmark measures cost, not admission: no node refuses a visit for load.
CAPACITY = 10_000


@dataclass
class Nodes:
    """Several servers measured as one: CPU, memory and metrics summed over them. Nodes
    sharing a Redis (``shared``) take any party anywhere: each visit's inmate joins at
    the first and its family member at the second. Independent servers each take whole
    visits, in turn."""

    members: list[ServerProcess]
    shared: bool
    redis_pid: int | None = None  # the shared Redis, whose CPU placement costs too

    @property
    def ids(self) -> list[str]:
        return [m.env.get("VISITBRIDGE_NODE_ID", str(m.port)) for m in self.members]

    @property
    def ws_urls(self) -> list[str]:
        return [m.ws_url for m in self.members]

    def entry(self, visit: int, party: int) -> str:
        return self.ws_urls[(party if self.shared else visit) % len(self.members)]

    def token(self, sub: str, role: str, visit: VisitClaim | None) -> str:
        return self.members[0].token(sub, role, visit)  # every node trusts its key

    def cpu_seconds(self) -> float:
        redis = process_cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        return redis + sum(m.cpu_seconds() for m in self.members)

    def context_switches(self) -> tuple[int, int]:
        """The servers' only: Redis is no server's event loop."""
        counts = [m.context_switches() for m in self.members]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def rss_mb(self) -> float | None:
        sizes = [m.rss_mb() for m in self.members]
        return None if None in sizes else round(sum(s or 0.0 for s in sizes), 1)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        totals: dict[str, float] = {}
        for member in self.members:
            for name, value in (await member.metrics(http)).items():
                totals[name] = totals.get(name, 0.0) + value
        return totals

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(f"--- {node_id}\n{m.log_tail(lines)}"
                         for node_id, m in zip(self.ids, self.members, strict=True))


def started(server: ServerProcess, seats: ServerCores) -> ServerProcess:
    """The server started, on the servers' cores and scheduling policy."""
    server.start()
    seats.apply(server.pid)
    return server


@contextlib.contextmanager
def running_nodes(folder: Path, count: int, seats: ServerCores,
                  redis: RedisServer | None = None) -> Iterator[Nodes]:
    """``count`` servers on loopback, placed and scheduled as ``seats`` says, trusting the
    first one's token key: nodes sharing ``redis`` (pinned to the same cores, under the
    default policy), or with None independent servers."""
    members: list[ServerProcess] = []
    if redis is not None and seats.cores is not None:
        pin(redis.process.pid, seats.cores)
    try:
        for i in range(count):
            env = ({"VISITBRIDGE_REDIS_URL": redis.url, "VISITBRIDGE_NODE_ID": f"node-{i}",
                    "VISITBRIDGE_NODE_CAPACITY": str(CAPACITY)} if redis else {})
            if members:
                env["VISITBRIDGE_TOKEN_KEYS_DIR"] = str(members[0].data_dir / "keys" / "public")
            members.append(ServerProcess(folder / f"node-{i}", env=env))
            started(members[-1], seats)
        yield Nodes(members, shared=redis is not None,
                    redis_pid=None if redis is None else redis.process.pid)
    finally:
        for member in members:
            member.stop()
