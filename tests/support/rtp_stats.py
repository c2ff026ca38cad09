"""What a page's ``getStats()`` says about its media, summed and turned into rates.

Counters restart with a new peer connection (a page that rejoined): a delta taken across
a rejoin is wrong, so callers take deltas within one phase of steady media.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Page

COUNTERS = ("bytesSent", "bytesReceived", "packetsSent", "packetsReceived", "packetsLost",
            "framesDecoded", "concealedSamples", "totalSamplesReceived", "freezeCount",
            "totalFreezesDuration", "nackCount", "retransmittedPacketsSent",
            "fecPacketsReceived")


async def totals(page: Page, stat_type: str, kind: str) -> dict[str, float]:
    """``COUNTERS`` summed over the page's ``stat_type`` ("inbound-rtp", "outbound-rtp")
    stats of ``kind``, stamped with the time they were read (``at``, seconds)."""
    stats: list[dict[str, Any]] = await page.evaluate(
        "window.visitStats ? window.visitStats() : []")
    chosen = [s for s in stats if s.get("type") == stat_type and s.get("kind") == kind]
    summed = {name: float(sum(s.get(name, 0) for s in chosen)) for name in COUNTERS}
    summed["at"] = time.monotonic()
    return summed


@dataclass(frozen=True)
class Window:
    """Counters at the start and end of a measured window."""

    start: dict[str, float]
    end: dict[str, float]

    def delta(self, name: str) -> float:
        return self.end[name] - self.start[name]

    @property
    def seconds(self) -> float:
        return self.end["at"] - self.start["at"]

    def kbps(self, name: str) -> float:
        """A byte counter's rate in kilobits per second."""
        return self.delta(name) * 8 / 1000 / self.seconds

    def loss_percent(self) -> float:
        """Packets lost among those expected (received + lost), in percent."""
        lost = self.delta("packetsLost")
        expected = lost + self.delta("packetsReceived")
        return 100.0 * lost / expected if expected else 0.0

    def concealed_percent(self) -> float:
        """Audio samples played that were invented for lost packets, in percent."""
        played = self.delta("totalSamplesReceived")
        return 100.0 * self.delta("concealedSamples") / played if played else 0.0

    def frozen_percent(self) -> float:
        """Share of the window the video stood frozen (freezes that ended), in percent."""
        return 100.0 * self.delta("totalFreezesDuration") / self.seconds


async def window(page: Page, stat_type: str, kind: str, seconds: float) -> Window:
    start = await totals(page, stat_type, kind)
    await asyncio.sleep(seconds)
    return Window(start, await totals(page, stat_type, kind))


async def sent_kbps(page: Page, seconds: float) -> float:
    """Audio and video payload the page sent per second over ``seconds``."""
    start = [await totals(page, "outbound-rtp", kind) for kind in ("audio", "video")]
    await asyncio.sleep(seconds)
    end = [await totals(page, "outbound-rtp", kind) for kind in ("audio", "video")]
    sent = sum(e["bytesSent"] - s["bytesSent"] for s, e in zip(start, end, strict=True))
    return sent * 8 / 1000 / (end[1]["at"] - start[1]["at"])
