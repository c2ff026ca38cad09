"""Transport-wide congestion control feedback for a publisher (no I/O, times passed in).

A browser finds what its uplink carries with its own send-side estimator, which needs to
know when each of its packets arrived: it numbers them across every stream of the
connection (the transport-wide sequence number header extension) and the receiver
reports arrival times back (RTCP transport feedback, draft-holmer-rmcat-transport-wide-
cc-extensions-01). Without this, a publisher behind a slow link learns only from loss
reports and swings above and below the link's rate; with it, the publisher settles
under it. ``ArrivalLog`` keeps the arrivals between two feedbacks and encodes them.
"""

from __future__ import annotations

import struct

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTPFB = 205
TRANSPORT_CC_FMT = 15
TICK_US = 250  # one receive delta unit
REFERENCE_US = 64_000  # one reference time unit
NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
MAX_PACKETS = 2048  # one feedback never covers more (older missing ones go unreported)


class ArrivalLog:
    """Arrival times of one connection's packets by transport-wide sequence number."""

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival in us
        self._highest: int | None = None
        self._next_base: int | None = None  # first sequence number the next report covers
        self._count = 0  # feedback packet count (8 bits on the wire)

    def __len__(self) -> int:
        return len(self._arrivals)

    def record(self, sequence: int, arrival_us: int) -> None:
        """One packet's arrival; a packet already reported (late, or a duplicate) is not."""
        if self._highest is None:
            unwrapped = sequence
        else:
            diff = (sequence - self._highest) & 0xFFFF
            unwrapped = self._highest + (diff - 0x10000 if diff >= 0x8000 else diff)
        if self._next_base is None:
            self._next_base = unwrapped
        if unwrapped < self._next_base or unwrapped in self._arrivals:
            return
        self._arrivals[unwrapped] = arrival_us
        if self._highest is None or unwrapped > self._highest:
            self._highest = unwrapped

    def feedback(self, sender_ssrc: int, media_ssrc: int) -> bytes | None:
        """An RTCP transport feedback packet covering every packet since the last one
        (None if nothing arrived); the log then starts after the highest reported."""
        if not self._arrivals or self._highest is None or self._next_base is None:
            return None
        base = max(self._next_base, self._highest + 1 - MAX_PACKETS)
        first_arrival = min(t for s, t in self._arrivals.items() if s >= base)
        reference = first_arrival // REFERENCE_US
        previous = reference * (REFERENCE_US // TICK_US)
        symbols: list[int] = []
        deltas = bytearray()
        for sequence in range(base, self._highest + 1):
            arrival = self._arrivals.get(sequence)
            if arrival is None:
                symbols.append(NOT_RECEIVED)
                continue
            ticks = arrival // TICK_US
            delta = max(-0x8000, min(0x7FFF, ticks - previous))
            previous += delta
            if 0 <= delta <= 0xFF:
                symbols.append(SMALL_DELTA)
                deltas.append(delta)
            else:
                symbols.append(LARGE_DELTA)
                deltas += struct.pack("!h", delta)
        body = struct.pack("!IIHHI", sender_ssrc, media_ssrc, base & 0xFFFF, len(symbols),
                           ((reference & 0xFFFFFF) << 8) | (self._count & 0xFF))
        body += encode_chunks(symbols) + bytes(deltas)
        body += bytes(-len(body) % 4)
        self._count += 1
        self._next_base = self._highest + 1
        self._arrivals.clear()
        header = struct.pack("!BBH", 0x80 | TRANSPORT_CC_FMT, RTPFB, len(body) // 4)  # words - 1
        return header + body


def encode_chunks(symbols: list[int]) -> bytes:
    """Packet status chunks: a run-length chunk for a run of one symbol longer than a
    vector holds, else two-bit status vector chunks of seven symbols."""
    out = bytearray()
    i = 0
    while i < len(symbols):
        run = 1
        while i + run < len(symbols) and symbols[i + run] == symbols[i] and run < 0x1FFF:
            run += 1
        if run > 7:
            out += struct.pack("!H", (symbols[i] << 13) | run)
            i += run
            continue
        group = symbols[i:i + 7]
        chunk = 0xC000
        for position, symbol in enumerate(group):
            chunk |= symbol << (12 - 2 * position)
        out += struct.pack("!H", chunk)
        i += len(group)
    return bytes(out)
