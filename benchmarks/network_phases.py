"""The phases of the network benchmark, each on a live visit behind an impaired link.

Every figure is what the browsers themselves report through ``getStats()``
(``tests.support.rtp_stats``), taken within one phase (counters restart when a page
rejoins on a new peer connection), except the server's CPU (from /proc) and what the
server recorded (its metrics and audit log).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from playwright.async_api import Page

from benchmarks.server import process_cpu_seconds
from tests.support.audit import audit
from tests.support.netvisit import NetVisit
from tests.support.rtp_stats import Window, sent_kbps, totals, window
from tests.support.server import metric

CAP_KBPS = 300
LOSS_PERCENT = 5
OUTAGE_S = 5.0
GOOD_VIDEO_LOSS = 5.0  # a 1 s window with less video lost than this counts as adapted
STEADY_WINDOWS = 3  # an adaptation must hold this many windows to count


def sides(visit: NetVisit) -> dict[str, Page]:
    """Each side's page by who is watching: ``family`` sees the inmate and vice versa."""
    return {"family": visit.family, "inmate": visit.inmate}


def family_sub(visit_id: str) -> str:
    return f"family-{visit_id}"  # as ``two_party_links`` names Sam


async def frame_width(page: Page) -> int:
    stats = await page.evaluate("window.visitStats()")
    return max([int(s.get("frameWidth", 0)) for s in stats
                if s.get("type") == "inbound-rtp" and s.get("kind") == "video"] or [0])


async def windows(pages: dict[str, Page], kind: str, count: int,
                  seconds: float = 1.0) -> dict[str, list[Window]]:
    """``count`` consecutive windows of ``seconds`` of each page's inbound ``kind``."""
    out: dict[str, list[Window]] = {name: [] for name in pages}
    last = {name: await totals(p, "inbound-rtp", kind) for name, p in pages.items()}
    for _ in range(count):
        await asyncio.sleep(seconds)
        for name, page in pages.items():
            now = await totals(page, "inbound-rtp", kind)
            out[name].append(Window(last[name], now))
            last[name] = now
    return out


def steady_from(good: list[bool]) -> int | None:
    """Index of the first window from which every window is good (and at least
    ``STEADY_WINDOWS`` of them), or None."""
    for i in range(len(good) - STEADY_WINDOWS + 1):
        if all(good[i:]):
            return i
    return None


async def cpu_per_packet(visit: NetVisit, seconds: float) -> dict[str, float]:
    """The server's CPU over ``seconds`` and the packets it forwarded meanwhile."""
    assert visit.server.process is not None
    pid = visit.server.process.pid
    name = "visitbridge_forwarded_packets_total"
    cpu0, packets0 = process_cpu_seconds(pid), await metric(visit.server, name)
    await asyncio.sleep(seconds)
    cpu, packets = process_cpu_seconds(pid) - cpu0, await metric(visit.server, name) - packets0
    return {"cpu_s": round(cpu, 2), "packets": packets,
            "cpu_us_per_packet": round(cpu / packets * 1e6, 1) if packets else float("nan")}


async def baseline(visit: NetVisit, seconds: float) -> dict[str, Any]:
    """Clean link: what each side receives (frame rate, width) and the server's cost."""
    audio, cost = await asyncio.gather(
        windows(sides(visit), "audio", 1, seconds), cpu_per_packet(visit, seconds))
    video = await windows(sides(visit), "video", 2, 1.5)
    out: dict[str, Any] = {"cpu": cost}
    for name, page in sides(visit).items():
        fps = sum(w.delta("framesDecoded") for w in video[name]) / sum(
            w.seconds for w in video[name])
        out[name] = {"fps": round(fps, 1), "width": await frame_width(page),
                     "video_kbps": round(sum(w.kbps("bytesReceived") for w in video[name])
                                         / len(video[name])),
                     "concealed_pct": round(audio[name][0].concealed_percent(), 2)}
    return out


async def loss_phase(visit: NetVisit, seconds: float) -> dict[str, Any]:
    """(a) and (e): random loss both ways; concealed audio and frozen video on each side,
    and the server's CPU per forwarded packet meanwhile."""
    visit.link.loss(LOSS_PERCENT)
    await asyncio.sleep(2)  # the link's history before the phase does not count
    streams = [window(p, stat, kind, seconds) for p in sides(visit).values()
               for stat, kind in (("inbound-rtp", "audio"), ("inbound-rtp", "video"),
                                  ("outbound-rtp", "audio"))]
    *measured, cost = await asyncio.gather(*streams, cpu_per_packet(visit, seconds))
    visit.link.clean()
    out: dict[str, Any] = {"cpu": cost}
    for i, name in enumerate(sides(visit)):
        audio, video, sent = measured[3 * i:3 * i + 3]
        out[name] = {"concealed_pct": round(audio.concealed_percent(), 2),
                     "frozen_pct": round(video.frozen_percent(), 2),
                     "video_loss_pct": round(video.loss_percent(), 2),
                     "audio_loss_pct": round(audio.loss_percent(), 2),
                     "audio_nacks_sent": audio.delta("nackCount"),
                     "audio_fec_packets": audio.delta("fecPacketsReceived"),
                     "audio_resent_by_me": sent.delta("retransmittedPacketsSent"),
                     "video_nacks_sent": video.delta("nackCount")}
    return out


async def cap_phase(visit: NetVisit, seconds: int, recover_s: int,
                    base: dict[str, Any]) -> dict[str, Any]:
    """(b): the family's link capped both ways; time until each side's video stays under
    ``GOOD_VIDEO_LOSS`` % lost, concealed audio over the phase, then time after the cap
    lifts until each side decodes the frame rate and width it had on a clean link."""
    pages = sides(visit)
    visit.link.cap(CAP_KBPS, CAP_KBPS)
    audio_start = {n: await totals(p, "inbound-rtp", "audio") for n, p in pages.items()}
    video = await windows(pages, "video", seconds)
    out: dict[str, Any] = {}
    for name, page in pages.items():
        audio = Window(audio_start[name], await totals(page, "inbound-rtp", "audio"))
        adapted = steady_from([w.loss_percent() < GOOD_VIDEO_LOSS and w.delta(
            "framesDecoded") > 0 for w in video[name]])
        out[name] = {"concealed_pct": round(audio.concealed_percent(), 2),
                     "adapt_s": adapted,
                     "video_loss_pct": [round(w.loss_percent()) for w in video[name]],
                     "capped_kbps": round(video[name][-1].kbps("bytesReceived"))}
    visit.link.cap(None, None)
    lifted = time.monotonic()
    pending = dict(pages)
    while pending and time.monotonic() - lifted < recover_s:
        got = await windows(pending, "video", 1)
        for name in list(pending):
            fps = got[name][0].delta("framesDecoded") / got[name][0].seconds
            width = await frame_width(pending[name])
            if fps >= 0.9 * base[name]["fps"] and width >= base[name]["width"]:
                out[name]["full_quality_s"] = round(time.monotonic() - lifted, 1)
                del pending[name]
    for name in pending:
        out[name]["full_quality_s"] = None
    return out


async def uplink_phase(visit: NetVisit, seconds: int) -> dict[str, Any]:
    """(d): the family's uplink capped; seconds until its sent bitrate stays under the
    cap, and the inmate's video loss after that."""
    before = 0.0
    for _ in range(10):  # Chrome ramps up past the cap again after the phases before
        before = await sent_kbps(visit.family, 2)
        if before > CAP_KBPS * 1.3:
            break
    visit.link.cap(CAP_KBPS, None)
    series = [await sent_kbps(visit.family, 1) for _ in range(seconds)]
    seen = await window(visit.inmate, "inbound-rtp", "video", 8)
    visit.link.cap(None, None)
    settled = steady_from([kbps < CAP_KBPS for kbps in series])
    return {"before_kbps": round(before), "settle_s": None if settled is None else settled + 1,
            "sent_kbps": [round(k) for k in series],
            "video_loss_after_pct": round(seen.loss_percent(), 2)}


async def flowing_after(page: Page, start: float, timeout: float) -> float | None:
    """Seconds from ``start`` until the page decodes a new video frame (counters may
    restart on a rejoin, so only a rise between two readings counts)."""
    last = (await totals(page, "inbound-rtp", "video"))["framesDecoded"]
    while time.monotonic() - start < timeout:
        await asyncio.sleep(0.1)
        now = (await totals(page, "inbound-rtp", "video"))["framesDecoded"]
        if now > last:
            return round(time.monotonic() - start, 2)
        last = now
    return None


async def settle(condition: Callable[[], Any], timeout: float) -> bool:
    """Poll an async ``condition`` until true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.5)
    return False


SEATS = """[...document.querySelectorAll('li[data-participant]')].map((t) =>
  [t.dataset.participant, t.dataset.slot, t.classList.contains('reconnecting')])"""


async def outage_phase(visit: NetVisit, visit_id: str, new_address: bool,
                       timeout: float) -> dict[str, Any]:
    """(c): every packet dropped for ``OUTAGE_S``, the family's address changed meanwhile
    or not; seconds from the restore until both sides decode video, the page never
    reloaded, the family back in its seat, one audited gap and nobody else in the room."""
    sub = family_sub(visit_id)
    seen = len(audit(visit.server, visit_id))
    seats = await visit.inmate.evaluate(SEATS)
    await visit.family.evaluate("window.benchmarkMark = 1")
    visit.link.cut()
    if new_address:
        visit.link.readdress()
    await asyncio.sleep(OUTAGE_S)
    visit.link.restore()
    restored = time.monotonic()
    back = await asyncio.gather(*(flowing_after(p, restored, timeout)
                                  for p in sides(visit).values()))

    async def seated() -> bool:
        now = await visit.inmate.evaluate(SEATS)
        return bool(now == [[s, slot, False] for s, slot, _ in seats])
    same_seat = await settle(seated, 10)
    await asyncio.sleep(1.5)  # the room's next tick audits a gap closed on the same connection
    rows = [r for r in audit(visit.server, visit_id)[seen:] if r["actor"] == sub]
    return {
        "back_s": None if None in back else max(b for b in back if b is not None),
        "back_by_side": dict(zip(sides(visit), back, strict=True)),
        "reloaded": not await visit.family.evaluate("window.benchmarkMark === 1"),
        "same_seat": same_seat,
        "gaps_audited": sum(r["action"] == "media_gap" for r in rows),
        "gap_s": [r["detail"]["gap_s"] for r in rows if r["action"] == "media_gap"],
        "drops_audited": sum(r["action"] == "connection_lost" for r in rows),
        "audit": [(r["action"], r["reason"]) for r in rows],
        "participants": await metric(visit.server, "visitbridge_participants"),
    }
