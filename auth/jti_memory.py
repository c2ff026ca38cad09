"""The jti of every token used, remembered until it expires, with the seat it was used for.

A join token is bound to one seat (one ``sub`` in one visit). The same seat presenting the
same token again is a reconnect or a second device and is welcome; the same ``jti`` on a
token for another seat means the issuer handed one token id to two tokens, which makes
the audit trail and any per-token revocation ambiguous, so the later one is refused.
The memory is this process's: with several workers each remembers its own joins.
"""

from __future__ import annotations

import hashlib
import heapq

Seat = tuple[str, str | None]  # (sub, visit id or None for staff tokens)


class JtiMemory:
    """Seats by jti, pruned once their token has expired, never more than ``max_entries``."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._seats: dict[bytes, Seat] = {}
        self._expiry: list[tuple[float, bytes]] = []  # heap: forget after this time

    def __len__(self) -> int:
        return len(self._seats)

    def claim(self, jti: str, seat: Seat, forget_at: float, now: float) -> bool:
        """Remember ``jti`` for ``seat``; False if it was already used for another seat."""
        self._prune(now)
        # A digest keeps every entry small whatever length of jti the issuer chose.
        key = hashlib.sha256(jti.encode()).digest()
        held = self._seats.get(key)
        if held is not None:
            return held == seat
        if len(self._seats) >= self._max:
            # Full: forget the token closest to expiry rather than refuse a new one.
            _, oldest = heapq.heappop(self._expiry)
            del self._seats[oldest]
        self._seats[key] = seat
        heapq.heappush(self._expiry, (forget_at, key))
        return True

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            del self._seats[key]
