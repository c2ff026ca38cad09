"""How a room opens a recorded track's tap at its first live packet (``visit.tap``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCRtpCodecParameters

from sfu.forwarder import TrackForwarder
from visit.tap import Tap, TapFactory, TappedPacket, TapRequest

log = logging.getLogger(__name__)


def tap_opener(factory: TapFactory, visit_id: str, participant: str, kind: str,
               forwarder: TrackForwarder, on_ready: Callable[[], None],
               failed: Callable[[str], None]
               ) -> Callable[[TappedPacket, RTCRtpCodecParameters], Tap]:
    """What the forwarder calls for its tap; a recorder that cannot start fails closed
    (``failed``, and a tap that is never ready)."""

    def open_tap(packet: TappedPacket, codec: RTCRtpCodecParameters) -> Tap:
        try:
            return factory(TapRequest(
                visit_id=visit_id, participant=participant, kind=kind,
                mime=codec.mimeType.lower(), clock_rate=codec.clockRate,
                request_keyframe=lambda: asyncio.ensure_future(forwarder.request_keyframe()),
                on_ready=on_ready, on_failure=failed,
            ))
        except Exception as exc:  # noqa: BLE001 - no recorder: fail closed, end the visit
            log.exception("cannot start recording", extra={"visit": visit_id})
            failed(type(exc).__name__)
            return _NO_TAP

    return open_tap


class _NoTap:
    """Stands in for a recorder that could not start: never ready, so nothing flows."""

    ready = False

    def packet(self, packet: TappedPacket, now: float) -> None:
        pass

    def close(self) -> None:
        pass


_NO_TAP = _NoTap()
