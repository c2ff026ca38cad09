"""Garbage and boundary RTP and RTCP inside valid SRTP, from a real aiortc participant.

A seeded generator (reproducible: the seed is in the test) writes malformed and extreme
packets: random payloads in sequence with the real stream (so they are forwarded and
recorded), header-only and padding-only packets, padding that claims more than the
packet, huge and inconsistent header extensions, fifteen CSRCs, unknown payload types,
timestamp and sequence jumps, and RTCP of every type with random bodies and counts that
lie. The server must log no exception, answer at once, and keep another visit and the
other direction of this one flowing.
"""

from __future__ import annotations

import random
import struct

import pytest
from aiortc.rtp import RtcpRrPacket

from tests.support.raw_media import (
    healthz_seconds,
    keeps_receiving,
    live_visit,
    published_audio,
    published_video,
    received_ssrcs,
    send_raw,
    spy_rtcp,
)
from tests.support.server import Server, module_server

pytestmark = pytest.mark.solo  # the other visit's media rate beside garbage

SEED = 20261203
# The formats the server acts on: NACK and transport-cc feedback; PLI, FIR and REMB.
FORMATS = {205: [1, 1, 15], 206: [1, 4, 15, 15]}


server = module_server("rtpfuzz")


def header(rng: random.Random, pt: int, seq: int, ssrc: int, *, csrcs: int = 0,
           extension: bytes | None = None, padding: bool = False) -> bytes:
    """A 12-byte RTP header (version 2) plus CSRCs and an extension block, as given."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0) | csrcs
    out = struct.pack("!BBHII", b0, (rng.getrandbits(1) << 7) | pt, seq & 0xFFFF,
                      rng.getrandbits(32), ssrc)
    out += b"".join(struct.pack("!I", rng.getrandbits(32)) for _ in range(csrcs))
    return out + (extension or b"")


def extension(rng: random.Random) -> bytes:
    """One-byte, two-byte or unknown-profile extensions, up to 1 KB, lengths that lie."""
    profile = rng.choice([0xBEDE, 0x1000, 0x1001, rng.getrandbits(16)])
    body = bytes(rng.getrandbits(8) for _ in range(4 * rng.randrange(0, 256)))
    words = len(body) // 4
    return struct.pack("!HH", profile, rng.choice([words, words, 0, 0xFFFF])) + body


def rtp_packets(rng: random.Random, streams: list[tuple[int, int]], base_seq: int,
                count: int) -> list[bytes]:
    packets = []
    for i in range(count):
        ssrc, pt = rng.choice(streams)
        seq = base_seq + i if rng.random() < 0.7 else rng.getrandbits(16)
        payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 2, 40, 1000])))
        kind = rng.randrange(6)
        if kind == 0:  # random payload, plain header
            packets.append(header(rng, pt, seq, ssrc) + payload)
        elif kind == 1:  # header only, or padding only, or padding that lies
            pad = rng.choice([0, 1, 4, 255])
            packets.append(header(rng, pt, seq, ssrc, padding=True) + payload
                           + bytes(max(pad - 1, 0)) + bytes([pad]))
        elif kind == 2:
            packets.append(header(rng, pt, seq, ssrc, extension=extension(rng)) + payload)
        elif kind == 3:
            packets.append(header(rng, pt, seq, ssrc, csrcs=15) + payload)
        elif kind == 4:  # unknown payload type or a foreign SSRC
            packets.append(header(rng, rng.randrange(128), seq,
                                  rng.choice([ssrc, rng.getrandbits(32)])) + payload)
        else:
            packets.append(header(rng, pt, seq, ssrc))
    return packets


def rtcp_packets(rng: random.Random, own: list[int], sinks: list[int],
                 count: int) -> list[bytes]:
    """RTCP of every type (SR to XR), about the server's sinks or anything; counts and
    formats random, bodies random."""
    packets = []
    for _ in range(count):
        body = struct.pack("!II", rng.choice(own), rng.choice(sinks + [rng.getrandbits(32)]))
        body += bytes(rng.getrandbits(8) for _ in range(4 * rng.randrange(0, 40)))
        packet_type = rng.randrange(192, 208) if rng.random() < 0.2 else rng.randrange(200, 208)
        count = rng.choice(FORMATS.get(packet_type, []) + [rng.randrange(32)])
        length = len(body) // 4 if rng.random() < 0.8 else rng.getrandbits(16)
        first = struct.pack("!BBH", 0x80 | count, packet_type, length)
        packets.append(first + body)
    return packets


async def test_garbage_media_is_survived_by_the_server_and_other_visits(
        server: Server) -> None:
    rng = random.Random(SEED)
    async with live_visit(server, "bystander") as (bystander, _), \
            live_visit(server, "fuzz") as (inmate, family):
        video, audio = published_video(family), published_audio(family)
        reports = spy_rtcp(family, RtcpRrPacket)
        await family.wait_for(lambda: len(reports) >= 1, 5)
        base = next(b for b in reports[-1].reports if b.ssrc == video[0]).highest_sequence
        sinks = received_ssrcs(family)
        sent = 0
        for batch in range(10):
            sent += await send_raw(family, rtp_packets(rng, [video, audio], base + 100 * batch,
                                                       100))
            sent += await send_raw(family, rtcp_packets(rng, [video[0], audio[0]], sinks, 100))
        # The sender's own SRTP replay check refuses some jumps; the rest reached the server.
        assert sent >= 750, sent
        assert await healthz_seconds(server) < 1.0
        await keeps_receiving(family, 0)  # the fuzzing party still sees the inmate
        await keeps_receiving(bystander, 1)  # another visit is untouched
    log = server.log_text()
    assert "Traceback" not in log and "exception" not in log.lower(), log[-3000:]
