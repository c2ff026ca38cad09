"""Failover benchmark: how long after a node dies its visits' pages are back, with media.

    python -m benchmarks.failover --visits 20 --rounds 3

Each round starts three ``visitbridge serve`` nodes sharing a real ``redis-server``, a
real PostgreSQL database and one recordings folder, with the production TTLs
(``node_ttl_s`` 6, ``lease_ttl_s`` 8 unless given), and seats two real aiortc parties in
each of ``--visits`` recorded visits, joined at every node. Then the node holding the
most visits is killed with SIGKILL. Every page that lost its socket (its visit's node
died, or the node relaying its session did) rejoins as the join page does: any live
node, waiting 0.5 s, then doubling up to 2 s, between tries. A page's time to resume is
from the kill to the fifth picture from the other party on its new connection. The
figures are the median, p95 and maximum over every rejoined page of every round,
against the 15 s goal; then each moved visit's recording must verify as one chain
signed by both holders, with the dead node's open segments salvaged and the gap audited
(the same checks as tests/app/test_node_failover.py, from tests/support/failover.py).
The parties run in this process, beside the nodes: on a small machine they compete with
the nodes for the CPU. Prints one JSON line and appends it to
benchmarks/results/failover.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.failover import kill_the_busiest, page_backoff, recording_problems
from tests.support.nodes import running_nodes
from tests.support.redis import running_redis

from .measure import add_results_argument, benchmark_parser, distribution_ms, report

RESULTS = Path(__file__).resolve().parent / "results" / "failover.jsonl"
GOAL_S = 15.0  # a dead node's visits are back within this
GIVE_UP_S = 60.0  # a page not back by then counts as lost (the round fails)


def one_round(index: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="visitbridge-failover-") as tmp, \
            running_redis(Path(tmp) / "redis") as redis, \
            running_nodes(Path(tmp), redis, ("a", "b", "c"), args.node_ttl, args.lease_ttl,
                          VISITBRIDGE_SEGMENT_S=str(args.segment_s)) as nodes:
        run = asyncio.run(kill_the_busiest(nodes, redis, args.visits, GIVE_UP_S,
                                           prefix=f"round{index}", pause=page_backoff))
        problems = recording_problems(Path(tmp), run, args.visits,
                                      (args.lease_ttl - 1, GIVE_UP_S))
    result = {"round": index, "moved_visits": len(run.moved), "pages": len(run.resumed),
              "resume_s": [round(s, 2) for s in sorted(run.resumed)],
              "same_seats": run.same_seats,
              "recordings_verified": sum(not any(p.startswith(f"{v}:") for p in problems)
                                         for v in run.moved),
              "recording_problems": problems[:10]}
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def verdict(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    every = [s for r in rounds for s in r["resume_s"]]
    resume = distribution_ms(every)
    return {
        "resume_ms": resume,
        "goal_s": GOAL_S,
        "goal_met": bool(every) and max(every) <= GOAL_S,
        "recordings_ok": all(not r["recording_problems"] for r in rounds),
        "seats_ok": all(r["same_seats"] for r in rounds)}


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser("benchmarks.failover", __doc__)
    add_results_argument(p, RESULTS)
    p.add_argument("--visits", type=int, default=20, help="recorded visits (default 20)")
    p.add_argument("--rounds", type=int, default=3, help="failovers, each on fresh nodes")
    p.add_argument("--node-ttl", type=int, default=6, help="node_ttl_s (default 6)")
    p.add_argument("--lease-ttl", type=int, default=8, help="lease_ttl_s (default 8)")
    p.add_argument("--segment-s", type=int, default=2,
                   help="segment_s: short, so the dead node leaves closed segments too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.visits < 1 or args.rounds < 1 or not 0 < args.node_ttl < args.lease_ttl:
        print("--visits and --rounds must be >= 1, 0 < --node-ttl < --lease-ttl",
              file=sys.stderr)
        return 2
    rounds = [one_round(i, args) for i in range(args.rounds)]
    record: dict[str, Any] = {"benchmark": "failover", "rounds": rounds, **verdict(rounds)}
    report(record, args, "asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
