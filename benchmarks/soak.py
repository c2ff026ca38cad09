"""Soak: recorded two-party visits for a long time, with parties leaving and rejoining.

    python -m benchmarks.soak --visits 10 --minutes 30 --churn-s 15

Starts the real server, joins N recorded visits, and every ``churn-s`` seconds one party
(chosen in turn) leaves and joins again with its link, as a family on a flaky phone does.
Every ``sample-s`` it reads the server's resident memory, open file descriptors, its
CPU per forwarded packet and its event-loop lag over the sample: the 99th percentile of
every 0.5 s tick (the server's tick histogram) and the worst tick (its gauge, read every
5 s). The result compares the first sample after ``settle-min`` minutes with
the last one: memory or descriptors that grow with churn are leaks. Prints one JSON
line and appends it to benchmarks/results/soak.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from auth.tokens import VisitClaim

from .forwarding import install_loop
from .load import FORWARDED, join_all
from .measure import (
    append_result,
    bucket_percentile,
    histogram_buckets,
    percentile,
    run_info,
)
from .media import EncodedClip, encode_opus, encode_vp8
from .party import Party
from .receive import disable_decoding
from .server import ServerProcess, parse_metrics, process_rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "soak.jsonl"
LAG = "visitbridge_event_loop_lag_seconds"  # the worst tick of the last 5 s
TICK_LAG = "visitbridge_event_loop_tick_lag_seconds"  # every tick, a histogram


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    p.add_argument("--visits", type=int, default=10)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--churn-s", type=float, default=15.0, help="seconds between rejoins")
    p.add_argument("--sample-s", type=float, default=60.0)
    p.add_argument("--settle-min", type=float, default=5.0,
                   help="growth is measured from the first sample after this")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, server: ServerProcess, visits: int, video: EncodedClip,
                 audio: EncodedClip, lifetime_s: float) -> None:
        now = int(time.time())
        self.server = server
        self.video, self.audio = video, audio
        self.tokens: list[tuple[str, str]] = []  # (name, token), one per party
        for i in range(visits):
            claim = VisitClaim(id=f"soak-{now}-{i}", starts_at=now - 5,
                               ends_at=now + int(lifetime_s) + 600)
            self.tokens += [(f"{role}-{i}", server.token(f"{role}-{i}", role, claim))
                            for role in ("inmate", "family")]
        self.parties = [self._party(i) for i in range(len(self.tokens))]
        self.rejoins = 0
        self.rejoin_failures: list[str] = []
        self.lags: list[float] = []  # the worst tick of each 5 s
        self.ticks: list[dict[float, float]] = []  # the tick histogram at each sample

    def _party(self, i: int) -> Party:
        name, token = self.tokens[i]
        return Party(name, self.server.ws_url, token, self.video, self.audio)

    async def churn(self, every_s: float) -> None:
        """One party after another leaves and rejoins (a new connection, the same link)."""
        i = 0
        while True:
            await asyncio.sleep(every_s)
            old, new = self.parties[i], self._party(i)
            await old.close()
            try:
                await new.join()
                self.rejoins += 1
            except Exception as exc:  # noqa: BLE001 - reported in the result
                self.rejoin_failures.append(f"{type(exc).__name__}: {exc}")
            self.parties[i] = new
            i = (i + 1) % len(self.parties)

    async def watch_lag(self, http: aiohttp.ClientSession) -> None:
        """The server's own loop-lag gauge (the worst tick of each 5 s), every 5 s."""
        while True:
            await asyncio.sleep(5)
            self.lags.append((await self.server.metrics(http)).get(LAG, 0.0))

    async def sample(self, http: aiohttp.ClientSession, since: dict[str, float] | None
                     ) -> dict[str, float]:
        text = await self.server.metrics_text(http)
        metrics = parse_metrics(text)
        self.ticks.append(histogram_buckets(text, TICK_LAG))
        now = {"at": time.monotonic(), "cpu_s": self.server.cpu_seconds(),
               "forwarded": metrics.get(FORWARDED, 0.0),
               "rss_mb": process_rss_mb(self.server.pid) or 0.0,
               "fds": float(open_fds(self.server.pid))}
        if since is not None:
            packets = now["forwarded"] - since["forwarded"]
            now["us_per_packet"] = round(
                (now["cpu_s"] - since["cpu_s"]) / packets * 1e6, 1) if packets else 0.0
            now["lag_p99_ms"] = tick_p99_ms(self.ticks[-2], self.ticks[-1])
            recent = self.lags[-max(1, round((now["at"] - since["at"]) / 5)):]
            now["lag_max_ms"] = round(1000 * max(recent, default=0.0), 1)
        return now


def tick_p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The 99th percentile of the server's loop ticks between two readings: at most this
    (the bound of its histogram bucket)."""
    return 1000 * (bucket_percentile(before, after, 99) or 0.0)


async def run(args: argparse.Namespace, video: EncodedClip, audio: EncodedClip
              ) -> dict[str, Any]:
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="visitbridge-soak-") as tmp:
        server = ServerProcess(Path(tmp), command=("app.cli", "serve"))
        server.start()
        soak = Soak(server, args.visits, video, audio, seconds)
        try:
            join_errors = await join_all([soak.parties[i:i + 2]
                                           for i in range(0, len(soak.parties), 2)])
            started = time.monotonic()
            async with aiohttp.ClientSession() as http:
                tasks = [asyncio.ensure_future(soak.churn(args.churn_s)),
                         asyncio.ensure_future(soak.watch_lag(http))]
                samples: list[dict[str, float]] = []
                previous = await soak.sample(http, None)
                while time.monotonic() - started < seconds:
                    await asyncio.sleep(args.sample_s)
                    previous = await soak.sample(http, previous)
                    previous["minute"] = round((previous["at"] - started) / 60, 1)
                    samples.append(previous)
                    print(json.dumps(previous), file=sys.stderr, flush=True)
                for task in tasks:
                    task.cancel()
            alive = server.alive()
        finally:
            for party in soak.parties:
                await party.close()
            server.stop()
    settled = [s for s in samples if s["minute"] >= args.settle_min] or samples
    first, last = settled[0], samples[-1]
    return {
        "visits": args.visits, "minutes": args.minutes, "churn_s": args.churn_s,
        "join_errors": join_errors, "rejoins": soak.rejoins,
        "rejoin_failures": soak.rejoin_failures[:5], "server_alive": alive,
        "from_minute": first["minute"], "to_minute": last["minute"],
        "rss_mb": [first["rss_mb"], last["rss_mb"]],
        "rss_growth_pct": round(100 * (last["rss_mb"] / first["rss_mb"] - 1), 1),
        "fds": [first["fds"], last["fds"]],
        "us_per_packet": [first["us_per_packet"], last["us_per_packet"]],
        "lag_p99_ms": tick_p99_ms(soak.ticks[samples.index(first)], soak.ticks[-1]),
        "lag_max_ms": max(s["lag_max_ms"] for s in settled),
        # The figure reported before the tick histogram: close to the maximum.
        "lag_p99_of_5s_worst_ms": percentile(
            [1000 * s for s in soak.lags[round(args.settle_min * 12):] or soak.lags], 99),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    disable_decoding()
    loop_name = install_loop()
    video, audio = encode_vp8(), encode_opus()
    record: dict[str, Any] = {"benchmark": "soak", "visitbridge": asyncio.run(
        run(args, video, audio))}
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, loop_name))
    print(json.dumps({k: v for k, v in record["visitbridge"].items() if k != "samples"}),
          flush=True)
    append_result(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
