"""The wire vocabulary of a visit: every refusal and end code, and its WebSocket close code.

Pages decide what to show, and whether to reconnect, from these; docs/protocol.md lists
them and they do not change meaning between releases.
"""

from __future__ import annotations

# WebSocket close codes (4000-4999 are the application's).
CLOSE_CODES = {
    "left": 4000,
    "token": 4001,  # every token refusal code
    "visit_full": 4003,
    "visit_mismatch": 4003,
    "wrong_role": 4003,
    "revoked": 4004,
    "visit_ended": 4005,
    "too_early": 4006,
    "cancelled": 4007,
    "privileged_visit": 4008,
    "visit_not_live": 4008,
    "bad_message": 4400,
    "connected_elsewhere": 4009,
    "ended": 4010,
    "server_shutdown": 4011,
    "recording_unavailable": 4012,
    "recording_failed": 4013,
    "server_full": 4014,  # no node (or worker) under its admission threshold
    "media_lost": 4015,
}


class Refusal(Exception):
    """Something a page asked for and may not have: ``code`` is a stable code of this
    vocabulary (what the page acts on), ``message`` the words shown to people,
    ``details`` what else a page needs to act on it (for ``too_early``, when to come back)."""

    def __init__(self, code: str, message: str,
                 details: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}  # extra fields of the error message, for the page


def close_code(code: str) -> int:
    """The close code for a refusal or end code; token refusals share one."""
    return CLOSE_CODES.get(code, CLOSE_CODES["token"])
