"""Prometheus metrics of the media plane (prefix ``visitbridge_``)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sfu.aiortc_glue import guard
from visit.quality import LEVELS

FORWARDED_PACKETS = Counter(
    "visitbridge_forwarded_packets", "RTP packets forwarded to subscribers", ["kind"]
)
FORWARDED_BYTES = Counter(
    "visitbridge_forwarded_bytes", "RTP payload bytes forwarded to subscribers", ["kind"]
)
DROPPED_PACKETS = Counter(
    "visitbridge_dropped_packets",
    "Packets not forwarded to a subscriber, by reason",
    ["reason"],
)
KEYFRAME_REQUESTS = Counter(
    "visitbridge_keyframe_requests",
    "Keyframe requests (PLI/FIR) from subscribers, relayed to the publisher or suppressed",
    ["result"],
)
NACKS = Counter("visitbridge_nacks", "NACKed packets, by direction", ["direction"])
for _direction in ("from_subscriber", "to_publisher"):
    NACKS.labels(_direction)  # a series from the start, so rate() panels show 0, not nothing
ICE_CANDIDATES_REFUSED = Counter(
    "visitbridge_ice_candidates_refused",
    "Remote ICE candidates not added, by reason (too_many, loopback, private, ...)",
    ["reason"],
)
RETRANSMISSIONS = Counter(
    "visitbridge_retransmissions", "Packets resent to subscribers from the history"
)
MEDIA_LIMITS = Counter(
    "visitbridge_media_limited",
    "Hostile or broken media held to a limit (sfu.limits), by limit", ["limit"])
for _limit in ("ssrcs", "seq_jump", "nack_truncated", "rtx_rate", "remb_floor"):
    MEDIA_LIMITS.labels(_limit)
PARTICIPANTS = Gauge("visitbridge_participants", "Participants connected", ["role"])
VISITS = Gauge("visitbridge_visits", "Visits open on this server (waiting or live)")
VISITS_ENDED = Counter(
    "visitbridge_visits_ended", "Visits ended, by cause and by who caused it", ["cause", "fault"])
DISCONNECTS = Counter(
    "visitbridge_participant_disconnects",
    "Participants leaving a visit, by cause and by who caused it", ["cause", "fault"])
DROPS = Counter(
    "visitbridge_connection_drops",
    "Participants whose connection dropped mid-visit (the seat waits for them), by cause",
    ["cause"])
RECONNECT_SECONDS = Histogram(
    "visitbridge_reconnect_seconds", "From a participant's dropped connection to its rejoin",
    buckets=(1, 2, 3, 5, 10, 20, 30, 60))
QUALITY = Gauge(
    "visitbridge_participant_quality",
    "Participants by connection quality (good, weak, lost), as their tiles show it",
    ["level"])
for _level in LEVELS:
    QUALITY.labels(_level)
FROZEN_SECONDS = Counter(
    "visitbridge_video_frozen_seconds",
    "Seconds of frozen remote video that pages reported (summed over their tiles)")
CONCEALED_SECONDS = Counter(
    "visitbridge_audio_concealed_seconds",
    "Seconds of remote audio that pages concealed (invented for lost packets)")
QUALITY_ALERT_RATIO = Gauge(
    "visitbridge_quality_alert_ratio",
    "Configured share of participants weak or lost above which the quality alert fires")
JOIN_SECONDS = Histogram(
    "visitbridge_join_seconds", "From the WebSocket join to the first media forwarded to them",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10))
PACKET_LOSS = Histogram(
    "visitbridge_packet_loss_ratio", "Fraction lost in subscribers' RTCP receiver reports",
    buckets=(0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1))
JITTER = Histogram(
    "visitbridge_jitter_seconds", "Interarrival jitter in subscribers' RTCP receiver reports",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5))
RTT = Histogram(
    "visitbridge_rtt_seconds", "Round-trip time to subscribers from RTCP reports",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6))

# Who caused an end or a disconnect: lets a panel tell server faults, network faults and
# participant or facility actions apart.
FAULTS = {
    "slot_ended": "none", "all_left": "participant", "left": "participant",
    "connected_elsewhere": "participant", "ended_by_officer": "facility",
    "cancelled": "facility", "revoked": "facility", "recording_failed": "server",
    "server_shutdown": "server", "disconnected": "network", "ice_failed": "network",
    "stopped_reading": "network", "media_lost": "network",
}


def fault_of(cause: str) -> str:
    return FAULTS.get(cause, "unknown")


class _CodecGuardCollector(Collector):
    """Exports the codec guard's counters: both must stay 0 on a forwarding SFU."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        yield CounterMetricFamily(
            "visitbridge_codec_instances",
            "Decoders or encoders the server tried to create (must be 0)",
            value=guard.codec_instances,
        )
        yield CounterMetricFamily(
            "visitbridge_decoder_feeds",
            "Encoded frames handed to a decoder (must be 0)",
            value=guard.decoder_feeds,
        )


REGISTRY.register(_CodecGuardCollector())
