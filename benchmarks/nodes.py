"""Nodes benchmark: what placing visits on two nodes through Redis costs per packet, and
what joining through a node that does not own the visit adds to the first picture.

    python -m benchmarks.nodes --visits 20 --seconds 20 --rounds 4 --joins 12

Each round runs the forwarding benchmark's load (benchmarks/load.py) four times, in
turn (the order rotates from round to round): on one plain ``visitbridge serve``
carrying half the visits (``share``: what each of two nodes carries) and carrying them
all (``one``); on two nodes sharing a real ``redis-server``, where the parties of each
visit join at alternate nodes, so one of each pair is relayed to the owner (``two``);
and on two independent servers without Redis, each taking whole visits (``apart``, the
control). The figure is forwarded packets per server CPU-second, summed over both nodes
and their Redis. The goal compares two nodes with one node carrying as much as each of
them (``two_over_share``): a process forwards a packet more cheaply the busier it is
(more packets per wake of its event loop), so against one node carrying their whole
load (``two_over_one``) two nodes would be charged for carrying half each, as the
control is without any placement. Each ratio is also given with the servers' idle CPU
(measured for ``--idle-seconds`` before each load) taken out.

Every arrangement has the same cores: the servers (one or two, and Redis) are pinned to
every core but the highest, the load generator to that one (``--no-pin``: left to the
scheduler). Unpinned on two cores, one server and the load generator would each have a
core, while two servers and the load generator took turns on both: the ratio would
then charge the machine's crowding to placement. For the same reason the servers run as
batch threads (``--no-batch``: the default policy), so two nodes on one core do not
preempt each other at every datagram, which nodes on machines of their own never do.
Then, on two fresh nodes, ``--joins`` joins go straight to the visit's owner and as
many through the other node, alternately (benchmarks/relayed_joins.py). Prints one JSON
line and appends it to benchmarks/results/nodes.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from app.cluster import Lease
from tests.support.redis import RedisServer, running_redis

from .cores import ServerCores, pin, split
from .forwarding import install_loop
from .load import LoadTarget, add_load_arguments, run_load
from .measure import add_results_argument, append_result, benchmark_parser, run_info
from .media import EncodedClip, encode_opus, encode_vp8
from .node_group import running_nodes, started
from .receive import disable_decoding
from .relayed_joins import join_phase
from .server import ServerProcess, process_cpu_seconds

RESULTS = Path(__file__).resolve().parent / "results" / "nodes.jsonl"
# Two nodes' packets per CPU-second at least 90 % of one node's at the same load each.
THROUGHPUT_TOLERANCE = 0.10
JOIN_TOLERANCE_MS = 300.0  # relayed joins' first picture at most this much later
IDLE_SETTLE_S = 2.0  # after start-up, before the idle window
Side = Callable[[Path, argparse.Namespace, EncodedClip, EncodedClip, ServerCores],
                dict[str, Any]]
RATIOS = (("two", "share"), ("two", "one"), ("apart", "one"), ("two", "apart"),
          ("one", "share"))


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


async def idle_then_load(target: LoadTarget, args: argparse.Namespace, visits: int,
                         video: EncodedClip, audio: EncodedClip) -> dict[str, Any]:
    """The load's summary, with the CPU the started servers spend per second before any
    visit: timers, metrics, a node's registration and lease loop. Two processes pay it
    twice whatever they carry, which is no cost of placement per packet."""
    await asyncio.sleep(IDLE_SETTLE_S)
    before, start = target.cpu_seconds(), time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    idle = (target.cpu_seconds() - before) / (time.monotonic() - start)
    summary = await run_load(target, visits, args.seconds, args.warmup, video, audio)
    return {**summary, "idle_cpu_per_s": round(idle, 5)}


def _one_node(visits: int) -> Side:
    """One plain server carrying ``visits``."""
    def run(folder: Path, args: argparse.Namespace, video: EncodedClip, audio: EncodedClip,
            seats: ServerCores) -> dict[str, Any]:
        server = ServerProcess(folder)
        try:
            started(server, seats)
            return asyncio.run(idle_then_load(server, args, visits, video, audio))
        finally:
            server.stop()
    return run


def _two_nodes(folder: Path, args: argparse.Namespace, video: EncodedClip,
               audio: EncodedClip, seats: ServerCores) -> dict[str, Any]:
    """The two nodes' CPU includes their Redis's; what Redis spent from the idle window
    to the end of the load is reported apart too."""
    async def load(nodes: LoadTarget, redis: RedisServer) -> dict[str, Any]:
        before, start = process_cpu_seconds(redis.process.pid), time.monotonic()
        summary = await idle_then_load(nodes, args, args.visits, video, audio)
        redis_cpu = process_cpu_seconds(redis.process.pid) - before
        return {**summary, "visits_per_node": await placed(redis.url),
                "redis_cpu_pct_of_core": round(100 * redis_cpu / (time.monotonic() - start), 2)}

    with running_redis(folder / "redis") as redis, \
            running_nodes(folder, 2, seats, redis) as nodes:
        return asyncio.run(load(nodes, redis))


def _two_apart(folder: Path, args: argparse.Namespace, video: EncodedClip,
               audio: EncodedClip, seats: ServerCores) -> dict[str, Any]:
    """The control: two independent servers, each given half the visits, without Redis.
    Against it, two nodes show what placement itself costs; against one node, what
    splitting the same load over two processes costs."""
    with running_nodes(folder, 2, seats) as servers:
        return asyncio.run(idle_then_load(servers, args, args.visits, video, audio))


def _round(index: int, args: argparse.Namespace, video: EncodedClip,
           audio: EncodedClip, seats: ServerCores) -> dict[str, Any]:
    """Every side, one after the other; each round starts one further along them, so over
    as many rounds as sides every side runs in every place once, and a drift of the
    shared machine falls on all alike."""
    runs = {"share": _one_node(args.visits // 2), "one": _one_node(args.visits),
            "two": _two_nodes, "apart": _two_apart}
    names = list(runs)
    order = names[index % len(names):] + names[:index % len(names)]
    result: dict[str, Any] = {"order": order}
    for name in order:
        with tempfile.TemporaryDirectory(prefix="visitbridge-nodes-") as tmp:
            result[name] = runs[name](Path(tmp), args, video, audio, seats)
        result[f"{name}_packets_per_cpu_s"] = packets_per_cpu_s(result[name])
        result[f"{name}_marginal_packets_per_cpu_s"] = packets_per_cpu_s(result[name], True)
        print(f"round {index + 1} {name}: {result[f'{name}_packets_per_cpu_s']} packets per "
              f"CPU-second, join failures {result[name]['join_failures']}", file=sys.stderr)
    for top, bottom in RATIOS:
        for kind in ("", "marginal_"):
            above = result[f"{top}_{kind}packets_per_cpu_s"]
            below = result[f"{bottom}_{kind}packets_per_cpu_s"]
            result[f"{kind}{top}_over_{bottom}"] = (round(above / below, 3)
                                                   if above and below else None)
    return result


def verdict(rounds: list[dict[str, Any]], joins: dict[str, Any]) -> dict[str, Any]:
    """The median of the rounds' ratios against the throughput goal, and the relayed
    joins' median and p95 against the join goal."""
    def median_of(ratio: str) -> float | None:
        values = [r[ratio] for r in rounds if r[ratio] is not None]
        return round(statistics.median(values), 3) if values else None

    medians = {f"{kind}{top}_over_{bottom}_median": median_of(f"{kind}{top}_over_{bottom}")
               for top, bottom in RATIOS for kind in ("", "marginal_")}
    goal = medians["two_over_share_median"]
    later = joins["relayed_minus_direct_picture_ms"]
    pictures = all(joins[k]["without_picture"] == 0 for k in ("direct", "relayed"))
    return {
        **medians,
        "throughput_goal_met": goal is not None and goal >= 1 - THROUGHPUT_TOLERANCE,
        "join_goal_met": pictures and all(
            v is not None and v <= JOIN_TOLERANCE_MS for v in later.values())}


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser("benchmarks.nodes", __doc__)
    add_results_argument(p, RESULTS)
    p.add_argument("--rounds", type=int, default=4,
                   help="each runs one node at half and at the whole load, two nodes and "
                        "two independent servers (default 4: each side once in each place)")
    p.add_argument("--idle-seconds", type=float, default=5.0,
                   help="the servers' idle CPU is measured over this long before each load")
    p.add_argument("--joins", type=int, default=12,
                   help="timed joins at the owner, and as many through the other node")
    p.add_argument("--no-pin", action="store_true",
                   help="leave every process to the scheduler; by default the servers and "
                        "Redis run on every core but the highest and the load generator on "
                        "it, so one node, two nodes and the control get the same cores")
    p.add_argument("--no-batch", action="store_true",
                   help="servers under the default scheduling policy; by default they run "
                        "as batch threads (SCHED_BATCH), so two sharing a core do not "
                        "preempt each other on every datagram, as nodes on their own "
                        "machines never do (benchmarks/cores.py)")
    add_load_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.visits < 2 or args.seconds <= 0 or args.rounds < 1 or args.joins < 1:
        print("--visits must be >= 2, --rounds and --joins >= 1, --seconds > 0",
              file=sys.stderr)
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
    seats = ServerCores(cores, batch=not args.no_batch)
    rounds = [_round(i, args, video, audio, seats) for i in range(args.rounds)]
    joins = join_phase(args, video, audio, seats)
    record: dict[str, Any] = {"benchmark": "nodes", "pinned_cores": pinned,
                              "server_policy": "batch" if seats.batch else "normal",
                              "rounds": rounds,
                              "joins": joins, **verdict(rounds, joins)}
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, loop_name))
    print(json.dumps(record), flush=True)
    append_result(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
