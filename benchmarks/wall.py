"""An officer's wall: one real Chromium officer page watching N live visits.

Each visit has one aiortc publisher sending a pre-encoded VP8 clip with three temporal
layers (L1T3 from libvpx) and Opus, and (unless ``--no-simulcast``) a second clip at half
the width and height, about 100 kb/s, as the simulcast encoding ``q`` that the wall's
tiles get (``benchmarks.low_copy``). aiortc's own VP8 packetizer writes only a picture ID,
so ``tests.support.vp8_layers.layered_pack`` replaces it in this process with one that
writes TL0PICIDX, TID and Y as a browser sending L1T3 does.

Reported: the officer's downlink with every tile at layer 0 (the wall) and with
every visit at full rate (what the wall would cost without layers), the server's CPU per
watched visit (the server process, wall minus publishers alone), and the time from
clicking Open on a tile to the first decoded frame at the full rate (consecutive frames
one 30 fps frame apart in RTP time, from ``requestVideoFrameCallback``). Each downlink
comes with what it is made of, per tile (``benchmarks.downlink``), and the publisher's
clip with its own split (all layers, layer 0, keyframes): the clip has a keyframe every
``--keyframe-s`` seconds besides those the subscribers ask for.

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

from benchmarks.downlink import breakdown
from benchmarks.media import EncodedClip, encode_opus
from benchmarks.party import Party
from sfu.aiortc_glue import offer_stream_ids
from tests.support.browser import chromium, open_page, open_to_full_rate_ms, until
from tests.support.server import running_server, visit_now
from tests.support.vp8_layers import FPS, LAYER_OF, PATTERN, layered_clip, layered_pack


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


async def downlink(page: Any, seconds: float, tiles: int) -> dict[str, Any]:
    """The officer's downlink over ``seconds`` (Mb/s) and what it is made of, per tile."""
    before = await page.evaluate("window.visitStats()")
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    after = await page.evaluate("window.visitStats()")
    parts = breakdown(before, after, time.monotonic() - t0, tiles)
    return {"mbps": round(parts["kbps_per_tile"]["total"] * tiles / 1000, 2), **parts}


def clip_layers(clip: EncodedClip) -> dict[str, float]:
    """What the publisher sends, from the clip itself: all of it, temporal layer 0, and
    the keyframes (all in layer 0), in kb/s."""
    seconds = len(clip.packets) * clip.frame_seconds
    layer0 = [p for p in clip.packets if PATTERN[LAYER_OF[id(p)]] == 0]
    keys = [clip.packets[k] for k in clip.keyframes]
    return {"all_kbps": round(clip.bitrate_bps / 1000),
            "layer0_kbps": round(sum(p.size for p in layer0) * 8 / seconds / 1000),
            "keyframes_kbps": round(sum(p.size for p in keys) * 8 / seconds / 1000),
            "keyframe_interval_s": round(seconds / len(keys), 2)}


async def run(visits: int, seconds: float, keyframe_s: int = 2,
              simulcast: bool = True) -> dict[str, Any]:
    vpx.Vp8Encoder.pack = layered_pack  # type: ignore[method-assign]
    offer_stream_ids()  # the publishers answer with the extension naming their q packets
    # At least 4 s of clip, a whole number of keyframe intervals (the loop starts on one).
    clip_s = keyframe_s * -(-4 // keyframe_s)
    video = layered_clip(clip_s, keyframe_s * FPS)
    # The low copy a browser sends: half the width and height, about 100 kb/s.
    low = layered_clip(clip_s, keyframe_s * FPS, 160, 120, 100) if simulcast else None
    audio = encode_opus(4.0)
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp)) as server:
        assert server.process is not None
        pid = server.process.pid
        parties = [Party(f"visit-{i}", server.ws_url, server.token(
            f"inmate-{i}", "inmate", visit_now(f"visit-{i}")), video, audio, low)
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
                wall = await downlink(page, seconds, visits)
                watched = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
                first_full = await open_to_full_rate_ms(page, "visit-0")
                await page.evaluate("""for (const e of watches.values()) {
                    e.open = true; sendView(e); }""")
                await asyncio.sleep(2)
                full = await downlink(page, seconds, visits)
        finally:
            for party in parties:
                await party.close()
    return {"visits": visits, "seconds": seconds, "publisher": clip_layers(video),
            "publisher_low_copy": clip_layers(low) if low is not None else None,
            "officer_downlink_mbps_wall": wall.pop("mbps"),
            "officer_downlink_mbps_all_full_rate": full.pop("mbps"),
            "wall_breakdown": wall, "full_rate_breakdown": full,
            "server_cpu_percent_publishers_only": round(alone * 100, 1),
            "server_cpu_percent_with_wall": round(watched * 100, 1),
            "server_cpu_percent_per_watched_visit": round((watched - alone) * 100 / visits, 2),
            "open_to_first_full_rate_frame_ms": round(first_full)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keyframe-s", type=int, default=2, help=(
        "the publishers' keyframe interval besides the keyframes subscribers ask for"))
    parser.add_argument("--no-simulcast", action="store_true", help=(
        "publishers send no low copy: tiles get layer 0 of the full encoding"))
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.visits, args.seconds, args.keyframe_s,
                                     not args.no_simulcast))))


if __name__ == "__main__":
    main()
