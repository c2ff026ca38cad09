"""One participant's aiortc peer connection, laid out in fixed slots.

The server always makes the offer, once, with every m-line the visit can need: one
receive-only audio and video pair for what the participant publishes (none for a silent
monitor), and one send-only audio and video pair per slot of the visit. Participant
number *i* of the visit is forwarded into slot *i* of every other connection. Joins,
leaves and rejoins then only attach and detach forwarders: no renegotiation, no SDP
churn while a family waits, and a rejoining participant lands in the same tile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from sfu.aiortc_glue import guard_receiver
from sfu.candidates import CandidateGate, CandidatePolicy
from sfu.congestion import TRANSPORT_CC_URI
from sfu.extensions import AUDIO_LEVEL_URI
from sfu.fastpath import FastTransport, extension_ids
from sfu.forwarder import TrackForwarder
from sfu.glue_rtp import negotiated_codecs, negotiated_header_extensions, set_stream_id
from sfu.limits import DEFAULT_LIMITS, MediaLimits
from sfu.simulcast import offer_simulcast
from sfu.sink import Sink
from sfu.thinning import DownlinkControl

log = logging.getLogger(__name__)

KINDS = ("audio", "video")


class ParkedTrack(MediaStreamTrack):
    """A source that never yields: keeps aiortc's sender loop parked (we send directly)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    async def recv(self) -> None:  # type: ignore[override]
        await self._never


@dataclass(frozen=True)
class PeerSettings:
    ice_servers: tuple[RTCIceServer, ...] = ()
    max_video_bitrate_bps: int = 800_000
    candidates: CandidatePolicy = CandidatePolicy()
    limits: MediaLimits = DEFAULT_LIMITS
    media_timeout_s: float = 5.0  # a connected peer silent this long has lost its media
    media_idle_s: float = 3.0  # a publisher sending no RTP this long stops counting time


class Peer:
    """A participant's connection: publish receivers and per-slot send sinks."""

    def __init__(self, settings: PeerSettings, slots: int, publish: bool) -> None:
        self._settings = settings
        self._candidates = CandidateGate(settings.candidates)
        # max-bundle: one transport for every m-line. With aiortc's default (balanced),
        # m-lines after the first of each kind keep a transport that never connects.
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=list(settings.ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.publish: dict[str, RTCRtpTransceiver] = {}
        if publish:
            for kind in KINDS:
                self.publish[kind] = self.pc.addTransceiver(kind, direction="recvonly")
        self._slot_transceivers: list[dict[str, RTCRtpTransceiver]] = []
        self.sinks: list[dict[str, Sink]] = []
        for i in range(slots):
            pair: dict[str, RTCRtpTransceiver] = {}
            sinks: dict[str, Sink] = {}
            for kind in KINDS:
                t = self.pc.addTransceiver(ParkedTrack(kind), direction="sendonly")
                set_stream_id(t.sender, f"slot{i}")  # audio and video of a slot: one stream
                pair[kind] = t
                sinks[kind] = Sink(t.sender, kind)
            self._slot_transceivers.append(pair)
            self.sinks.append(sinks)
        for t in self.pc.getTransceivers():
            if t.kind == "audio":
                opus = [c for c in RTCRtpReceiver.getCapabilities("audio").codecs
                        if c.mimeType.lower() == "audio/opus"]
                t.setCodecPreferences(opus)
        self.forwarders: dict[str, TrackForwarder] = {}  # per kind; video: the full encoding
        self._fast: FastTransport | None = None
        self._downlink: DownlinkControl | None = None

    @property
    def state(self) -> str:
        return self.pc.connectionState

    @property
    def datagrams_received(self) -> int:
        """RTP, RTCP and DTLS datagrams received since the answer (the media watchdog)."""
        return 0 if self._fast is None else self._fast.received

    @property
    def rtp_received(self) -> tuple[int, int]:
        """RTP packets (received, expected) from what this connection publishes."""
        counts = [f.received() for f in self.forwarders.values()]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    async def offer(self) -> dict[str, object]:
        """Create the one offer of this connection, with the MIDs the page needs."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        if "video" in self.publish:
            sdp = offer_simulcast(sdp, self.publish["video"].mid)
        return {
            "sdp": sdp,
            "ice_servers": [{"urls": s.urls, **({"username": s.username,
                                                  "credential": s.credential}
                                                 if s.username else {})}
                            for s in self._settings.ice_servers],
            "publish": {k: t.mid for k, t in self.publish.items()},
            "slots": [{k: t.mid for k, t in pair.items()} for pair in self._slot_transceivers],
        }

    async def accept_answer(self, sdp: str) -> None:
        sdp = self._candidates.filter_sdp(sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        # max-bundle: every m-line shares one transport and one header extension map,
        # configured from every transceiver's negotiated extensions (as aiortc does).
        ids = extension_ids([e for t in self.pc.getTransceivers()
                             for e in negotiated_header_extensions(t)])
        fast = self._fast = FastTransport.of(self.pc.getTransceivers()[0].sender.transport)
        fast.configure(self._settings.limits, ids.get(AUDIO_LEVEL_URI, 0),
                       ids.get(TRANSPORT_CC_URI, 0))
        for pair, sinks in zip(self._slot_transceivers, self.sinks, strict=True):
            for kind, t in pair.items():
                sinks[kind].configure(negotiated_codecs(t), t.mid, ids)
        if self._downlink is None:
            self._downlink = DownlinkControl([s for sinks in self.sinks for s in sinks.values()])
            fast.on_queue = self._downlink.queued
        for kind, t in self.publish.items():
            if t.currentDirection in ("recvonly", "sendrecv"):
                guard_receiver(t.receiver)
                forwarder = TrackForwarder(t.receiver, kind, self._settings.max_video_bitrate_bps)
                forwarder.bind(fast)
                self.forwarders[kind] = forwarder
                if kind == "video":  # the low encoding, if the publisher sends one
                    TrackForwarder(t.receiver, kind, self._settings.max_video_bitrate_bps,
                                   full=forwarder).bind(fast)

    async def add_candidate(self, candidate: dict[str, object]) -> None:
        """Add a trickled browser candidate ({candidate, sdpMid, sdpMLineIndex}).

        Only as many, and only at such addresses, as the candidate policy allows: a
        refusal is a ``RosterError`` the page is told once (see ``sfu.candidates``).
        """
        text = str(candidate.get("candidate") or "")
        if not text:
            return  # end-of-candidates
        if text.startswith("candidate:"):
            text = text[len("candidate:"):]
        parsed: RTCIceCandidate = candidate_from_sdp(text)
        if not self._candidates.admit(parsed.ip):
            return
        parsed.sdpMid = candidate.get("sdpMid")  # type: ignore[assignment]
        index = candidate.get("sdpMLineIndex")
        parsed.sdpMLineIndex = index if isinstance(index, int) else None
        await self.pc.addIceCandidate(parsed)

    def slot_sinks(self, slot: int) -> dict[str, Sink]:
        return self.sinks[slot]

    def view(self, listen: bool, full: bool) -> None:
        """A watching officer's view: hear the visit or not; the full encoding at every
        temporal layer (the visit opened), or a tile: the low encoding when the publisher
        sends one, at temporal layer 0 (a quarter of the frame rate) either way."""
        for sinks in self.sinks:
            sinks["audio"].paused = not listen
            video = sinks["video"]
            video.wants_full = full
            video.reconsider()

    async def close(self) -> None:
        for forwarder in self.forwarders.values():
            if forwarder.low is not None:
                forwarder.low.close()
            forwarder.close()
        for sinks in self.sinks:
            for sink in sinks.values():
                if sink.source is not None:
                    sink.source.detach(sink)
        if self._fast is not None:
            self._fast.close()
        if self._downlink is not None:
            self._downlink.close()
        await self.pc.close()
