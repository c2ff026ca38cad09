"""Replay of a recording: each participant's final file, and the media tickets that open it.

A ``<video src>`` cannot send an ``Authorization`` header, and neither a bearer token nor
a ticket may appear in a URL: URLs end up in access logs (nginx's, a proxy's), error logs
and browser history. So the compliance API hands out a media ticket in a cookie: an
HMAC-SHA256, under a random secret that lives only in this process, over the visit and
an expiry (ten minutes ahead by default). The cookie is scoped to the visit's media
path, HttpOnly and SameSite=Strict: the browser sends it with the player's requests for
that visit's files and nothing else, and no script can read it. A ticket opens the
visit's final files until it expires, across all the range requests a player makes; a
restart voids every ticket.

Before a replay file is played or exported it is checked against the recording's seal
(``recorder.replay_files``): a file that is not the one sealed is refused.

An encrypted final file is decrypted on the fly, range by range (``plaintext_response``):
no decrypted copy is ever written to disk.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from aiohttp import web

from recorder.replay_files import file_problem, sealed_entries

TICKET_TTL_S = 600
TICKET_COOKIE = "visitbridge_media"
MEDIA_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska"}
READ_BYTES = 1 << 18
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte a ``Range`` header asks of ``size`` bytes: None for the
    whole file (no header, or one this server does not split, such as several ranges);
    ValueError if it cannot be satisfied."""
    match = _RANGE.fullmatch(header.strip().lower())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last) if last else size - 1)
    if start > end or start >= size:
        raise ValueError(f"range {header!r} not in {size} bytes")
    return start, end


async def plaintext_response(request: web.Request, open_plain: Callable[[], BinaryIO],
                             headers: dict[str, str]) -> web.StreamResponse:
    """Serve a file object (a decrypted recording) with byte ranges, as a player needs."""
    file = await asyncio.to_thread(open_plain)
    try:
        size = file.seek(0, io.SEEK_END)
        try:
            wanted = byte_range(request.headers.get("Range", ""), size)
        except ValueError:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        start, end = wanted or (0, size - 1)
        response = web.StreamResponse(status=206 if wanted else 200, headers={
            **headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)})
        if wanted:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        await response.prepare(request)
        file.seek(start)
        left = end - start + 1
        while left > 0:
            piece = await asyncio.to_thread(file.read, min(READ_BYTES, left))
            if not piece:
                break
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
        return response
    finally:
        file.close()


def final_refs(row: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Participant id -> (final file's path inside the visit folder, offset on the
    timeline), as the index row names them: a path, or ``{"path": ..., "offset_s": ...}``
    when the file does not start at the visit's time zero."""
    named = {}
    for participant, entry in (row.get("finals") or {}).items():
        if isinstance(entry, dict):
            rel, offset = str(entry.get("path", "")), float(entry.get("offset_s") or 0)
        else:
            rel, offset = str(entry), 0.0
        if rel:
            named[str(participant)] = (rel, offset)
    return named


def final_files(folder: Path, row: dict[str, Any]) -> dict[str, tuple[Path, float]]:
    """Participant id -> (final file inside the visit's folder, offset on the timeline).

    The files the index row names (``final_refs``); without an index entry,
    ``final/*.webm|mkv``. A path that leads out of the folder is never served, whatever
    the index says.
    """
    base = folder.resolve()
    named = {p: (folder / rel, offset) for p, (rel, offset) in final_refs(row).items()}
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


class ReplayChecks:
    """Checks replay files against the seal, hashing a file again only when it may have
    changed since its last good check: its inode, size, mtime or ctime differ (every
    write sets ctime, which no one can set back), so the many range requests of one play
    cost a ``stat`` each. Blocking: call from a thread."""

    def __init__(self) -> None:
        self._good: dict[Path, tuple[int, int, int, int]] = {}

    def problem(self, folder: Path, path: Path, public_pem: bytes,
                seal: str | None) -> str | None:
        """Why the file must not be played or exported, as a sentence; None if it is the
        file the seal covers."""
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if self._good.get(path) == stamp:
                return None
            entries = sealed_entries(folder, public_pem, seal)
        except OSError as exc:
            return f"{path.name} cannot be checked: {exc.strerror or exc}."
        except ValueError as exc:
            return f"{path.name} cannot be checked: {exc}."
        problem = file_problem(path, f"{path.parent.name}/{path.name}", entries.get(path.name))
        if problem is None:
            self._good[path] = stamp
        else:
            self._good.pop(path, None)
        return problem


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

    def ticket(self, visit: str, expires_at: int) -> str:
        message = json.dumps(["media", visit, expires_at])  # unambiguous
        mac = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return f"{expires_at}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def check(self, ticket: str, visit: str) -> str | None:
        """None if the ticket opens this visit's files now, else the refusal code."""
        expires_text, _, _ = ticket.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return "bad_ticket"
        expected = self.ticket(visit, int(expires_text))
        if not hmac.compare_digest(expected.encode(), ticket.encode()):
            return "bad_ticket"
        if int(expires_text) < self._clock():
            return "ticket_expired"
        return None


def media_path(visit: str, participant: str = "") -> str:
    """The URL path of a participant's final file (without one: the folder the ticket
    cookie is scoped to)."""
    return f"/api/recordings/{quote(visit, safe='')}/media/{quote(participant, safe='')}"


def set_ticket_cookie(request: web.Request, response: web.StreamResponse, visit: str,
                      ticket: str, ttl_s: float) -> None:
    """Hand the ticket to the browser for this visit's media only; ``Secure`` whenever
    the page came over https (directly, or through nginx's X-Forwarded-Proto)."""
    secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(TICKET_COOKIE, ticket, path=media_path(visit), max_age=int(ttl_s),
                        httponly=True, samesite="Strict", secure=secure)
