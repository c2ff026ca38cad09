"""An officer's wall: one real Chromium officer page watching N live visits.

Each visit has one aiortc publisher sending a pre-encoded VP8 clip with three temporal
layers (L1T3 from libvpx) and Opus. aiortc's own VP8 packetizer writes only a picture ID,
so ``tests.support.vp8_layers.layered_pack`` replaces it in this process with one that
writes TL0PICIDX, TID and Y as a browser sending L1T3 does.

Reported: the officer's downlink with every tile thinned to layer 0 (the wall) and with
every visit at full rate (what the wall would cost without layers), the server's CPU per
watched visit (the server process, wall minus publishers alone), and the time from
clicking Open on a tile to the first decoded frame at the full rate (consecutive frames
one 30 fps frame apart in RTP time, from ``requestVideoFrameCallback``).

    python -m benchmarks.wall --visits 16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from aiortc.codecs import vpx

from benchmarks.media import encode_opus
from benchmarks.party import Party
from tests.support.browser import chromium, open_page, open_to_full_rate_ms, until
from tests.support.server import running_server, visit_now
from tests.support.vp8_layers import layered_clip, layered_pack


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


async def downlink_mbps(page: Any, seconds: float) -> float:
    async def received() -> int:
        stats = await page.evaluate("window.visitStats()")
        return sum(s.get("bytesReceived", 0) for s in stats if s.get("type") == "transport")
    before = await received()
    await asyncio.sleep(seconds)
    return (await received() - before) * 8 / seconds / 1e6


async def run(visits: int, seconds: float) -> dict[str, Any]:
    vpx.Vp8Encoder.pack = layered_pack  # type: ignore[method-assign]
    video, audio = layered_clip(), encode_opus(4.0)
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp)) as server:
        assert server.process is not None
        pid = server.process.pid
        parties = [Party(f"visit-{i}", server.ws_url, server.token(
            f"inmate-{i}", "inmate", visit_now(f"visit-{i}")), video, audio)
            for i in range(visits)]
        try:
            for party in parties:
                await party.join()
            await asyncio.sleep(3)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(seconds)
            alone = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            officer = server.token("officer-1", "officer", None, name="Officer One")
            async with chromium() as browser:
                page = await open_page(browser, f"{server.url}/officer#token={officer}")
                await page.locator(f"tr[data-visit='visit-{visits - 1}']").wait_for()
                for i in range(visits):
                    await page.evaluate(f"toggleWatch('visit-{i}')")
                await until(page, f"""window.visitStats().then((s) => s.filter((x) =>
                    x.type === 'inbound-rtp' && x.kind === 'video' && x.framesDecoded > 0
                    ).length >= {visits})""", 60)
                await asyncio.sleep(2)
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                wall = await downlink_mbps(page, seconds)
                watched = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
                first_full = await open_to_full_rate_ms(page, "visit-0")
                await page.evaluate("""for (const e of watches.values()) {
                    e.open = true; sendView(e); }""")
                await asyncio.sleep(2)
                full = await downlink_mbps(page, seconds)
        finally:
            for party in parties:
                await party.close()
    return {"visits": visits, "seconds": seconds, "publisher_kbps": round(
                video.bitrate_bps / 1000),
            "officer_downlink_mbps_wall": round(wall, 2),
            "officer_downlink_mbps_all_full_rate": round(full, 2),
            "server_cpu_percent_publishers_only": round(alone * 100, 1),
            "server_cpu_percent_with_wall": round(watched * 100, 1),
            "server_cpu_percent_per_watched_visit": round((watched - alone) * 100 / visits, 2),
            "open_to_first_full_rate_frame_ms": round(first_full)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.visits, args.seconds))))


if __name__ == "__main__":
    main()
