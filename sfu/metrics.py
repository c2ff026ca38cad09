"""Prometheus metrics of the media plane (prefix ``visitbridge_``)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .aiortc_glue import guard

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
RETRANSMISSIONS = Counter(
    "visitbridge_retransmissions", "Packets resent to subscribers from the history"
)
PARTICIPANTS = Gauge("visitbridge_participants", "Participants connected", ["role"])
VISITS = Gauge("visitbridge_visits", "Visits with at least one participant connected")


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
