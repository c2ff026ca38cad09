"""Nodes benchmark: what placing visits on two nodes through Redis costs per packet, and
what joining through a node that does not own the visit adds to the first picture.

    python -m benchmarks.nodes --visits 20 --seconds 20 --rounds 3 --joins 12

Each round runs the forwarding benchmark's load (benchmarks/load.py) three times, in
turn (the order rotates from round to round): on one plain ``visitbridge serve``; on
two nodes sharing a real ``redis-server``, where the parties of each visit join at
alternate nodes, so one of each pair is relayed to the owner; and on two independent
servers without Redis, each taking whole visits (the control). The figure is forwarded
packets per server CPU-second, summed over both nodes and their Redis, as a ratio to the
single node's in the same round; and the same with the servers' idle CPU (measured for
``--idle-seconds`` before each load) taken out, the marginal cost of a packet.

Every arrangement has the same cores: the servers (one or two, and Redis) are pinned to
every core but the highest, the load generator to that one (``--no-pin``: left to the
scheduler). Unpinned on two cores, one server and the load generator would each have a
core, while two servers and the load generator took turns on both: the ratio would
then charge the machine's crowding to placement.
Then, on two fresh nodes, ``--joins`` joins go straight to the
visit's owner and as many through the other node, alternately, each into a new visit
whose first party already publishes; each is timed from sending ``join`` to the first
forwarded video packet and to the first keyframe (the first picture a browser can
show). Prints one JSON line and appends it to benchmarks/results/nodes.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from app.cluster import Lease
from auth.tokens import VisitClaim
from tests.support.redis import RedisServer, running_redis

from .cores import pin, split
from .forwarding import install_loop
from .load import LoadTarget, add_load_arguments, run_load
from .measure import (
    add_results_argument,
    append_result,
    benchmark_parser,
    distribution_ms,
    run_info,
)
from .media import EncodedClip, encode_opus, encode_vp8
from .party import Party
from .receive import disable_decoding
from .server import ServerProcess, process_cpu_seconds

RESULTS = Path(__file__).resolve().parent / "results" / "nodes.jsonl"
# The benchmark measures cost, not admission: no node refuses a visit for load.
CAPACITY = 10_000
THROUGHPUT_TOLERANCE = 0.10  # two nodes' packets per CPU-second at least 90 % of one's
JOIN_TOLERANCE_MS = 300.0  # relayed joins' first picture at most this much later
PICTURE_TIMEOUT_S = 10.0
IDLE_SETTLE_S = 2.0  # after start-up, before the idle window


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


def started(server: ServerProcess, cores: set[int] | None) -> ServerProcess:
    """The server started, and pinned to the servers' ``cores`` (None: not pinned)."""
    server.start()
    if cores is not None:
        pin(server.pid, cores)
    return server


@contextlib.contextmanager
def running_nodes(folder: Path, count: int, cores: set[int] | None,
                  redis: RedisServer | None = None) -> Iterator[Nodes]:
    """``count`` servers on loopback, pinned to ``cores``, trusting the first one's token
    key: nodes sharing ``redis`` (pinned with them), or with None independent servers."""
    members: list[ServerProcess] = []
    if redis is not None and cores is not None:
        pin(redis.process.pid, cores)
    try:
        for i in range(count):
            env = ({"VISITBRIDGE_REDIS_URL": redis.url, "VISITBRIDGE_NODE_ID": f"node-{i}",
                    "VISITBRIDGE_NODE_CAPACITY": str(CAPACITY)} if redis else {})
            if members:
                env["VISITBRIDGE_TOKEN_KEYS_DIR"] = str(members[0].data_dir / "keys" / "public")
            members.append(ServerProcess(folder / f"node-{i}", env=env))
            started(members[-1], cores)
        yield Nodes(members, shared=redis is not None,
                    redis_pid=None if redis is None else redis.process.pid)
    finally:
        for member in members:
            member.stop()


async def placed(redis_url: str) -> dict[str, int]:
    """Visits per node, from the leases (held until ``lease_ttl_s`` after a visit ends)."""
    counts: dict[str, int] = {}
    async with Redis.from_url(redis_url, decode_responses=True) as redis:
        async for key in redis.scan_iter("visit:*"):
            lease = Lease.parse(await redis.get(key))
            if lease is not None:
                counts[lease.node] = counts.get(lease.node, 0) + 1
    return dict(sorted(counts.items()))


def packets_per_cpu_s(summary: dict[str, Any], marginal: bool = False) -> float | None:
    """Forwarded packets per server CPU-second; ``marginal``: with what the servers spent
    idle over as long taken out first (the fixed cost of each process)."""
    cpu, packets = summary["server_cpu_s"], summary["forwarded_packets"]
    if marginal:
        cpu -= summary["idle_cpu_per_s"] * summary["window_s"]
    return round(packets / cpu, 1) if cpu > 0 else None


async def idle_then_load(target: LoadTarget, args: argparse.Namespace, video: EncodedClip,
                         audio: EncodedClip) -> dict[str, Any]:
    """The load's summary, with the CPU the started servers spend per second before any
    visit: timers, metrics, a node's registration and lease loop. Two processes pay it
    twice whatever they carry, which is no cost of placement per packet."""
    await asyncio.sleep(IDLE_SETTLE_S)
    before, start = target.cpu_seconds(), time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    idle = (target.cpu_seconds() - before) / (time.monotonic() - start)
    summary = await run_load(target, args.visits, args.seconds, args.warmup, video, audio)
    return {**summary, "idle_cpu_per_s": round(idle, 5)}


def _one_node(folder: Path, args: argparse.Namespace, video: EncodedClip,
              audio: EncodedClip, cores: set[int] | None) -> dict[str, Any]:
    server = ServerProcess(folder)
    try:
        started(server, cores)
        return asyncio.run(idle_then_load(server, args, video, audio))
    finally:
        server.stop()


def _two_nodes(folder: Path, args: argparse.Namespace, video: EncodedClip,
               audio: EncodedClip, cores: set[int] | None) -> dict[str, Any]:
    """The two nodes' CPU includes their Redis's; what Redis spent from the idle window
    to the end of the load is reported apart too."""
    async def load(nodes: LoadTarget, redis: RedisServer) -> dict[str, Any]:
        before, start = process_cpu_seconds(redis.process.pid), time.monotonic()
        summary = await idle_then_load(nodes, args, video, audio)
        redis_cpu = process_cpu_seconds(redis.process.pid) - before
        return {**summary, "visits_per_node": await placed(redis.url),
                "redis_cpu_pct_of_core": round(100 * redis_cpu / (time.monotonic() - start), 2)}

    with running_redis(folder / "redis") as redis, \
            running_nodes(folder, 2, cores, redis) as nodes:
        return asyncio.run(load(nodes, redis))


def _two_apart(folder: Path, args: argparse.Namespace, video: EncodedClip,
               audio: EncodedClip, cores: set[int] | None) -> dict[str, Any]:
    """The control: two independent servers, each given half the visits, without Redis.
    Against it, two nodes show what placement itself costs; against one node, what
    splitting the same load over two processes costs."""
    with running_nodes(folder, 2, cores) as servers:
        return asyncio.run(idle_then_load(servers, args, video, audio))


def _round(index: int, args: argparse.Namespace, video: EncodedClip,
           audio: EncodedClip, cores: set[int] | None) -> dict[str, Any]:
    """One node, two nodes and the control under the same load, one after the other;
    each round starts one further along the three, so over three rounds every side runs
    first, second and last once, and a drift of the shared machine falls on all alike."""
    runs = {"one": _one_node, "two": _two_nodes, "apart": _two_apart}
    names = list(runs)
    order = names[index % 3:] + names[:index % 3]
    result: dict[str, Any] = {"order": order}
    for name in order:
        with tempfile.TemporaryDirectory(prefix="visitbridge-nodes-") as tmp:
            result[name] = runs[name](Path(tmp), args, video, audio, cores)
        result[f"{name}_packets_per_cpu_s"] = packets_per_cpu_s(result[name])
        result[f"{name}_marginal_packets_per_cpu_s"] = packets_per_cpu_s(result[name], True)
        print(f"round {index + 1} {name}: {result[f'{name}_packets_per_cpu_s']} packets per "
              f"CPU-second, join failures {result[name]['join_failures']}", file=sys.stderr)
    for top, bottom in (("two", "one"), ("apart", "one"), ("two", "apart")):
        for kind in ("", "marginal_"):
            above = result[f"{top}_{kind}packets_per_cpu_s"]
            below = result[f"{bottom}_{kind}packets_per_cpu_s"]
            result[f"{kind}{top}_over_{bottom}"] = (round(above / below, 3)
                                                   if above and below else None)
    return result


async def _until_connected(party: Party) -> None:
    deadline = time.monotonic() + PICTURE_TIMEOUT_S
    while party.pc is None or party.pc.connectionState != "connected":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{party.name} did not connect")
        await asyncio.sleep(0.05)


async def _timed_join(nodes: Nodes, redis: Redis, visit_id: str, through_other: bool,
                      video: EncodedClip, audio: EncodedClip) -> Party:
    """A visit whose inmate already publishes; the family member then joins at its owner
    or at the other node. Returns the family member once it has a picture."""
    now = int(time.time())
    claim = VisitClaim(id=visit_id, starts_at=now - 5, ends_at=now + 3600, privileged=True)
    inmate = Party(f"inmate-{visit_id}", nodes.ws_urls[0],
                   nodes.token(f"inmate-{visit_id}", "inmate", claim), video, audio)
    family: Party | None = None
    try:
        await inmate.join()
        await _until_connected(inmate)
        await asyncio.sleep(0.5)  # its media reaches the owner before anyone subscribes
        lease = Lease.parse(await redis.get(f"visit:{visit_id}"))
        assert lease is not None, f"visit {visit_id} has no lease"
        owner = nodes.ids.index(lease.node)
        url = nodes.ws_urls[1 - owner if through_other else owner]
        family = Party(f"family-{visit_id}", url,
                       nodes.token(f"family-{visit_id}", "family", claim), video, audio)
        await family.join()
        deadline = time.monotonic() + PICTURE_TIMEOUT_S
        while family.first_keyframe_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return family
    finally:
        await inmate.close()
        if family is not None:
            await family.close()


async def _joins(nodes: Nodes, redis_url: str, count: int, video: EncodedClip,
                 audio: EncodedClip) -> dict[str, Any]:
    """``count`` joins at the owner and ``count`` through the other node, alternately."""
    timed: dict[str, list[Party]] = {"direct": [], "relayed": []}
    stamp = int(time.time())
    async with Redis.from_url(redis_url, decode_responses=True) as redis:
        for i in range(2 * count):
            kind = "relayed" if i % 2 else "direct"
            timed[kind].append(await _timed_join(nodes, redis, f"join-{stamp}-{i}",
                                                 kind == "relayed", video, audio))
    result: dict[str, Any] = {}
    for kind, parties in timed.items():
        result[kind] = {
            "without_picture": sum(p.picture_seconds is None for p in parties),
            "to_video_ms": distribution_ms([s for p in parties
                                            if (s := p.join_seconds) is not None]),
            "to_picture_ms": distribution_ms([s for p in parties
                                              if (s := p.picture_seconds) is not None])}
    direct, relayed = result["direct"]["to_picture_ms"], result["relayed"]["to_picture_ms"]
    result["relayed_minus_direct_picture_ms"] = {
        stat: (round(relayed[stat] - direct[stat], 1)
               if relayed[stat] is not None and direct[stat] is not None else None)
        for stat in ("median", "p95")}
    return result


def _join_phase(args: argparse.Namespace, video: EncodedClip, audio: EncodedClip,
                cores: set[int] | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="visitbridge-nodes-") as tmp, \
            running_redis(Path(tmp) / "redis") as redis, \
            running_nodes(Path(tmp), 2, cores, redis) as nodes:
        return asyncio.run(_joins(nodes, redis.url, args.joins, video, audio))


def verdict(rounds: list[dict[str, Any]], joins: dict[str, Any]) -> dict[str, Any]:
    """The median of the rounds' ratios against the throughput goal, and the relayed
    joins' median and p95 against the join goal."""
    def median_of(ratio: str) -> float | None:
        values = [r[ratio] for r in rounds if r[ratio] is not None]
        return round(statistics.median(values), 3) if values else None

    median = median_of("two_over_one")
    later = joins["relayed_minus_direct_picture_ms"]
    pictures = all(joins[k]["without_picture"] == 0 for k in ("direct", "relayed"))
    return {
        "two_over_one_median": median,
        "apart_over_one_median": median_of("apart_over_one"),
        "two_over_apart_median": median_of("two_over_apart"),
        "throughput_goal_met": median is not None and median >= 1 - THROUGHPUT_TOLERANCE,
        "marginal_two_over_one_median": median_of("marginal_two_over_one"),
        "join_goal_met": pictures and all(
            v is not None and v <= JOIN_TOLERANCE_MS for v in later.values())}


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser("benchmarks.nodes", __doc__)
    add_results_argument(p, RESULTS)
    p.add_argument("--rounds", type=int, default=3,
                   help="one node, two nodes, two independent servers (default 3)")
    p.add_argument("--idle-seconds", type=float, default=5.0,
                   help="the servers' idle CPU is measured over this long before each load")
    p.add_argument("--joins", type=int, default=12,
                   help="timed joins at the owner, and as many through the other node")
    p.add_argument("--no-pin", action="store_true",
                   help="leave every process to the scheduler; by default the servers and "
                        "Redis run on every core but the highest and the load generator on "
                        "it, so one node, two nodes and the control get the same cores")
    add_load_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.visits < 1 or args.seconds <= 0 or args.rounds < 1 or args.joins < 1:
        print("--visits, --rounds and --joins must be >= 1, --seconds > 0", file=sys.stderr)
        return 2
    cores: set[int] | None = None
    pinned: dict[str, list[int]] | None = None
    if not args.no_pin:
        try:
            cores, load_cores = split(os.sched_getaffinity(0))
        except ValueError as e:
            print(f"{e}: run with --no-pin", file=sys.stderr)
            return 2
        pin(os.getpid(), load_cores)
        pinned = {"servers": sorted(cores), "load": sorted(load_cores)}
    disable_decoding()
    loop_name = install_loop()
    video, audio = encode_vp8(), encode_opus()
    rounds = [_round(i, args, video, audio, cores) for i in range(args.rounds)]
    joins = _join_phase(args, video, audio, cores)
    record: dict[str, Any] = {"benchmark": "nodes", "pinned_cores": pinned, "rounds": rounds,
                              "joins": joins, **verdict(rounds, joins)}
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, loop_name))
    print(json.dumps(record), flush=True)
    append_result(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
