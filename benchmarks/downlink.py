"""What an officer's downlink is made of, from two snapshots of the page's WebRTC stats.

Chromium's ``transport`` ``bytesReceived`` counts every SRTP and SRTCP datagram of a
connection (the 10-byte SRTP tags and the RTCP included, not UDP and IP). The
``inbound-rtp`` entries split what the RTP carried: payload (``bytesReceived``, which
includes retransmissions) and RTP headers with their extensions (``headerBytesReceived``);
what is left of the transport's count is SRTP tags, RTCP and DTLS. Pure logic: stats in,
figures out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Stats = list[dict[str, Any]]

COUNTS = ("packetsReceived", "framesDecoded", "keyFramesDecoded", "nackCount", "pliCount",
          "firCount", "retransmittedPacketsReceived")


def _totals(stats: Iterable[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in stats:
        if s.get("type") == "transport":
            out["transport"] = out.get("transport", 0) + s.get("bytesReceived", 0)
        elif s.get("type") == "inbound-rtp":
            kind = s.get("kind", "")
            for field in ("bytesReceived", "headerBytesReceived",
                          "retransmittedBytesReceived", *COUNTS):
                key = f"{kind}.{field}"
                out[key] = out.get(key, 0) + s.get(field, 0)
    return out


def breakdown(before: Stats, after: Stats, seconds: float, tiles: int) -> dict[str, Any]:
    """kb/s per tile for each part of the downlink, and counts per tile per second."""
    a, b = _totals(before), _totals(after)

    def rate(key: str) -> float:
        return (b.get(key, 0) - a.get(key, 0)) / seconds / tiles

    def kbps(key: str) -> float:
        return round(rate(key) * 8 / 1000, 1)

    parts = {"video_payload": kbps("video.bytesReceived"),
             "video_rtp_headers": kbps("video.headerBytesReceived"),
             "audio_payload": kbps("audio.bytesReceived"),
             "audio_rtp_headers": kbps("audio.headerBytesReceived")}
    total = kbps("transport")
    return {"kbps_per_tile": {"total": total, **parts,
                              "srtp_tags_rtcp_dtls": round(total - sum(parts.values()), 1),
                              "video_retransmitted": kbps("video.retransmittedBytesReceived")},
            "per_tile_per_second": {f"video.{c}": round(rate(f"video.{c}"), 2)
                                    for c in COUNTS},
            "audio_packets_per_tile_per_second": round(rate("audio.packetsReceived"), 2)}
