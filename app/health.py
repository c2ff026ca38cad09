"""Process health for ops: event-loop lag and free space on the recordings volume."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from prometheus_client import Gauge

LOOP_LAG = Gauge("visitbridge_event_loop_lag_seconds",
                 "How late the event loop ran a 0.5 s timer (worst of the last 5 s)")
FREE_BYTES = Gauge("visitbridge_recordings_free_bytes", "Free space on the recordings volume")


def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


async def watch(recordings: Path, interval_s: float = 0.5, window: int = 10) -> None:
    """Measure loop lag (a late timer means every visit's packets are late too)."""
    lags: list[float] = []
    while True:
        start = time.monotonic()
        await asyncio.sleep(interval_s)
        lags.append(max(0.0, time.monotonic() - start - interval_s))
        if len(lags) >= window:
            LOOP_LAG.set(max(lags))
            lags.clear()
            FREE_BYTES.set(await asyncio.to_thread(free_bytes, recordings))
