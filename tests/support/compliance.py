"""A fabricated finished recording and how a compliance officer calls the server about it."""

from __future__ import annotations

import fractions
import json
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

from api.replay import TICKET_COOKIE
from recorder.manifest import Manifest
from recorder.replay_files import FINALS_KEY, seal_entries
from recorder.signing import load_or_create
from records import store as sqlite_store
from records.archive import Archive
from tests.support.archive import DAY, T0
from tests.support.postgres import server_database
from tests.support.server import Server
from tests.support.server_records import server_rows

VISIT = "rec-api-1"
PARTIES = {"inmate-41": ("Jordan Reyes", (200, 40, 40)),
           "family-9": ("Casey Reyes", (40, 40, 200))}
SECONDS = 4


def write_webm(path: Path, seconds: float, rgb: tuple[int, int, int], audio: bool) -> None:
    """A small real WebM: VP8 320x240 at 30 fps (and Opus mono when ``audio``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=30)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.bit_rate = 300_000
        sound = out.add_stream("libopus", rate=48000, layout="mono") if audio else None
        picture = np.full((240, 320, 3), rgb, dtype=np.uint8)
        for i in range(int(seconds * 30)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(960) / 48000
            tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
            for i in range(int(seconds * 50)):
                frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
                frame.sample_rate, frame.pts = 48000, i * 960
                frame.time_base = fractions.Fraction(1, 48000)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))


@dataclass
class Recording:
    data_dir: Path
    visit_dir: Path
    seal: str
    finals: dict[str, Path] = field(default_factory=dict)


def fabricate(data_dir: Path) -> Recording:
    """The folder layout, key, manifest and index row of a finished recording, written
    before the server starts."""
    key = load_or_create(data_dir / "keys" / "recording.private.pem",
                         data_dir / "keys" / "recording.public.pem")
    visit_dir = data_dir / "recordings" / VISIT
    segments = []
    finals = {}
    for participant, (_, rgb) in PARTIES.items():
        segment = visit_dir / f"{participant}-video" / "segment-00001.webm"
        write_webm(segment, SECONDS, rgb, audio=False)
        segments.append((f"{participant}-video", segment))
        finals[participant] = visit_dir / "final" / f"{participant}.webm"
        write_webm(finals[participant], SECONDS, rgb, audio=True)
    manifest = Manifest.open(visit_dir, key, time.time)
    for track, path in segments:
        manifest.append_segment({"track": track, "path": path, "first_pts": 0,
                                 "last_pts": (SECONDS * 30 - 1) * 3000,
                                 "time_base": "1/90000"})
    seal = manifest.seal({FINALS_KEY: seal_entries(finals.values())})
    db = sqlite_store.connect(server_database(data_dir))
    archive = Archive(db)
    archive.started(VISIT, "inmate-41", "Jordan Reyes", T0, T0 + 1800, now=T0)
    archive.add_visitor(VISIT, "family-9", "Casey Reyes")
    # The visitor's file starts half a second into the visit (joined later).
    archive.sealed(VISIT, seal, sum(p.stat().st_size for _, p in segments), SECONDS + 0.5,
                   {"inmate-41": "final/inmate-41.webm",
                    "family-9": {"path": "final/family-9.webm", "offset_s": 0.5}},
                   now=T0 + 1805)
    archive.started("rec-api-2", "inmate-77", "Sam Lee", T0 + 5 * DAY, T0 + 5 * DAY + 1800,
                    now=T0 + 5 * DAY)
    archive.sealed("rec-api-2", "1" * 64, 0, 0.0, {}, now=T0 + 5 * DAY + 1805)
    db.close()
    return Recording(data_dir, visit_dir, seal, finals)


def flip_byte(path: Path, at: int = 100) -> None:
    """Change one bit of one byte of a file in place, as silent tampering would."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def compliance_token(server: Server, sub: str = "compliance-1") -> str:
    return server.token(sub, "compliance", None, name="Chris Auditor")


async def call(server: Server, method: str, path: str, token: str | None = None,
               body: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.request(
            method, server.url + path, headers=sent, json=body) as resp:
        raw = await resp.read()
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw
        return resp.status, data, dict(resp.headers)


def media_cookie(headers: dict[str, str], visit: str) -> str:
    """The media ticket a details or tickets answer set, after checking that the cookie
    is for the visit's media only, out of scripts' reach and cross-site requests."""
    cookie = SimpleCookie(headers["Set-Cookie"])[TICKET_COOKIE]
    assert cookie["path"] == f"/api/recordings/{visit}/media/"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["max-age"] == "600"
    return cookie.value


def audit_rows(recording: Recording, since: int = 0) -> list[dict[str, Any]]:
    rows = server_rows(recording.data_dir, "SELECT * FROM audit WHERE seq > ? ORDER BY seq",
                       (since,))
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def last_seq(recording: Recording) -> int:
    rows = audit_rows(recording)
    return rows[-1]["seq"] if rows else 0
