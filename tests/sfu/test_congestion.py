"""Transport feedback packets, read back with a decoder written from the draft's text."""

from __future__ import annotations

import struct

from sfu.congestion import ArrivalLog, encode_chunks


def decode(packet: bytes) -> dict[str, object]:
    """An RTCP transport feedback packet: base, reference, count, and per sequence
    number the arrival time in microseconds (None: not received)."""
    first, pt, length = struct.unpack_from("!BBH", packet)
    assert first == 0x80 | 15 and pt == 205 and (length + 1) * 4 == len(packet)
    sender, media, base, count, ref_count = struct.unpack_from("!IIHHI", packet, 4)
    pos = 20
    symbols: list[int] = []
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", packet, pos)
        pos += 2
        if chunk & 0x8000 == 0:
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif chunk & 0x4000:
            symbols += [(chunk >> (12 - 2 * i)) & 3 for i in range(7)]
        else:
            symbols += [(chunk >> (13 - i)) & 1 for i in range(14)]
    symbols = symbols[:count]
    time_us = (ref_count >> 8) * 64_000
    arrivals: dict[int, int | None] = {}
    for i, symbol in enumerate(symbols):
        seq = (base + i) & 0xFFFF
        if symbol == 0:
            arrivals[seq] = None
            continue
        if symbol == 1:
            delta = packet[pos]
            pos += 1
        else:
            (delta,) = struct.unpack_from("!h", packet, pos)
            pos += 2
        time_us += delta * 250
        arrivals[seq] = time_us
    assert len(packet) - pos < 4  # only padding left
    return {"sender": sender, "media": media, "base": base, "count": ref_count & 0xFF,
            "arrivals": arrivals}


def test_arrivals_and_gaps_are_reported_to_the_quarter_millisecond() -> None:
    log = ArrivalLog()
    start = 10_000_000
    for seq, at in ((100, start), (101, start + 1_000), (103, start + 61_000),
                    (102, start + 62_000)):
        log.record(seq, at)
    report = decode(log.feedback(7, 9) or b"")
    assert report["base"] == 100 and report["sender"] == 7 and report["media"] == 9
    assert report["arrivals"] == {100: start, 101: start + 1_000, 102: start + 62_000,
                                  103: start + 61_000}  # reordered: a negative delta


def test_each_report_starts_where_the_last_ended_and_wraps() -> None:
    log = ArrivalLog()
    log.record(65534, 1_000_000)
    log.record(65535, 1_020_000)
    first = decode(log.feedback(1, 2) or b"")
    log.record(65534, 1_030_000)  # late duplicate: already reported
    assert log.feedback(1, 2) is None
    log.record(1, 1_040_000)  # 0 lost across the wrap
    second = decode(log.feedback(1, 2) or b"")
    assert first["count"] == 0 and second["count"] == 1
    assert second["base"] == 0 and second["arrivals"] == {0: None, 1: 1_040_000}


def test_long_runs_are_run_length_encoded() -> None:
    log = ArrivalLog()
    log.record(0, 500_000)
    log.record(40, 800_000)  # 39 lost: one run-length chunk
    report = decode(log.feedback(1, 2) or b"")
    arrivals = report["arrivals"]
    assert isinstance(arrivals, dict)
    assert [s for s, t in arrivals.items() if t is None] == list(range(1, 40))
    assert arrivals[40] == 800_000
    assert encode_chunks([0] * 39) == struct.pack("!H", 39)
