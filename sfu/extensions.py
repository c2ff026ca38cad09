"""The RTP header extensions a sink writes on what it sends (pure: bytes out).

MID, abs-send-time, audio level and the transport-wide sequence number: the last
numbers every packet a subscriber's connection is sent, so that its browser reports
when each arrived (transport feedback) and the server sees its link's queue grow
(``sfu.queueing``).
"""

from __future__ import annotations

from sfu.congestion import TRANSPORT_CC_URI

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


class ExtensionWriter:
    """Serializes the header extensions one sink sends: MID, abs-send-time, audio level,
    transport-wide sequence number.

    The same elements, in the same order and with the same one-/two-byte choice, as
    ``aiortc.rtp.HeaderExtensionsMap.set``; the MID element is serialized once.
    """

    def __init__(self, ids: dict[str, int], mid: str | None) -> None:
        mid_id = ids.get(MID_URI, 0)
        ast_id = ids.get(ABS_SEND_TIME_URI, 0)
        level_id = ids.get(AUDIO_LEVEL_URI, 0)
        seq_id = ids.get(TRANSPORT_CC_URI, 0)
        mid_value = mid.encode("utf8") if (mid is not None and mid_id) else None
        used = [i for i in (mid_id, ast_id, level_id, seq_id) if i]
        self.one_byte = (all(i <= 14 for i in used)
                         and (mid_value is None or 1 <= len(mid_value) <= 16))
        if self.one_byte:
            self.profile = b"\xbe\xde"
            self.mid = b"" if mid_value is None else bytes(
                ((mid_id << 4) | (len(mid_value) - 1),)) + mid_value
            self.ast = bytes(((ast_id << 4) | 2,)) if ast_id else None
            self.level = bytes((level_id << 4,)) if level_id else None
            self.seq = bytes(((seq_id << 4) | 1,)) if seq_id else None
        else:
            self.profile = b"\x10\x00"
            self.mid = b"" if mid_value is None else bytes((mid_id, len(mid_value))) + mid_value
            self.ast = bytes((ast_id, 3)) if ast_id else None
            self.level = bytes((level_id, 1)) if level_id else None
            self.seq = bytes((seq_id, 2)) if seq_id else None

    def block(self, abs_send_time: int | None, audio_level: int | None,
              transport_seq: int | None = None) -> bytes:
        """The extension block (profile, length, elements, padding); b"" for none."""
        body = self.mid
        if abs_send_time is not None and self.ast is not None:
            body += self.ast + abs_send_time.to_bytes(3, "big")
        if audio_level is not None and self.level is not None:
            body += self.level + bytes((audio_level,))
        if transport_seq is not None and self.seq is not None:
            body += self.seq + transport_seq.to_bytes(2, "big")
        if not body:
            return b""
        pad = -len(body) % 4
        return self.profile + ((len(body) + pad) >> 2).to_bytes(2, "big") + body + bytes(pad)
