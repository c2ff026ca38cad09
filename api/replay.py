"""Replay of a recording: each participant's final file, and the media tickets that open it.

A ``<video src>`` cannot send an ``Authorization`` header, and a bearer token must never
appear in a URL (URLs end up in logs and browser history). So the compliance API hands
out one ticket per final file: an HMAC-SHA256, under a random secret that lives only in
this process, over visit, participant and an expiry (ten minutes ahead by default). A
ticket opens that one file until it expires, across all the range requests a player
makes; a restart voids every ticket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

TICKET_TTL_S = 600
MEDIA_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska"}


def final_files(folder: Path, row: dict[str, Any]) -> dict[str, tuple[Path, float]]:
    """Participant id -> (final file inside the visit's folder, offset on the timeline).

    The index row maps each participant to the file's path relative to the visit folder,
    or to ``{"path": ..., "offset_s": ...}`` when the file does not start at the visit's
    time zero. Without an index entry, ``final/*.webm|mkv`` is used. A path that leads
    out of the folder is never served, whatever the index says.
    """
    base = folder.resolve()
    named: dict[str, tuple[Path, float]] = {}
    for participant, entry in (row.get("finals") or {}).items():
        if isinstance(entry, dict):
            rel, offset = str(entry.get("path", "")), float(entry.get("offset_s") or 0)
        else:
            rel, offset = str(entry), 0.0
        if rel:
            named[str(participant)] = (folder / rel, offset)
    if not named and (folder / "final").is_dir():
        named = {p.stem: (p, 0.0) for p in sorted((folder / "final").iterdir())
                 if p.suffix in MEDIA_TYPES}
    found = {}
    for participant, (path, offset) in named.items():
        resolved = path.resolve()
        if resolved.is_relative_to(base) and resolved.is_file() \
                and resolved.suffix in MEDIA_TYPES:
            found[participant] = (resolved, offset)
    return found


def from_start(request: web.Request) -> bool:
    """True unless the request asks for a range that starts after byte 0 (a player
    plays from the start once, then asks for ranges)."""
    header = request.headers.get("Range", "").strip().lower()
    return not header or header.startswith("bytes=0-")


class MediaTickets:
    def __init__(self, *, clock: Callable[[], float] = time.time,
                 ttl_s: float = TICKET_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._secret = secrets.token_bytes(32)  # per process: a restart voids all tickets

    def expiry(self) -> int:
        """When a ticket issued now expires (unix seconds)."""
        return int(self._clock() + self.ttl_s)

    def ticket(self, visit: str, participant: str, expires_at: int) -> str:
        message = json.dumps(["media", visit, participant, expires_at])  # unambiguous
        mac = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return f"{expires_at}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def check(self, ticket: str, visit: str, participant: str) -> str | None:
        """None if the ticket opens this file now, else the refusal code."""
        expires_text, _, _ = ticket.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return "bad_ticket"
        expected = self.ticket(visit, participant, int(expires_text))
        if not hmac.compare_digest(expected.encode(), ticket.encode()):
            return "bad_ticket"
        if int(expires_text) < self._clock():
            return "ticket_expired"
        return None
