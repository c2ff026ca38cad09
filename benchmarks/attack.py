"""Hostile media benchmark: one visit attacks while another visit on the worker runs.

    python -m benchmarks.attack --window 4
    python -m benchmarks.attack --window 4 --root /tmp/visitbridge-0d2fd18  # an older tree

Starts the real server (from this tree, or from ``--root``: any checkout or export whose
``python -m app.cli serve`` takes the same environment), joins two two-party visits
(pre-encoded VP8 + Opus, benchmarks/party.py) and, after a warm-up, runs one window per
attack in turn; in each, the family member of the second visit writes hostile packets
into its own DTLS transport, protected with its valid SRTP keys:

* ``none``: no attack (the reference window);
* ``seq``: its video with every packet half the sequence space after the last;
* ``ssrc``: video packets each with a new SSRC;
* ``nack``: NACKs each naming the last ~1,000 numbers of the video it receives, 5 times;
* ``remb``: REMB estimates of 0 for the video it receives.

For each window it reports the worker's event-loop lag as seen from outside (the round
trip of ``GET /healthz`` every 20 ms: the server answers it on the same loop), the
victim visit's loss and received packet rate, and the lowest REMB the attacked
visit's publisher was sent. Prints one JSON line and appends it to
benchmarks/results/attack.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    pack_rtcp_packet,
    unpack_remb_fci,
)

from sfu import glue_rtp

from .load import _visits, _wait_for_media, join_all
from .measure import append_result, benchmark_parser, percentile, run_info
from .media import encode_opus, encode_vp8
from .party import Party
from .receive import TapTotals, disable_decoding
from .server import ServerProcess, parse_metrics

RESULTS = Path(__file__).resolve().parent / "results" / "attack.jsonl"
ATTACKS = ("none", "seq", "ssrc", "nack", "remb")
PROBE_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 5.0
SETTLE_S = 1.2  # the receive taps count a packet lost once missing for 1 s
RECOVER_S = 15.0


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser("benchmarks.attack", __doc__)
    p.add_argument("--window", type=float, default=4.0, help="seconds per attack (default 4)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before the first window")
    p.add_argument("--rate", type=int, default=500,
                   help="hostile packets per second (RTCP: a tenth of it; default 500)")
    p.add_argument("--root", type=Path, default=None,
                   help="run the server from this source tree (default: this one)")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p


class Probe:
    """``GET /healthz`` in a loop: how long the server's event loop takes to answer."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                started = time.monotonic()
                try:
                    async with http.get(self._url) as resp:
                        await resp.read()
                except (TimeoutError, aiohttp.ClientError):
                    pass
                self.samples.append(time.monotonic() - started)
                await asyncio.sleep(PROBE_INTERVAL_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Attacker:
    """What the attacking party can write inside its own SRTP."""

    def __init__(self, party: Party) -> None:
        assert party.pc is not None
        self.pc = party.pc
        self.dtls = self.pc.getTransceivers()[0].sender.transport
        video = next(t for t in self.pc.getTransceivers()
                     if t.kind == "video" and t.sender.track is not None)
        self.ssrc = glue_rtp.sender_ssrc(video.sender)
        self.pt = glue_rtp.negotiated_codecs(video)[0].payloadType
        self.count = 0

    def received_video(self) -> tuple[int, int]:
        """(SSRC, highest sequence number) of the video this party receives most of."""
        best: tuple[int, int, int] = (0, 0, -1)
        for t in self.pc.getTransceivers():
            if t.kind != "video":
                continue
            for ssrc, stats in glue_rtp.receiver_statistics(t.receiver).items():
                if stats.packets_received > best[2] and stats.max_seq is not None:
                    best = (ssrc, stats.max_seq, stats.packets_received)
        return best[0], best[1]

    def _rtp(self, seq: int, ssrc: int) -> bytes:
        return RtpPacket(payload_type=self.pt, sequence_number=seq & 0xFFFF, timestamp=seq,
                         ssrc=ssrc, payload=b"\x10\x00hostile").serialize()

    def packet(self, attack: str) -> bytes | None:
        """The next hostile packet of ``attack`` (None: nothing to send)."""
        self.count += 1
        n = self.count
        if attack == "seq":
            return self._rtp(n * 32_767, self.ssrc)
        if attack == "ssrc":
            return self._rtp(n, (self.ssrc + n) & 0xFFFFFFFF)
        ssrc, highest = self.received_video()
        if attack == "nack":
            fcis = b"".join(struct.pack("!HH", (highest - 17 * k) & 0xFFFF, 0xFFFF)
                            for k in range(60, 0, -1) for _ in range(5))
            return pack_rtcp_packet(205, 1, struct.pack("!LL", 1234, ssrc) + fcis)
        if attack == "remb":
            return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1234, media_ssrc=0,
                                        fci=pack_remb_fci(0, [ssrc])))
        return None

    async def run(self, attack: str, rate: int, seconds: float) -> None:
        rate = rate if attack in ("seq", "ssrc") else max(1, rate // 10)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(max(1, rate // 50)):  # in bursts every 20 ms
                data = self.packet(attack)
                if data is not None:
                    await glue_rtp.send_protected(self.dtls, data)
            await asyncio.sleep(0.02)


def spy_rembs(party: Party) -> list[int]:
    """The REMB bitrates the server sends about ``party``'s published video, as sent."""
    assert party.pc is not None
    video = next(t for t in party.pc.getTransceivers()
                 if t.kind == "video" and t.sender.track is not None)
    seen: list[int] = []

    async def spy(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            seen.append(unpack_remb_fci(packet.fci)[0])
        await original(packet)

    original = glue_rtp.hook_sender_rtcp(video.sender, spy)
    return seen


def _loss(parties: list[Party], before: list[TapTotals]) -> dict[str, Any]:
    got = TapTotals()
    for party, start in zip(parties, before, strict=True):
        now = party.received()
        got = got + (now["audio"] + now["video"] - start)
    expected = got.received + got.lost
    return {"victim_loss_pct": round(100 * got.lost / expected, 3) if expected else None,
            "victim_received_packets": got.packets}


def _totals(parties: list[Party]) -> list[TapTotals]:
    return [p.received()["audio"] + p.received()["video"] for p in parties]


async def _recovered(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    """Wait (up to RECOVER_S) until the server answers at once: windows stay apart."""
    deadline = time.monotonic() + RECOVER_S
    while time.monotonic() < deadline:
        started = time.monotonic()
        async with http.get(server.url + "/healthz") as resp:
            await resp.read()
        if time.monotonic() - started < 0.05:
            return
        await asyncio.sleep(0.2)


async def _counters(server: ServerProcess, http: aiohttp.ClientSession) -> dict[str, float]:
    async with http.get(server.url + "/metrics") as resp:
        text = await resp.text()
    totals = parse_metrics(text)
    out = {"retransmissions": totals.get("visitbridge_retransmissions_total", 0.0),
           "loop_lag": totals.get("visitbridge_event_loop_lag_seconds", 0.0)}
    for line in text.splitlines():
        if line.startswith("visitbridge_media_limited_total{"):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


async def _window(attack: str, args: argparse.Namespace, server: ServerProcess,
                  http: aiohttp.ClientSession, probe: Probe, victims: list[Party],
                  attacker: Attacker, rembs: list[int]) -> dict[str, Any]:
    await _recovered(server, http)
    counters = await _counters(server, http)
    before, probe.samples, rembs[:] = _totals(victims), [], []
    await attacker.run(attack, args.rate, args.window)
    lag_ms = [s * 1000 for s in probe.samples]
    # The server's own gauge: the worst lag of a 0.5 s timer over the last 5 s.
    server_lag = (await _counters(server, http))["loop_lag"]
    await asyncio.sleep(SETTLE_S)
    after = await _counters(server, http)
    del after["loop_lag"]
    return {"attack": attack, "healthz_ms_p99": percentile(lag_ms, 99),
            "healthz_ms_max": round(max(lag_ms), 1) if lag_ms else None,
            "healthz_probes": len(lag_ms), "server_loop_lag_ms_max": round(server_lag * 1000, 1),
            **_loss(victims, before),
            "min_remb_to_attacked_publisher": min(rembs) if rembs else None,
            "counters": {k: after[k] - counters.get(k, 0.0) for k in after
                         if after[k] != counters.get(k, 0.0)},
            "server_alive": server.alive()}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    video, audio = encode_vp8(seconds=4.0), encode_opus(seconds=4.0)
    with tempfile.TemporaryDirectory(prefix="visitbridge-attack-") as tmp:
        server = ServerProcess(Path(tmp))
        if args.root is not None:
            server.env["PYTHONSAFEPATH"] = "1"  # the -m module comes from PYTHONPATH only
            server.env["PYTHONPATH"] = str(args.root.resolve())
        server.start()
        probe = Probe(server.url + "/healthz")
        visits = _visits(server, 2, video, audio, 600, record=False)
        parties = [p for v in visits for p in v]
        try:
            errors = await join_all(visits)
            if errors:
                raise RuntimeError(f"joins failed: {errors}")
            await _wait_for_media(parties)
            await asyncio.sleep(args.warmup)
            attacker = Attacker(visits[1][1])
            rembs = spy_rembs(visits[1][0])
            probe.start()
            async with aiohttp.ClientSession() as http:
                return [await _window(a, args, server, http, probe, visits[0], attacker, rembs)
                        for a in ATTACKS]
        finally:
            probe.stop()
            await asyncio.gather(*(p.close() for p in parties), return_exceptions=True)
            server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    disable_decoding()
    windows = asyncio.run(run(args))
    record: dict[str, Any] = {"benchmark": "attack", "windows": windows}
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, "asyncio"))
    print(json.dumps(record), flush=True)
    append_result(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
