"""Simulcast: a publisher's video in two encodings, told apart by their RTP stream ids.

The server's offer asks the publisher for ``f`` (full resolution) and ``q`` (a low
resolution copy of about 100 kb/s) on its video m-line (RFC 8853 ``a=simulcast`` with
RFC 8851 ``a=rid``). A simulcast answer carries no ``a=ssrc`` lines: the SSRC of each
encoding is learnt from the rtp-stream-id header extension of its first packets (RTX
packets carry the repaired-rtp-stream-id of the encoding they repair). The recording and
the other parties get ``f``; a watching officer's tiles get ``q``, and the visit the
officer opens gets ``f``. A publisher that sends no ``q`` (no simulcast) is forwarded as
before: its one encoding to everyone, tiles thinned to temporal layer 0.

Pure logic: strings and names in, strings and names out.
"""

from __future__ import annotations

FULL = "f"
LOW = "q"
RIDS = (FULL, LOW)
LOW_MAX_BPS = 100_000  # the pages' cap on "q" (web/static/rtc.js)
RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def offer_simulcast(sdp: str, mid: str) -> str:
    """The offer with the m-line ``mid`` asking to receive ``f`` and ``q``.

    The lines go at the end of that m-line's section; every other line is kept as is.
    """
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.rstrip(eol).split(eol)
    out: list[str] = []
    inside = False
    added = [f"a=rid:{rid} recv" for rid in RIDS] + [f"a=simulcast:recv {';'.join(RIDS)}"]
    for line in lines:
        if line.startswith("m=") and inside:
            out += added
            inside = False
        out.append(line)
        if line == f"a=mid:{mid}":
            inside = True
    if inside:
        out += added
    return eol.join(out) + eol


def encoding_of(rid: str | None, repaired_rid: str | None) -> str | None:
    """Which encoding a packet belongs to (RTX by the stream it repairs); None when it
    names none of ours (not yet known: its SSRC is learnt from a later packet)."""
    name = rid if rid is not None else repaired_rid
    return name if name in RIDS else None


def choose_encoding(full: bool, low_live: bool) -> str:
    """The encoding a watching officer's video sink wants: ``f`` for the visit opened,
    ``q`` for a tile while the publisher sends it, else ``f`` (thinned by layers)."""
    return LOW if not full and low_live else FULL
