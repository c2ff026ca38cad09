"""Process health for ops: event-loop lag and free space on the recordings volume
(with the configured minimum beside it)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from prometheus_client import Gauge, Histogram

LOOP_LAG = Gauge("visitbridge_event_loop_lag_seconds",
                 "How late the event loop ran a 0.5 s timer (worst of the last 5 s)")
# Every tick, not only the worst of each 5 s: a percentile over the worst of each window
# is close to the maximum. Buckets are finest around the 50 ms a visit notices.
LOOP_TICK_LAG = Histogram("visitbridge_event_loop_tick_lag_seconds",
                          "How late the event loop ran each 0.5 s timer",
                          buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                                   0.25, 0.5, 1.0, 2.5, 5.0))
FREE_BYTES = Gauge("visitbridge_recordings_free_bytes", "Free space on the recordings volume")
# The configured recordings_min_free_mb, so that alerts compare free space with the
# threshold this server refuses recorded visits at, whatever each site configured.
MIN_FREE_BYTES = Gauge("visitbridge_recordings_min_free_bytes",
                       "Free space below which new recorded visits are refused "
                       "(recordings_min_free_mb)")


def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


async def watch(recordings: Path, min_free_bytes: int, interval_s: float = 0.5,
                window: int = 10) -> None:
    """Measure loop lag (a late timer means every visit's packets are late too) and free
    space, the first time at once: a free space of 0 would read as a full volume."""
    MIN_FREE_BYTES.set(min_free_bytes)
    FREE_BYTES.set(await asyncio.to_thread(free_bytes, recordings))
    lags: list[float] = []
    while True:
        start = time.monotonic()
        await asyncio.sleep(interval_s)
        lags.append(max(0.0, time.monotonic() - start - interval_s))
        LOOP_TICK_LAG.observe(lags[-1])
        if len(lags) >= window:
            LOOP_LAG.set(max(lags))
            lags.clear()
            FREE_BYTES.set(await asyncio.to_thread(free_bytes, recordings))
