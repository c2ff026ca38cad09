"""Which members' media stopped arriving (no I/O, clock passed in).

A phone that leaves Wi-Fi, or a browser that crashes, goes silent without closing its
WebSocket; ICE consent would notice after about 30 s. A connected browser sends RTCP at
least every few seconds even with its camera and microphone off, so a connection from
which no datagram (RTP, RTCP or DTLS) arrives for ``timeout_s`` has lost its media: the
room keeps the seat and the page is asked to reconnect.
"""

from __future__ import annotations

from collections.abc import Hashable


class MediaWatch:
    """Datagram counts per connection, and since when each has not moved."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._seen: dict[Hashable, tuple[int, float]] = {}

    def silent(self, conn: Hashable, received: int, connected: bool, now: float) -> bool:
        """True (once) when ``conn`` has been connected yet received nothing for
        ``timeout_s``; only a connected peer is watched, so ICE set-up is never "silent"."""
        if not connected or self.timeout_s <= 0:
            self._seen.pop(conn, None)
            return False
        last = self._seen.get(conn)
        if last is None or last[0] != received:
            self._seen[conn] = (received, now)
            return False
        if now - last[1] < self.timeout_s:
            return False
        del self._seen[conn]
        return True

    def forget(self, conn: Hashable) -> None:
        self._seen.pop(conn, None)


class RtpIdle:
    """Which publishing connections stopped sending RTP while their peer stays up.

    A page whose camera and microphone stop (a crashed capture, a browser that froze
    its encoder) keeps its peer alive with RTCP, so ``MediaWatch`` never fires; its
    member is connected yet nobody sees or hears them, and the ledger must not count
    that time. Reports are backdated to the last packet seen, so ``idle_s`` only delays
    the report, never the pause.
    """

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._seen: dict[Hashable, tuple[int, float, bool]] = {}  # count, since, stopped

    def update(self, conn: Hashable, received: int, now: float) -> tuple[str, float] | None:
        """``("stopped", since)`` once RTP has not moved for ``idle_s``, then
        ``("resumed", now)`` at the first packet after it; None otherwise."""
        if self.idle_s <= 0:
            return None
        last = self._seen.get(conn)
        if last is None or last[0] != received:
            self._seen[conn] = (received, now, False)
            return ("resumed", now) if last is not None and last[2] else None
        if not last[2] and now - last[1] >= self.idle_s:
            self._seen[conn] = (received, last[1], True)
            return ("stopped", last[1])
        return None

    def forget(self, conn: Hashable) -> None:
        self._seen.pop(conn, None)
