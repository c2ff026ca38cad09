"""Drive N two-party visits against a running server and measure one window.

Phases: join every party (visits started VISIT_STAGGER_S apart, both parties of a
visit at once, as when a booked visit opens), wait until every party sees forwarded
video (or MEDIA_TIMEOUT_S passes), let the load settle for the warm-up, then measure a
window of ``seconds``. Only differences over the window are reported, so start-up work
(ICE, DTLS, first keyframes) never dilutes or inflates the steady-state cost.

The target is one server process or several measured as one (``LoadTarget``), which
says where each party joins.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from auth.tokens import VisitClaim

from .measure import LoopLag, distribution_ms
from .media import EncodedClip
from .party import Party
from .receive import TapTotals
from .server import process_cpu_seconds

VISIT_STAGGER_S = 0.05
MEDIA_TIMEOUT_S = 20.0
FORWARDED = "visitbridge_forwarded_packets_total"
FORWARDED_BYTES = "visitbridge_forwarded_bytes_total"
CODEC_INSTANCES = "visitbridge_codec_instances_total"


class LoadTarget(Protocol):
    """What the load needs of the server side: tokens, where pages connect, and its
    CPU, memory and metrics summed over every process that serves."""

    def entry(self, visit: int, party: int) -> str:
        """The WebSocket URL a party of a visit joins at."""
        ...

    def token(self, sub: str, role: str, visit: VisitClaim | None) -> str: ...
    def cpu_seconds(self) -> float: ...
    def context_switches(self) -> tuple[int, int]: ...
    def rss_mb(self) -> float | None: ...
    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]: ...
    def alive(self) -> bool: ...
    def log_tail(self, lines: int = 30) -> str: ...


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    """The load's options, the same in every benchmark that runs it."""
    p.add_argument("--visits", type=int, required=True, help="concurrent two-party visits")
    p.add_argument("--seconds", type=float, required=True,
                   help="length of each measured window")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds between all media flowing and the window (default 5)")


@dataclass
class Snapshot:
    """Counters at one instant; a measurement is the difference of two."""

    at: float
    server_cpu_s: float
    server_switches: tuple[int, int]  # voluntary, involuntary
    client_cpu_s: float
    metrics: dict[str, float]
    received: dict[str, TapTotals]  # by kind
    sent_frames: int
    late_frames: int
    keyframe_requests: int
    server_rss_mb: float | None

    def metric(self, name: str) -> float:
        return self.metrics.get(name, 0.0)


def _visits(server: LoadTarget, count: int, video: EncodedClip, audio: EncodedClip,
            lifetime_s: float, record: bool) -> list[list[Party]]:
    """Visits to run; without ``record`` they are privileged, which the server never
    records (recording is mandatory for every other visit)."""
    now = int(time.time())
    visits = []
    for i in range(count):
        claim = VisitClaim(id=f"bench-{now}-{i}", starts_at=now - 5,
                           ends_at=now + int(lifetime_s) + 600, privileged=not record)
        visits.append([
            Party(f"{role}-{i}", server.entry(i, k),
                  server.token(f"{role}-{i}", role, claim), video, audio)
            for k, role in enumerate(("inmate", "family"))])
    return visits


async def join_all(visits: list[list[Party]]) -> list[str]:
    """Join every party; return the errors of those that failed."""
    async def visit_joins(i: int, parties: list[Party]) -> list[BaseException | None]:
        await asyncio.sleep(i * VISIT_STAGGER_S)
        return await asyncio.gather(*(p.join() for p in parties), return_exceptions=True)

    results = await asyncio.gather(*(visit_joins(i, v) for i, v in enumerate(visits)))
    return [f"{type(r).__name__}: {r}" for rs in results for r in rs if r is not None]


async def _wait_for_media(parties: list[Party]) -> None:
    deadline = time.monotonic() + MEDIA_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(p.first_video_at is not None for p in parties if p.pc is not None):
            return
        await asyncio.sleep(0.1)


async def _snapshot(server: LoadTarget, http: aiohttp.ClientSession,
                    parties: list[Party]) -> Snapshot:
    metrics = await server.metrics(http)
    received = {"audio": TapTotals(), "video": TapTotals()}
    sent = late = keyframe_requests = 0
    for party in parties:
        for kind, totals in party.received().items():
            received[kind] = received[kind] + totals
        for stats in party.sent().values():
            sent += stats.frames
            late += stats.late
            keyframe_requests += stats.keyframe_requests
    return Snapshot(time.monotonic(), server.cpu_seconds(), server.context_switches(),
                    process_cpu_seconds(os.getpid()),
                    metrics, received, sent, late, keyframe_requests,
                    server.rss_mb())


def _summarize(start: Snapshot, end: Snapshot, parties: list[Party], join_errors: list[str],
               lag: LoopLag) -> dict[str, Any]:
    window = end.at - start.at
    cpu = end.server_cpu_s - start.server_cpu_s
    forwarded = end.metric(FORWARDED) - start.metric(FORWARDED)
    video = end.received["video"] - start.received["video"]
    got = video + (end.received["audio"] - start.received["audio"])
    expected = got.received + got.lost
    video_streams = sum(1 for p in parties for t in p.taps
                        if t.kind == "video" and t.first_video_at is not None)
    sent_frames = end.sent_frames - start.sent_frames
    sleeps, preemptions = (e - s for e, s in zip(end.server_switches, start.server_switches,
                                                  strict=True))
    return {
        "window_s": round(window, 2),
        "parties": len(parties),
        "join_failures": len(join_errors),
        "refused_server_full": sum("server_full" in e for e in join_errors),
        "join_errors": join_errors[:5],
        "parties_without_video": sum(1 for p in parties if p.first_video_at is None),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct_of_core": round(100 * cpu / window, 1),
        "server_rss_mb": end.server_rss_mb,
        "forwarded_packets": int(forwarded),
        "forwarded_pps": round(forwarded / window, 1),
        "forwarded_mbps": round(
            (end.metric(FORWARDED_BYTES) - start.metric(FORWARDED_BYTES)) * 8 / window / 1e6,
            2),
        "server_us_per_forwarded_packet": round(cpu * 1e6 / forwarded, 1) if forwarded else None,
        # How many packets a server handles each time it wakes: fewer, more cost per packet.
        "server_sleeps": sleeps,
        "forwarded_packets_per_server_sleep": round(forwarded / sleeps, 2) if sleeps else None,
        "server_preemptions": preemptions,
        "received_packets": got.packets,
        "received_pps": round(got.packets / window, 1),
        "loss_pct": round(100 * got.lost / expected, 3) if expected else None,
        "lost_packets": got.lost,
        "retransmissions_received": got.retransmissions,
        "video_fps_per_stream": (round(video.frames / video_streams / window, 1)
                                 if video_streams else None),
        "join_ms": distribution_ms([s for p in parties if (s := p.join_seconds) is not None]),
        "join_to_keyframe_ms": distribution_ms(
            [s for p in parties if (s := p.picture_seconds) is not None]),
        "keyframe_requests_to_publishers": end.keyframe_requests - start.keyframe_requests,
        # PLIs subscribers sent because their first video was not a keyframe (whole run).
        "subscriber_plis_at_join": sum(t.plis_sent for p in parties for t in p.taps),
        "loop_lag_ms": lag.summary(),
        "client_cpu_s": round(end.client_cpu_s - start.client_cpu_s, 3),
        "client_cpu_pct_of_core": round(
            100 * (end.client_cpu_s - start.client_cpu_s) / window, 1),
        "client_late_frames_pct": (round(100 * (end.late_frames - start.late_frames)
                                         / sent_frames, 2) if sent_frames else None),
        # The product's proof that it never decoded or encoded (None: not exported).
        "server_codec_instances": end.metrics.get(CODEC_INSTANCES),
    }


async def run_load(server: LoadTarget, visit_count: int, seconds: float, warmup: float,
                   video: EncodedClip, audio: EncodedClip, record: bool = False,
                   together: asyncio.Barrier | None = None) -> dict[str, Any]:
    """Run the visits against ``server`` (already started) and return the summary.
    Loads run side by side pass one ``together`` barrier: their windows then start at
    the same instant."""
    visits = _visits(server, visit_count, video, audio, warmup + seconds + MEDIA_TIMEOUT_S,
                     record)
    parties = [p for v in visits for p in v]
    lag = LoopLag()
    lag.start()
    try:
        async with aiohttp.ClientSession() as http:
            join_errors = await join_all(visits)
            await _wait_for_media(parties)
            await asyncio.sleep(warmup)
            if together is not None:
                await together.wait()
            if not server.alive():
                raise RuntimeError(f"server died during warm-up:\n{server.log_tail()}")
            lag.reset()
            start = await _snapshot(server, http, parties)
            await asyncio.sleep(seconds)
            end = await _snapshot(server, http, parties)
            if not server.alive():
                raise RuntimeError(f"server died during the window:\n{server.log_tail()}")
        return _summarize(start, end, parties, join_errors, lag)
    finally:
        await lag.stop()
        await asyncio.gather(*(p.close() for p in parties), return_exceptions=True)
