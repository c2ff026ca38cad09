"""The tap: how a recorder sees every packet of a published track.

The SFU calls it and the recorder implements it; neither imports the other, both import
this contract, and the application hands the SFU a ``TapFactory``. Recording fails
closed: a tapped track is forwarded only while its tap is ``ready`` (its first keyframe
is in the file, and no write has failed: a failing tap turns not ready at once, before
the visit ends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from visit.value import value


class TappedPacket(Protocol):
    """What a recorder reads of one received RTP packet: enough to reassemble frames."""

    marker: int
    sequence_number: int
    timestamp: int
    payload: bytes


class Tap(Protocol):
    @property
    def ready(self) -> bool: ...

    def packet(self, packet: TappedPacket, now: float) -> None:
        """Every RTP packet of the track, before it is forwarded; never raises."""

    def close(self) -> None: ...


@value
class TapRequest:
    visit_id: str
    participant: str
    kind: str
    mime: str
    clock_rate: int
    request_keyframe: Callable[[], None]
    on_ready: Callable[[], None]
    on_failure: Callable[[str], None]


TapFactory = Callable[[TapRequest], Tap]
