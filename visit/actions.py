"""What a visit's room core asks its caller to do: the actions ``visit.room`` returns.

Each is a plain value, so a test reads them as it would read what a page was sent;
``sfu.room`` carries them out with real peers and connections.
"""

from __future__ import annotations

from visit.lifecycle import Ending, MediaHeld, Started
from visit.members import Conn, Member, Message
from visit.quality import Impairment
from visit.value import value


@value
class Send:
    """Queue a message to a connection (a page or a monitor)."""

    conn: Conn
    message: Message


@value
class Close:
    """Close a connection with a refusal or end code (after what was sent before it)."""

    conn: Conn
    code: str
    message: str


@value
class OpenPeer:
    """Create the connection's peer: publishing for a member, receive-only for a monitor."""

    conn: Conn
    publish: bool


@value
class ClosePeer:
    """Close the connection's peer: its forwarders stop and its slots detach."""

    conn: Conn


@value
class Feed:
    """Forward ``publisher``'s tracks into slot ``slot`` of ``subscriber``'s peer."""

    publisher: Conn
    subscriber: Conn
    slot: int
    enabled: bool


@value
class Mute:
    """An officer's mute: the server stops forwarding (and recording) the member's audio."""

    conn: Conn
    muted: bool


@value
class Record:
    """Start the member's recorder taps (the answer arrived in a recorded visit)."""

    conn: Conn
    live: bool


@value
class RequestKeyframe:
    """Ask the publisher for a keyframe (``kind`` None: every video it publishes)."""

    publisher: Conn
    kind: str | None = None


@value
class RefreshPictures:
    """A subscriber's media just connected: its publishers send it a keyframe."""

    subscriber: Conn


# What the records side must hear: the lifecycle's ``Started`` and ``Ending`` (the
# latter once every connection of the visit is closed), and these.


@value
class ParticipantJoined:
    """A member was welcomed into the visit."""

    member: Member
    at: float


@value
class ParticipantLeft:
    """A member left, was removed or was closed when the visit ended."""

    member: Member
    cause: str
    at: float


@value
class ParticipantLost:
    """A member's connection dropped without a leave: its seat waits for a rejoin."""

    member: Member
    cause: str
    at: float


@value
class ParticipantBack:
    """A member whose connection dropped joined again; ``gap_s`` without media."""

    member: Member
    gap_s: float
    at: float


@value
class MediaGap:
    """A member's media stopped at ``start`` and flowed again at ``end`` (on the same
    connection or after a rejoin): one row in the audit log per outage."""

    member: Member
    start: float
    end: float


Action = (Send | Close | OpenPeer | ClosePeer | Feed | MediaHeld | Mute | Record
          | RequestKeyframe | RefreshPictures | Started | ParticipantJoined | ParticipantLeft
          | ParticipantLost | ParticipantBack | MediaGap | Ending | Impairment)
