"""Who holds a seat in a visit's room, and who watches it."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from visit.quality import QualityMeter, QualityPolicy
from visit.roster import Identity

Message = dict[str, Any]
Conn = Hashable  # one connection (WebSocket) of a member or monitor, chosen by the caller


@dataclass
class Member:
    """A participant holding a seat (slot) through one connection."""

    who: Identity
    slot: int
    conn: Conn
    audio: bool = True
    video: bool = True
    muted_by_officer: bool = False
    answered: bool = False
    welcomed: bool = False  # events go out only after its joined and offer messages
    # Its connection dropped (when, and why): the seat waits for it to come back.
    lost_at: float | None = None
    lost_cause: str = ""
    quality: QualityMeter = field(default_factory=lambda: QualityMeter(QualityPolicy(), 1))

    def describe(self) -> Message:
        return {"id": self.who.sub, "name": self.who.name, "role": self.who.role,
                "slot": self.slot, "audio": self.audio and not self.muted_by_officer,
                "video": self.video, "muted_by_officer": self.muted_by_officer,
                "reconnecting": self.lost_at is not None, "quality": self.quality.level}


@dataclass
class Monitor:
    """A silent viewer (officer): receives every slot, publishes nothing, never announced."""

    who: Identity
    conn: Conn
    answered: bool = False
    welcomed: bool = False
