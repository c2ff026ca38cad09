"""An aiortc participant whose network goes silent (as a phone leaving Wi-Fi), and back."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.server import Participant


def go_silent(p: Participant) -> Callable[[], None]:
    """Nothing leaves the participant's ICE transport any more (no RTP, RTCP, STUN);
    returns what lets it send again, on the same connection."""
    assert p.pc is not None
    connection = p.pc.getTransceivers()[0].sender.transport.transport._connection
    transports = [protocol.transport for protocol in connection._protocols]
    for transport in transports:
        transport.sendto = lambda *args, **kwargs: None

    def restore() -> None:
        for transport in transports:
            del transport.sendto  # the class's own again
    return restore
