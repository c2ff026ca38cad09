"""The header extensions a sink writes, read back by aiortc's own parser."""

from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from sfu.congestion import TRANSPORT_CC_URI
from sfu.extensions import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, ExtensionWriter


def read_back(ids: dict[str, int], mid: str, transport_seq: int | None) -> RtpPacket:
    block = ExtensionWriter(ids, mid).block(0x123456, 0x85, transport_seq)
    header = struct.pack("!BBHII", 0x90, 96, 1, 2, 3)
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in ids.items()]))
    return RtpPacket.parse(header + block + b"payload", extensions)


def test_every_extension_reads_back_in_one_byte_and_two_byte_form() -> None:
    for ids, mid in (({MID_URI: 1, ABS_SEND_TIME_URI: 2, AUDIO_LEVEL_URI: 3,
                       TRANSPORT_CC_URI: 5}, "1"),
                     ({MID_URI: 1, ABS_SEND_TIME_URI: 2, AUDIO_LEVEL_URI: 3,
                       TRANSPORT_CC_URI: 15}, "1")):  # id 15: two-byte elements
        packet = read_back(ids, mid, 0xBEEF)
        ext = packet.extensions
        assert (ext.mid, ext.abs_send_time, ext.transport_sequence_number) == (
            "1", 0x123456, 0xBEEF)
        assert ext.audio_level == (True, 5) and packet.payload == b"payload"


def test_no_transport_sequence_number_unless_negotiated_and_given() -> None:
    assert read_back({MID_URI: 1}, "1", 7).extensions.transport_sequence_number is None
    packet = read_back({MID_URI: 1, TRANSPORT_CC_URI: 5}, "1", None)
    assert packet.extensions.transport_sequence_number is None
