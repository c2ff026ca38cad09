"""Measurement helpers: event-loop lag, percentiles, and what a result must record.

A figure without its context cannot be compared later, so every result line carries the
commit, the versions, the core count and the arguments that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiortc
import av

from tests.support.process import ROOT


class LoopLag:
    """How late this process's event loop wakes a 50 ms sleep: the loop's backlog.

    The server does not export its own loop lag, so the figure is the load generator's,
    and is labelled so: a high value means the client side could not keep pace, and
    the server figures of that run are suspect.
    """

    INTERVAL_S = 0.05

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def reset(self) -> None:
        self.samples = []

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.INTERVAL_S)
            self.samples.append(max(0.0, time.monotonic() - before - self.INTERVAL_S))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.samples]
        return {"process": "client", "mean": _round(sum(ms) / len(ms)) if ms else None,
                "p99": percentile(ms, 99), "max": _round(max(ms)) if ms else None}


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: small samples stay honest)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return _round(ordered[int(rank) - 1])


def histogram_buckets(text: str, family: str) -> dict[float, float]:
    """A Prometheus histogram's cumulative bucket counts, {upper bound: count}, from the
    text format."""
    buckets: dict[float, float] = {}
    prefix = family + '_bucket{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            bound, _, count = line[len(prefix):].partition('"} ')
            buckets[float(bound)] = float(count)
    return buckets


def bucket_percentile(before: dict[float, float], after: dict[float, float],
                      pct: float) -> float | None:
    """The percentile of what a histogram observed between two readings, as the upper
    bound of the bucket it falls in (no interpolation: the figure is never flattering).
    None if nothing was observed."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = counts[-1] * pct / 100
    return next(b for b, c in zip(bounds, counts, strict=True) if c >= rank)


def _round(value: float) -> float:
    return round(value, 1)


def distribution_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "median": percentile(ms, 50), "p95": percentile(ms, 95),
            "max": _round(max(ms)) if ms else None}


def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit, read from .git files (the benchmark never runs git)."""
    git = root / ".git"
    with contextlib.suppress(OSError, ValueError):
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        common = git
        if (git / "commondir").exists():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).exists():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    return None


def run_info(args: dict[str, Any], client_loop: str) -> dict[str, Any]:
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "args": args,
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "cpu_count": os.cpu_count(),
        "client_loop": client_loop,
    }


def benchmark_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The options parser of ``python -m <module>``, described by its docstring's first line."""
    return argparse.ArgumentParser(prog=f"python -m {module}",
                                   description=(doc or "").split("\n", 1)[0])


def add_results_argument(p: argparse.ArgumentParser, default: Path) -> None:
    p.add_argument("--results", type=Path, default=default,
                   help=f"JSON-lines file to append to (default {default.relative_to(ROOT)})")


def append_result(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=False) + "\n")


def report(record: dict[str, Any], args: argparse.Namespace, client_loop: str) -> None:
    """Add how the run was made to ``record``, print it as one JSON line and append it to
    the ``--results`` file."""
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, client_loop))
    print(json.dumps(record), flush=True)
    append_result(args.results, record)
