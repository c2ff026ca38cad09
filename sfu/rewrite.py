"""Sequence-number and timestamp rewriting for one outgoing stream.

A subscriber's slot keeps one SSRC for the whole visit while the publisher behind it
may change (a participant drops and rejoins, or a new participant takes a freed slot).
The receiving browser must see one continuous stream, so every source switch re-bases
the offsets to continue just after the last packet sent. Gaps inside one source are kept,
so the subscriber can NACK them and ``original_seq`` maps its NACK back to the source.
"""

from __future__ import annotations

from typing import NamedTuple

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


class Rewritten(NamedTuple):
    sequence_number: int
    timestamp: int


class StreamRewriter:
    """Maps (source, seq, ts) of incoming packets to one continuous outgoing stream."""

    def __init__(self, frame_ticks: int, initial_seq: int = 0, initial_ts: int = 0) -> None:
        # frame_ticks: timestamp step inserted at a switch (one frame/packet duration).
        self._frame_ticks = frame_ticks
        self._source: object | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq = (initial_seq - 1) % SEQ_MOD
        self._last_ts = initial_ts % TS_MOD
        self._highest_in_seq = 0
        self._first_out_seq = initial_seq % SEQ_MOD
        self._started = False

    @property
    def source(self) -> object | None:
        return self._source

    def rewrite(self, source: object, seq: int, ts: int) -> Rewritten | None:
        """Return the outgoing numbers, or None for a packet too old to forward."""
        if source != self._source:
            self._switch(source, seq, ts)
        else:
            delta = (seq - self._highest_in_seq) % SEQ_MOD
            if delta >= SEQ_MOD // 2:
                # Older than the newest forwarded packet: a late or retransmitted
                # packet. Forward it only if it falls after the switch point.
                if ((seq + self._seq_offset - self._first_out_seq) % SEQ_MOD) >= SEQ_MOD // 2:
                    return None
            else:
                self._highest_in_seq = seq
        out_seq = (seq + self._seq_offset) % SEQ_MOD
        out_ts = (ts + self._ts_offset) % TS_MOD
        if ((out_seq - self._last_seq) % SEQ_MOD) < SEQ_MOD // 2:
            self._last_seq = out_seq
            self._last_ts = out_ts
        return Rewritten(out_seq, out_ts)

    def original_seq(self, out_seq: int) -> int:
        """The source sequence number behind an outgoing one (for NACK handling)."""
        return (out_seq - self._seq_offset) % SEQ_MOD

    def _switch(self, source: object, seq: int, ts: int) -> None:
        next_seq = (self._last_seq + 1) % SEQ_MOD
        next_ts = (self._last_ts + (self._frame_ticks if self._started else 0)) % TS_MOD
        self._seq_offset = (next_seq - seq) % SEQ_MOD
        self._ts_offset = (next_ts - ts) % TS_MOD
        self._first_out_seq = next_seq
        self._highest_in_seq = seq
        self._source = source
        self._started = True
