"""The event-loop lag ops and the soak read: every 0.5 s tick goes into a histogram (its
99th percentile is what visits see most of the time), and the worst tick of each 5 s
into the gauge. A stalled process shows in both."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from benchmarks.measure import bucket_percentile, histogram_buckets
from tests.support.server import running_server

pytestmark = pytest.mark.solo  # it measures the event loop's ticks

TICKS = "visitbridge_event_loop_tick_lag_seconds"
STALL_S = 2.0  # the tick due meanwhile is 1.5 to 2 s late


async def ticks(url: str) -> dict[float, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        return histogram_buckets(await response.text(), TICKS)


async def test_every_tick_is_counted_and_a_stall_is_seen(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        assert server.process is not None
        before = await ticks(server.url)
        await asyncio.sleep(3)
        quiet = await ticks(server.url)
        ticked = quiet[float("inf")] - before[float("inf")]
        assert 4 <= ticked <= 7, ticked  # one every 0.5 s
        assert (bucket_percentile(before, quiet, 99) or 1.0) <= 0.1  # an idle loop

        os.kill(server.process.pid, signal.SIGSTOP)  # the loop runs nothing meanwhile
        await asyncio.sleep(STALL_S)
        os.kill(server.process.pid, signal.SIGCONT)
        await asyncio.sleep(1)
        stalled = await ticks(server.url)
        late = stalled[float("inf")] - stalled[1.0]  # ticks more than 1 s late
        assert late - (quiet[float("inf")] - quiet[1.0]) == 1
        assert bucket_percentile(quiet, stalled, 99) == 2.5  # its bucket: 1 s to 2.5 s
