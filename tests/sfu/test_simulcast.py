"""Simulcast's pure parts (the offer's lines, which encoding a packet carries, which
encoding a watching officer's sink wants, where a switch may happen), aiortc taking a
simulcast answer, and a tile following the low copy as the publisher turns it on and
off."""

from __future__ import annotations

import asyncio

import aiortc.codecs
import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)

from sfu import aiortc_glue
from sfu.fastpath import InPacket
from sfu.forwarder import TrackForwarder
from sfu.glue_rtp import negotiated_header_extensions, receiver_codecs
from sfu.layers import ALL_LAYERS, PAUSED, TemporalFilter, keyframe_start, parse
from sfu.simulcast import (
    REPAIRED_RTP_STREAM_ID_URI,
    RTP_STREAM_ID_URI,
    choose_encoding,
    encoding_of,
    offer_simulcast,
)
from sfu.sink import Sink
from tests.support.vp8_layers import PATTERN, packetize

OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0", "a=recvonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 97", "a=mid:1", "a=recvonly", "a=rtpmap:97 VP8/90000",
    "m=video 9 UDP/TLS/RTP/SAVPF 97", "a=mid:2", "a=sendonly", "a=ssrc:1 cname:x",
]) + "\r\n"


def test_the_offer_asks_the_publish_video_line_for_two_encodings() -> None:
    sdp = offer_simulcast(OFFER, "1")
    sections = sdp.split("m=")
    assert sections[2].endswith("a=rtpmap:97 VP8/90000\r\na=rid:f recv\r\na=rid:q recv\r\n"
                                "a=simulcast:recv f;q\r\n")
    # Nothing else changes: the audio line, the slots' lines, the line endings.
    assert sdp.replace("a=rid:f recv\r\na=rid:q recv\r\na=simulcast:recv f;q\r\n", "") == OFFER
    assert offer_simulcast(OFFER, "2").endswith("a=ssrc:1 cname:x\r\na=rid:f recv\r\n"
                                                "a=rid:q recv\r\na=simulcast:recv f;q\r\n")


def test_a_packet_belongs_to_the_encoding_it_or_the_one_it_repairs_names() -> None:
    assert encoding_of("q", None) == "q"
    assert encoding_of("f", None) == "f"
    assert encoding_of(None, "q") == "q"  # RTX of the low encoding
    assert encoding_of(None, None) is None  # not simulcast, or a later packet
    assert encoding_of("h", None) is None  # a stream we never asked for


def test_tiles_take_the_low_encoding_only_while_it_comes() -> None:
    assert choose_encoding(full=False, low_live=True) == "q"
    assert choose_encoding(full=False, low_live=False) == "f"  # fallback: layer 0 of f
    assert choose_encoding(full=True, low_live=True) == "f"


def test_a_switch_waits_for_the_first_packet_of_a_keyframe() -> None:
    key = b"\x10\x00\x00\x9d\x01\x2a"  # P bit 0: a keyframe
    delta = b"\x11\x00\x00"
    assert keyframe_start(packetize(key, 1, 0, 0, sync=True)[0])
    assert not keyframe_start(packetize(delta, 2, 0, 0)[0])
    assert not keyframe_start(packetize(key * 400, 3, 0, 0, sync=True)[1])  # a later packet
    assert not keyframe_start(b"")


def test_aiortc_offers_the_stream_ids_and_takes_a_simulcast_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(aiortc.codecs.HEADER_EXTENSIONS, "video",
                        list(aiortc.codecs.HEADER_EXTENSIONS["video"]))  # restored after
    aiortc_glue.offer_stream_ids()
    aiortc_glue.offer_stream_ids()  # once only

    async def negotiate() -> tuple[str, list[str]]:
        server, browser = RTCPeerConnection(), RTCPeerConnection()
        publish = server.addTransceiver("video", direction="recvonly")
        await server.setLocalDescription(await server.createOffer())
        offer = offer_simulcast(server.localDescription.sdp, publish.mid)
        await browser.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await browser.setLocalDescription(await browser.createAnswer())
        # What a simulcast browser answers: the encodings by rid, no a=ssrc lines.
        lines = [line for line in browser.localDescription.sdp.splitlines()
                 if not line.startswith(("a=ssrc", "a=msid"))]
        answer = "\r\n".join([*lines, "a=rid:f send", "a=rid:q send",
                              "a=simulcast:send f;q"]) + "\r\n"
        await server.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        uris = [e.uri for e in negotiated_header_extensions(publish)]
        await server.close()
        await browser.close()
        return offer, uris

    offer, uris = asyncio.run(negotiate())
    assert offer.count(f"a=extmap:10 {RTP_STREAM_ID_URI}") == 1
    assert offer.count(f"a=extmap:11 {REPAIRED_RTP_STREAM_ID_URI}") == 1
    assert RTP_STREAM_ID_URI in uris and REPAIRED_RTP_STREAM_ID_URI in uris


def test_after_a_switch_picture_ids_and_tl0picidx_follow_the_last_ones_sent() -> None:
    key, delta = b"\x10\x00\x00\x9d\x01\x2a", b"\x11\x00\x00"
    before = TemporalFilter(0)
    for n in range(8):  # picture IDs 500-507, layer 0 every fourth: TL0PICIDX 40, 41
        frame = key if n == 0 else delta
        before.admit(n, packetize(frame, 500 + n, 40 + n // 4, PATTERN[n % 4])[0])
    after = TemporalFilter(0, after=before)
    out = [after.admit(100 + n, packetize(key if n == 0 else delta, 9000 + n, 7 + n // 4,
                                          PATTERN[n % 4])[0]) for n in range(5)]
    kept = [(p[1], parse(p[1])) for p in out if p is not None]
    ids = [d.picture_id for _, d in kept if d is not None]
    tl0 = [payload[d.tl0picidx_at] for payload, d in kept if d is not None]
    # 500 and 504 went out as 500 and 501 (layer 0 only), with TL0PICIDX 40 and 41.
    assert ids == [502, 503] and tl0 == [42, 43]


class TileSink:
    """What the forwarder reads of an officer's tile: where it is fed from and its layers
    (disabled, so nothing is sent)."""

    def __init__(self) -> None:
        self.source: TrackForwarder | None = None
        self.layers: TemporalFilter | None = TemporalFilter(0)
        self.enabled = False
        self.paused = False

    def wants_low(self) -> bool:
        return True

    def layer_target(self, low: bool) -> int:
        return 0


async def test_a_tile_follows_the_low_copy_while_the_publisher_sends_it() -> None:
    certificate = RTCCertificate.generateCertificate()
    receiver = RTCRtpReceiver("video", RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                                        [certificate]))
    receiver_codecs(receiver)[96] = RTCRtpCodecParameters(mimeType="video/VP8",
                                                          clockRate=90000, payloadType=96)
    full = TrackForwarder(receiver, "video", 800_000)
    low = TrackForwarder(receiver, "video", 800_000, full=full)
    key = b"\x10\x00\x00\x9d\x01\x2a"

    def keyframe(forwarder: TrackForwarder, ssrc: int, seq: int) -> None:
        payload = packetize(key, seq, seq, 0, sync=True)[0]
        forwarder.handle(InPacket(96, 1, seq, seq * 3000, ssrc, payload))

    try:
        tile = TileSink()
        keyframe(full, 1111, 1)
        full.take_at_keyframe(tile)  # type: ignore[arg-type]
        assert full.encoding_for(tile) is full  # no low copy yet: layer 0 of f
        keyframe(low, 2222, 1)  # the publisher turns the low copy on
        assert tile.source is low and full.encoding_for(tile) is low
        assert full.keyframes is low.keyframes  # one limit for both encodings' requests
        await asyncio.sleep((TrackForwarder.LOW_IDLE_TICKS + 1.5)
                            * TrackForwarder.FLUSH_INTERVAL_S)
        # Off again (a slow uplink): the tile goes back to f at its next keyframe.
        assert not low.live and tile.source is low and tile in full.waiting
        keyframe(full, 1111, 2)
        assert tile.source is full and full.encoding_for(tile) is full
    finally:
        low.close()
        full.close()


async def test_a_thinned_subscriber_gets_no_video_until_the_low_copy_keyframe() -> None:
    """Even layer 0 of the full encoding may be more than a thin link carries: nothing
    of it goes out while the low copy's keyframe is awaited."""
    certificate = RTCCertificate.generateCertificate()
    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])
    receiver = RTCRtpReceiver("video", dtls)
    receiver_codecs(receiver)[96] = RTCRtpCodecParameters(mimeType="video/VP8",
                                                          clockRate=90000, payloadType=96)
    full = TrackForwarder(receiver, "video", 800_000)
    low = TrackForwarder(receiver, "video", 800_000, full=full)
    sink = Sink(RTCRtpSender("video", dtls), "video")
    sink.enabled = False  # nothing is sent: where it is fed from is what counts
    key = b"\x10\x00\x00\x9d\x01\x2a"

    def keyframe(forwarder: TrackForwarder, ssrc: int, seq: int) -> None:
        payload = packetize(key, seq, seq, 0, sync=True)[0]
        forwarder.handle(InPacket(96, 1, seq, seq * 3000, ssrc, payload))

    try:
        keyframe(low, 2222, 1)
        full.take_at_keyframe(sink)
        assert sink.source is full and sink.layers is None  # the whole full encoding
        assert sink.downlink.queue(100.0, full.now())  # its link fills: thinned
        sink.reconsider()
        assert sink.source is full and sink in low.waiting
        assert sink.layers is not None and sink.layers.target == PAUSED
        keyframe(low, 2222, 2)
        assert sink.source is low and sink.layers.target == ALL_LAYERS
        # Thinned for loss alone (perhaps the publisher's): layer 0 of f meanwhile.
        other = Sink(RTCRtpSender("video", dtls), "video")
        other.enabled = False
        full.take_at_keyframe(other)
        now = full.now()
        other.downlink.loss(0, 1000, now)
        assert other.downlink.loss(50, 1100, now + 1.1)
        other.reconsider()
        assert other.source is full and other in low.waiting
        assert other.layers is not None and other.layers.target == 0
    finally:
        low.close()
        full.close()
