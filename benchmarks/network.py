"""Visits over real bad networks: real Chromium on both sides, the family behind an
impaired link (``tests.support.netem``), phases run in turn on one live visit per run.

Per run: a clean baseline; 5 % random loss both ways (concealed audio and frozen video
on both sides, and the server's CPU per forwarded packet against the clean baseline of
the same run); a 300 kb/s cap on the family's link both ways (concealed audio, seconds
until video adapts, seconds to full quality after the cap lifts); a 300 kb/s cap on the
family's uplink alone (seconds until its sent bitrate settles under it, video loss
after); a 5 s outage then restore, on the same address and on a new one (seconds from
the restore to media flowing, no reload, same seat, audited gaps, no ghost). Each run is
a fresh server and browsers; the summary gives each figure's median and worst.

    python -m benchmarks.network --runs 3 --phase-seconds 20

Needs root (network namespaces), ``ip``, ``tc`` and ``nft``, and Debian's Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.measure import append_result, percentile, run_info
from benchmarks.network_phases import (
    baseline,
    cap_phase,
    loss_phase,
    outage_phase,
    uplink_phase,
)
from tests.support.netvisit import visit_behind_link

RESULTS = Path(__file__).resolve().parent / "results" / "network.jsonl"
PHASES = ("loss", "cap", "uplink", "outage", "switch")

# (figure, where it is in a run, goal as (comparison, bound) or None, lower is better)
FIGURES: list[tuple[str, tuple[str, ...], tuple[str, float] | None]] = [
    ("loss: family audio concealed %", ("loss", "family", "concealed_pct"), ("<", 3)),
    ("loss: inmate audio concealed %", ("loss", "inmate", "concealed_pct"), ("<", 3)),
    ("loss: family video frozen %", ("loss", "family", "frozen_pct"), ("<", 2)),
    ("loss: inmate video frozen %", ("loss", "inmate", "frozen_pct"), ("<", 2)),
    ("cap: family audio concealed %", ("cap", "family", "concealed_pct"), ("<", 3)),
    ("cap: inmate audio concealed %", ("cap", "inmate", "concealed_pct"), ("<", 3)),
    ("cap: family video adapts, s", ("cap", "family", "adapt_s"), ("<=", 10)),
    ("cap: inmate video adapts, s", ("cap", "inmate", "adapt_s"), ("<=", 10)),
    ("cap lifted: family full quality, s", ("cap", "family", "full_quality_s"), ("<=", 20)),
    ("cap lifted: inmate full quality, s", ("cap", "inmate", "full_quality_s"), ("<=", 20)),
    ("uplink: sent bitrate settles, s", ("uplink", "settle_s"), ("<=", 10)),
    ("uplink: inmate video loss after %", ("uplink", "video_loss_after_pct"), ("<", 5)),
    ("outage same address: media back, s", ("outage", "back_s"), None),
    ("outage new address: media back, s", ("switch", "back_s"), None),
    ("server CPU per packet, loss / clean", ("cpu_ratio",), ("<=", 1.3)),
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.network", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--phase-seconds", type=int, default=20,
                   help="length of the loss and cap phases and of the uplink series")
    p.add_argument("--recover-seconds", type=int, default=30,
                   help="longest wait for full quality after the cap lifts")
    p.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES),
                   help="comma-separated phases to run after the clean baseline "
                        f"(default all: {','.join(PHASES)})")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p


async def one_run(index: int, args: argparse.Namespace) -> dict[str, Any]:
    visit_id = f"net-bench-{index}"
    with tempfile.TemporaryDirectory() as tmp:
        async with visit_behind_link(Path(tmp), visit_id,
                                     VISITBRIDGE_LOG_LEVEL="warning") as visit:
            await asyncio.sleep(5)  # both browsers ramp up on the clean link
            run: dict[str, Any] = {"baseline": await baseline(visit, args.phase_seconds)}
            if "loss" in args.phases:
                run["loss"] = await loss_phase(visit, args.phase_seconds)
                clean = run["baseline"]["cpu"]["cpu_us_per_packet"]
                run["cpu_ratio"] = round(run["loss"]["cpu"]["cpu_us_per_packet"] / clean, 2)
                await asyncio.sleep(3)
            if "cap" in args.phases:
                run["cap"] = await cap_phase(visit, args.phase_seconds, args.recover_seconds,
                                             run["baseline"])
            if "uplink" in args.phases:
                run["uplink"] = await uplink_phase(visit, max(16, args.phase_seconds))
                await asyncio.sleep(3)
            for kind in ("outage", "switch"):
                if kind in args.phases:
                    run[kind] = await outage_phase(visit, visit_id, kind == "switch", 60)
                    await asyncio.sleep(3)
    print(json.dumps(run), flush=True)
    return run


def pick(run: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        run = run[key]
    return run


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each figure's median, worst (and p95 for the outages) over the runs, and whether
    every run met its goal (a figure a run never reached counts as missed)."""
    out = []
    for name, path, goal in FIGURES:
        if path[0] not in runs[0]:
            continue  # a phase not run
        values = [pick(r, path) for r in runs]
        reached = [v for v in values if v is not None]
        row: dict[str, Any] = {"figure": name, "values": values,
                               "median": statistics.median(reached) if reached else None,
                               "worst": max(reached) if len(reached) == len(values) else None}
        if path[0] in ("outage", "switch"):
            row["p95"] = percentile(reached, 95) if len(reached) == len(values) else None
        if goal is not None:
            op, bound = goal
            row["goal"] = f"{op} {bound}"
            row["met"] = row["worst"] is not None and (
                row["worst"] < bound if op == "<" else row["worst"] <= bound)
        out.append(row)
    kinds = [kind for kind in ("outage", "switch") if kind in runs[0]]
    back = [r[kind]["back_s"] for r in runs for kind in kinds]
    if back:
        p95 = percentile([v for v in back if v is not None], 95)
        out.append({"figure": "outages: media back, s (p95 of both kinds)", "values": back,
                    "p95": p95 if None not in back else None, "goal": "<= 5",
                    "met": None not in back and p95 is not None and p95 <= 5})
    for kind in kinds:
        kept = [not r[kind]["reloaded"] and r[kind]["same_seat"] and r[kind]["participants"]
                == 2 for r in runs]
        gaps = [r[kind]["gaps_audited"] for r in runs]
        out.append({"figure": f"{kind}: no reload, same seat, no ghost", "values": kept,
                    "met": all(kept)})
        out.append({"figure": f"{kind}: audited gaps", "values": gaps, "goal": "== 1",
                    "met": all(g == 1 for g in gaps)})
    return out


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    runs = [await one_run(i, args) for i in range(args.runs)]
    return {"runs": runs, "summary": summary(runs)}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = asyncio.run(run_all(args))
    for row in result["summary"]:
        print(json.dumps(row), flush=True)
    record: dict[str, Any] = {"benchmark": "network", "visitbridge": result}
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, "asyncio"))
    append_result(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
