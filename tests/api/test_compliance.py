"""Compliance side of the recorder: the recordings index, retention, the compliance API
(against a real server process with a fabricated finished recording) and the console."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import hashlib
import io
import json
import sqlite3
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from axe_playwright_python.async_playwright import Axe
from prometheus_client import REGISTRY

from api.compliance import Compliance, parse_when
from api.replay import MediaTickets
from auth.issuer import issue_token
from auth.keys import PemDirKeyStore, load_private_key, write_keypair
from auth.tokens import TokenVerifier, VisitClaim
from recorder.manifest import Manifest
from recorder.retention import TRASH, RetentionJob, run_retention
from recorder.signing import load_or_create
from records import store as sqlite_store
from records.archive import Archive, RecordingDeleted, UnknownRecording
from records.audit import AuditLog
from records.audit import verify as verify_audit
from tests.support.browser import chromium, open_page
from tests.support.server import AUDIENCE, ISSUER, Server, running_server

DAY = 86400.0
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC).timestamp()  # a Friday afternoon visit


# -- the recordings index ------------------------------------------------------------------

@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite_store.connect(tmp_path / "visitbridge.db")
    yield connection
    connection.close()


def add(archive: Archive, visit: str, inmate: str, inmate_name: str, starts_at: float,
        visitors: tuple[tuple[str, str], ...] = (), *, seal: bool = True,
        minutes: float = 30) -> None:
    ends_at = starts_at + minutes * 60
    archive.started(visit, inmate, inmate_name, starts_at, ends_at, now=starts_at)
    for sub, name in visitors:
        archive.add_visitor(visit, sub, name)
    if seal:
        archive.sealed(visit, "ab" * 32, 1000, minutes * 60,
                       {inmate: f"final/{inmate}.webm"}, now=ends_at + 5)


def visits(rows: list[dict[str, Any]]) -> list[str]:
    return [r["visit"] for r in rows]


def test_search_filters_by_visit_inmate_visitor_and_date(db: sqlite3.Connection) -> None:
    archive = Archive(db)
    add(archive, "v-1", "inmate-41", "Jordan Reyes", T0, (("family-9", "Casey Reyes"),))
    add(archive, "v-2", "inmate-41", "Jordan Reyes", T0 + DAY,
        (("attorney-3", "Pat O'Neil"), ("family-9", "Casey Reyes")))
    add(archive, "v-3", "inmate-77", "Sam 100% Lee", T0 + 3 * DAY, (("family_1", "Robin"),))

    assert visits(archive.search()) == ["v-3", "v-2", "v-1"]  # newest first
    assert visits(archive.search(visit="v-2")) == ["v-2"]
    assert visits(archive.search(visit="v")) == []  # the visit id is exact
    # Inmate: id or name, substring, any case.
    assert visits(archive.search(inmate="INMATE-4")) == ["v-2", "v-1"]
    assert visits(archive.search(inmate="reyes")) == ["v-2", "v-1"]
    assert visits(archive.search(inmate="jordan r")) == ["v-2", "v-1"]
    # Visitor: any visitor's id or name.
    assert visits(archive.search(visitor="casey")) == ["v-2", "v-1"]
    assert visits(archive.search(visitor="o'neil")) == ["v-2"]
    assert visits(archive.search(visitor="attorney-")) == ["v-2"]
    assert visits(archive.search(visitor="Reyes", inmate="inmate-77")) == []
    # LIKE wildcards in the query are literal.
    assert visits(archive.search(inmate="100%")) == ["v-3"]
    assert visits(archive.search(inmate="%")) == ["v-3"]
    assert visits(archive.search(visitor="family_")) == ["v-3"]
    assert visits(archive.search(visitor="_")) == ["v-3"]
    # Dates: from inclusive, to exclusive, on starts_at.
    assert visits(archive.search(date_from=T0 + DAY)) == ["v-3", "v-2"]
    assert visits(archive.search(date_to=T0 + DAY)) == ["v-1"]
    assert visits(archive.search(date_from=T0, date_to=T0 + 2 * DAY)) == ["v-2", "v-1"]
    assert visits(archive.search(limit=1)) == ["v-3"]

    row = archive.get("v-2")
    assert row is not None
    assert row["visitors"] == [{"sub": "attorney-3", "name": "Pat O'Neil"},
                               {"sub": "family-9", "name": "Casey Reyes"}]
    assert row["finals"] == {"inmate-41": "final/inmate-41.webm"}
    assert (row["state"], row["seal"], row["bytes"], row["on_hold"]) == (
        "sealed", "ab" * 32, 1000, False)
    assert archive.get("nope") is None


def test_visitors_are_indexed_once_and_a_restart_goes_back_to_recording(
        db: sqlite3.Connection) -> None:
    archive = Archive(db)
    archive.started("v-1", "inmate-1", "A", T0, T0 + 1800, now=T0)
    archive.add_visitor("v-1", "family-1", "Old Name")
    archive.add_visitor("v-1", "family-1", "New Name")
    archive.add_visitor("v-1", "family-2", "Other")
    assert archive.get("v-1")["visitors"] == [  # type: ignore[index]
        {"sub": "family-1", "name": "New Name"}, {"sub": "family-2", "name": "Other"}]
    with pytest.raises(UnknownRecording):
        archive.add_visitor("nope", "x", "y")
    with pytest.raises(UnknownRecording):
        archive.sealed("nope", "s", 1, 1.0, {}, now=T0)
    archive.sealed("v-1", "s1", 10, 5.0, {}, now=T0 + 1800, recovered=True)
    assert archive.get("v-1")["state"] == "recovered"  # type: ignore[index]
    # The recorder starts again for the same visit (server restart mid-visit).
    archive.started("v-1", None, None, None, None, now=T0 + 1900)
    row = archive.get("v-1")
    assert row is not None
    assert (row["state"], row["inmate"], row["inmate_name"], row["starts_at"]) == (
        "recording", "inmate-1", "A", T0)


def test_holds_are_placed_released_and_kept_as_history(db: sqlite3.Connection) -> None:
    archive = Archive(db)
    add(archive, "v-1", "inmate-1", "A", T0)
    assert not archive.on_hold("v-1")
    first = archive.hold("v-1", "compliance-1", "case 2026-114", now=T0 + 10)
    second = archive.hold("v-1", "compliance-2", "subpoena 88", now=T0 + 20)
    assert first != second
    assert archive.on_hold("v-1")
    assert archive.get("v-1")["on_hold"] is True  # type: ignore[index]
    assert archive.search(visit="v-1")[0]["on_hold"] is True
    assert archive.release("v-1", "compliance-3", now=T0 + 30) == 2
    assert not archive.on_hold("v-1")
    assert archive.release("v-1", "compliance-3", now=T0 + 40) == 0
    history = archive.holds("v-1")
    assert [(h["placed_by"], h["reason"], h["released_by"], h["released_at"])
            for h in history] == [("compliance-1", "case 2026-114", "compliance-3", T0 + 30),
                                  ("compliance-2", "subpoena 88", "compliance-3", T0 + 30)]
    with pytest.raises(UnknownRecording):
        archive.hold("nope", "c", "r", now=T0)
    assert archive.mark_deleted("v-1", now=T0 + 50)
    with pytest.raises(RecordingDeleted):
        archive.hold("v-1", "c", "r", now=T0 + 60)


def test_expired_lists_only_finished_unheld_recordings_past_retention(
        db: sqlite3.Connection) -> None:
    archive = Archive(db)
    now = T0 + 200 * DAY
    add(archive, "old-sealed", "i-1", "A", T0)
    add(archive, "old-recovered", "i-2", "B", T0)
    archive.sealed("old-recovered", "s", 1, 1.0, {}, now=T0 + 3600, recovered=True)
    add(archive, "old-live", "i-3", "C", T0, seal=False)
    add(archive, "old-held", "i-4", "D", T0)
    archive.hold("old-held", "compliance-1", "litigation", now=T0 + DAY)
    add(archive, "recent", "i-5", "E", now - 10 * DAY)
    # Retention counts from the end of the visit: ends exactly 180 days ago is not expired.
    add(archive, "boundary", "i-6", "F", now - 180 * DAY - 30 * 60)

    assert archive.expired(180, now) == ["old-recovered", "old-sealed"]
    assert archive.expired(5, now) == ["old-recovered", "old-sealed", "boundary", "recent"]
    # A live one, and a held one, are refused at deletion too.
    assert not archive.mark_deleted("old-live", now)
    assert not archive.mark_deleted("old-held", now)
    assert archive.mark_deleted("old-sealed", now)
    assert not archive.mark_deleted("old-sealed", now)  # only once
    assert archive.get("old-sealed")["state"] == "deleted"  # type: ignore[index]
    assert archive.expired(180, now) == ["old-recovered"]
    archive.release("old-held", "compliance-1", now)
    assert archive.expired(180, now) == ["old-held", "old-recovered"]


# -- retention -----------------------------------------------------------------------------

def make_visit_folder(root: Path, visit: str) -> Path:
    folder = root / visit
    for track in ("inmate-1-video", "inmate-1-audio"):
        (folder / track).mkdir(parents=True)
        (folder / track / "segment-00001.webm").write_bytes(b"\x1aE\xdf\xa3" + b"x" * 100)
    (folder / "final").mkdir()
    (folder / "final" / "inmate-1.webm").write_bytes(b"final")
    (folder / "manifest.jsonl").write_text("{}\n")
    return folder


async def test_retention_deletes_expired_folders_keeps_held_and_live_ones_and_audits(
        db: sqlite3.Connection, tmp_path: Path) -> None:
    archive, audit = Archive(db), AuditLog(db)
    recordings = tmp_path / "recordings"
    now = T0 + 400 * DAY
    for visit in ("old-1", "old-2", "held", "live", "recent"):
        make_visit_folder(recordings, visit)
    add(archive, "old-1", "i-1", "A", T0)
    add(archive, "old-2", "i-2", "B", T0 + DAY)
    add(archive, "held", "i-3", "C", T0)
    archive.hold("held", "compliance-1", "case 7", now=T0 + 5 * DAY)
    add(archive, "live", "i-4", "D", T0, seal=False)
    add(archive, "recent", "i-5", "E", now - DAY)
    add(archive, "no-files", "i-6", "F", T0)  # indexed, but its folder is already gone
    (recordings / "unindexed").mkdir()  # not ours to judge: left alone

    deleted = await run_retention(archive, recordings, 180, audit.record, now)

    assert sorted(deleted) == ["no-files", "old-1", "old-2"]
    assert not (recordings / "old-1").exists() and not (recordings / "old-2").exists()
    for kept in ("held", "live", "recent", "unindexed"):
        assert (recordings / kept).is_dir(), kept
    assert (recordings / "held" / "inmate-1-video" / "segment-00001.webm").is_file()
    assert not any((recordings / TRASH).iterdir())  # removed, not just moved aside
    assert {v: archive.get(v)["state"] for v in  # type: ignore[index]
            ("old-1", "old-2", "held", "live", "recent")} == {
        "old-1": "deleted", "old-2": "deleted", "held": "sealed", "live": "recording",
        "recent": "sealed"}
    assert archive.get("old-1")["deleted_at"] == now  # type: ignore[index]

    entries = audit.entries(action="recording_deleted")
    assert sorted(e["visit"] for e in entries) == ["no-files", "old-1", "old-2"]
    for e in entries:
        assert (e["actor"], e["role"], e["reason"], e["outcome"], e["ts"]) == (
            "retention", "system", "retention 180 days", "ok", now)
    assert {e["visit"]: e["detail"]["files_found"] for e in entries} == {
        "no-files": False, "old-1": True, "old-2": True}
    assert verify_audit(db).ok

    # A second run finds nothing more; releasing the hold lets the next run delete it.
    assert await run_retention(archive, recordings, 180, audit.record, now + 1) == []
    archive.release("held", "compliance-1", now + 2)
    assert await run_retention(archive, recordings, 180, audit.record, now + 3) == ["held"]
    assert not (recordings / "held").exists()
    assert len(audit.entries(action="recording_deleted")) == 4


async def test_retention_clears_leftovers_of_an_interrupted_run(
        db: sqlite3.Connection, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    leftover = make_visit_folder(recordings / TRASH, "crashed-123")
    audit = AuditLog(db)
    assert await run_retention(Archive(db), recordings, 30, audit.record, T0) == []
    assert not leftover.exists()
    assert audit.entries() == []


async def test_retention_job_runs_in_the_background_until_closed(
        db: sqlite3.Connection, tmp_path: Path) -> None:
    archive, audit = Archive(db), AuditLog(db)
    recordings = tmp_path / "recordings"
    make_visit_folder(recordings, "old")
    add(archive, "old", "i-1", "A", T0)
    job = RetentionJob(archive, recordings, 30, audit.record, interval_s=0.05,
                       clock=lambda: T0 + 100 * DAY)
    job.start()
    try:
        for _ in range(100):
            if job.runs >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await job.close()
    assert job.runs >= 2
    assert not (recordings / "old").exists()
    assert [e["visit"] for e in audit.entries(action="recording_deleted")] == ["old"]
    runs = job.runs
    await asyncio.sleep(0.15)
    assert job.runs == runs  # stopped


# -- the API's plain parts -----------------------------------------------------------------

def test_dates_are_parsed_as_days_instants_or_unix_seconds() -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    assert parse_when("2026-11-20", end=False) == day
    assert parse_when("2026-11-20", end=True) == day + DAY  # "to" includes the whole day
    assert parse_when("2026-11-20T13:00:00Z", end=True) == day + 13 * 3600
    assert parse_when("2026-11-20T13:00:00+01:00", end=False) == day + 12 * 3600
    assert parse_when("2026-11-20T13:00:00", end=False) == day + 13 * 3600  # UTC
    assert parse_when(str(int(day)), end=False) == day
    for bad in ("yesterday", "2026-13-01", "20/11/2026"):
        with pytest.raises(ValueError):
            parse_when(bad, end=False)


def test_tickets_bind_visit_participant_and_expiry() -> None:
    clock = [T0]
    tickets = MediaTickets(clock=lambda: clock[0])
    ticket = tickets.ticket("v-1", "inmate-1", int(T0 + 600))
    assert tickets.check(ticket, "v-1", "inmate-1") is None
    assert tickets.check(ticket, "v-1", "family-1") == "bad_ticket"
    assert tickets.check(ticket, "v-2", "inmate-1") == "bad_ticket"
    expiry, _, sig = ticket.partition(".")
    assert tickets.check(f"{int(expiry) + 600}.{sig}", "v-1", "inmate-1") == "bad_ticket"
    assert tickets.check(f"{expiry}.{sig[:-2]}AA", "v-1", "inmate-1") == "bad_ticket"
    for junk in ("", ".", "x.y", "-1.abc", "1" * 40):
        assert tickets.check(junk, "v-1", "inmate-1") == "bad_ticket"
    clock[0] = T0 + 601
    assert tickets.check(ticket, "v-1", "inmate-1") == "ticket_expired"
    # Another process (a restart) has another secret: old tickets stop working.
    other = MediaTickets(clock=lambda: T0)
    assert other.check(ticket, "v-1", "inmate-1") == "bad_ticket"


# -- a fabricated finished recording -------------------------------------------------------

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
    seal = manifest.seal()
    db = sqlite_store.connect(data_dir / "visitbridge.db")
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


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Recording]]:
    data_dir = Path(tmp_path_factory.mktemp("compliance"))
    recording = fabricate(data_dir)
    with running_server(data_dir) as server:
        yield server, recording


def compliance_token(server: Server, sub: str = "compliance-1") -> str:
    return server.token(sub, "compliance", None, name="Chris Auditor")


Session = tuple[Server, Recording, str, int]


@pytest.fixture
def session(recorded: tuple[Server, Recording]) -> Session:
    """The recorded server, a compliance officer's token, and the last audit seq before
    the test's own requests (``audit_rows(recording, since)`` is what the test caused)."""
    server, recording = recorded
    return server, recording, compliance_token(server), last_seq(recording)


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


def audit_rows(recording: Recording, since: int = 0) -> list[dict[str, Any]]:
    db = sqlite3.connect(recording.data_dir / "visitbridge.db")
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq", (since,)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
    finally:
        db.close()


def last_seq(recording: Recording) -> int:
    rows = audit_rows(recording)
    return rows[-1]["seq"] if rows else 0


async def test_search_finds_the_recording_and_is_audited(session: Session) -> None:
    server, recording, token, since = session
    for query, expected in (
            ("", ["rec-api-2", VISIT]),
            (f"?visit={VISIT}", [VISIT]),
            ("?inmate=reyes", [VISIT]),
            ("?inmate=INMATE-77", ["rec-api-2"]),
            ("?visitor=casey", [VISIT]),
            ("?visitor=family-9&inmate=jordan", [VISIT]),
            ("?from=2026-11-20&to=2026-11-20", [VISIT]),
            ("?from=2026-11-21", ["rec-api-2"]),
            ("?to=2026-11-19", []),
            ("?from=2026-11-20T13:00:00Z&to=2026-11-20T15:00:00Z", [VISIT])):
        status, body, _ = await call(server, "GET", f"/api/recordings{query}", token)
        assert status == 200, (query, body)
        assert [r["visit"] for r in body["recordings"]] == expected, query
    status, body, _ = await call(server, "GET", "/api/recordings?visitor=casey", token)
    found = body["recordings"][0]
    assert (found["inmate"], found["inmate_name"], found["state"], found["on_hold"],
            found["seal"]) == ("inmate-41", "Jordan Reyes", "sealed", False, recording.seal)
    assert found["visitors"] == [{"sub": "family-9", "name": "Casey Reyes"}]

    status, body, _ = await call(server, "GET", "/api/recordings?from=last+tuesday", token)
    assert (status, body["error"]) == (400, "bad_date")

    searches = [r for r in audit_rows(recording, since) if r["action"] == "recording_search"]
    assert len(searches) == 11
    assert all((r["actor"], r["role"], r["outcome"]) == ("compliance-1", "compliance", "ok")
               for r in searches)
    assert searches[4]["detail"] == {"filters": {"visitor": "casey"}, "results": 1,
                                     "visits": [VISIT]}
    assert searches[1]["visit"] == VISIT  # a search by visit id is filed under that visit


async def test_staff_of_other_roles_and_anonymous_callers_are_refused_and_audited(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    since = last_seq(recording)
    visit = VisitClaim(id=VISIT, starts_at=int(time.time()) - 5, ends_at=int(time.time()) + 600)
    family = server.token("family-9", "family", visit)
    officer = server.token("officer-7", "officer", None)
    paths = [("GET", "/api/recordings"), ("GET", f"/api/recordings/{VISIT}"),
             ("GET", f"/api/recordings/{VISIT}/media/inmate-41"),
             ("POST", f"/api/recordings/{VISIT}/verify"),
             ("GET", f"/api/recordings/{VISIT}/export"),
             ("POST", f"/api/recordings/{VISIT}/hold"),
             ("DELETE", f"/api/recordings/{VISIT}/hold")]
    for method, path in paths:
        for token in (family, officer):
            status, body, _ = await call(server, method, path, token, {"reason": "x"})
            assert (status, body["error"]) == (403, "wrong_role"), (method, path)
        status, body, _ = await call(server, method, path)
        assert (status, body["error"]) == (401, "missing_token"), (method, path)
    status, body, _ = await call(server, "GET", "/api/recordings", "not-a-jwt")
    assert status == 401
    refused = [r for r in audit_rows(recording, since) if r["outcome"] == "refused"]
    assert len(refused) == 3 * len(paths) + 1
    assert all(r["action"] == "api" and r["actor"] == "unknown" for r in refused)
    assert [r["reason"] for r in refused[:3]] == ["wrong_role", "wrong_role", "missing_token"]
    assert refused[1]["detail"] == {"request": "GET /api/recordings"}
    assert not [r for r in audit_rows(recording, since) if r["outcome"] != "refused"]


async def test_details_issue_media_tickets_that_serve_ranges_without_the_bearer(
        session: Session) -> None:
    server, recording, token, since = session
    status, body, headers = await call(server, "GET", f"/api/recordings/{VISIT}", token)
    assert status == 200, body
    assert [p["id"] for p in body["participants"]] == ["inmate-41", "family-9"]
    assert [(f["participant"], f["name"], f["role"]) for f in body["finals"]] == [
        ("inmate-41", "Jordan Reyes", "inmate"), ("family-9", "Casey Reyes", "visitor")]
    now = time.time()
    for final in body["finals"]:
        assert final["url"].startswith(f"/api/recordings/{VISIT}/media/{final['participant']}"
                                       "?ticket=")
        assert token not in final["url"]
        assert now + 500 < final["expires_at"] <= now + 601
        assert final["bytes"] == recording.finals[final["participant"]].stat().st_size
        assert final["offset_s"] == {"inmate-41": 0, "family-9": 0.5}[final["participant"]]
    assert body["export_url"] == f"/api/recordings/{VISIT}/export"
    assert body["ticket_ttl_s"] == 600
    assert body["integrity"]["ok"] is True, body["integrity"]
    assert body["integrity"]["sealed"] is True
    entries = audit_rows(recording, since)
    replays = [e for e in entries if e["action"] == "recording_replay"]
    assert [(e["actor"], e["visit"], e["subject"]) for e in replays] == [
        ("compliance-1", VISIT, "inmate-41"), ("compliance-1", VISIT, "family-9")]
    assert replays[0]["detail"]["ticket_expires_at"] == body["finals"][0]["expires_at"]

    # The ticket URL alone (no Authorization header) plays the file, with ranges.
    url = body["finals"][0]["url"]
    expected = recording.finals["inmate-41"].read_bytes()
    since = last_seq(recording)
    status, data, headers = await call(server, "GET", url)
    assert status == 200
    assert data == expected
    assert headers["Content-Type"] == "video/webm"
    assert headers["Accept-Ranges"] == "bytes"
    status, data, headers = await call(server, "GET", url, headers={"Range": "bytes=0-99"})
    assert status == 206
    assert data == expected[:100]
    assert headers["Content-Range"] == f"bytes 0-99/{len(expected)}"
    status, data, _ = await call(server, "GET", url, headers={"Range": "bytes=1000-"})
    assert (status, data) == (206, expected[1000:])
    assert audit_rows(recording, since) == []  # range requests are not audited again

    # A ticket opens only its own file, unaltered.
    ticket = url.rsplit("=", 1)[1]
    expiry, _, sig = ticket.partition(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    for bad in (f"/api/recordings/{VISIT}/media/family-9?ticket={ticket}",
                f"/api/recordings/{VISIT}/media/inmate-41?ticket={expiry}.{flipped}",
                f"/api/recordings/{VISIT}/media/inmate-41?ticket={int(expiry) + 3600}.{sig}",
                f"/api/recordings/{VISIT}/media/inmate-41?ticket=",
                f"/api/recordings/{VISIT}/media/inmate-41?ticket=1.{sig}"):
        status, data, _ = await call(server, "GET", bad, headers={"Range": "bytes=0-99"})
        assert (status, data["error"]) == (403, "bad_ticket"), bad
    refused = audit_rows(recording, since)
    assert [(r["action"], r["outcome"], r["reason"]) for r in refused] == [
        ("api", "refused", "bad_ticket")] * 5

    # A fresh set of tickets (what the console fetches before these expire).
    status, renewed, _ = await call(server, "POST", f"/api/recordings/{VISIT}/tickets", token)
    assert status == 200
    assert [f["participant"] for f in renewed["finals"]] == ["inmate-41", "family-9"]
    status, data, _ = await call(server, "GET", renewed["finals"][1]["url"],
                                 headers={"Range": "bytes=0-99"})
    assert (status, data) == (206, recording.finals["family-9"].read_bytes()[:100])


async def test_media_with_the_bearer_header_serves_ranges_and_audits_plays(
        session: Session) -> None:
    server, recording, token, since = session
    path = f"/api/recordings/{VISIT}/media/family-9"
    expected = recording.finals["family-9"].read_bytes()
    status, data, headers = await call(server, "GET", path, token, headers={"Range": "bytes=0-99"})
    assert (status, data) == (206, expected[:100])
    assert headers["Cache-Control"] == "no-store"
    status, data, _ = await call(server, "GET", path, token, headers={"Range": "bytes=100-199"})
    assert (status, data) == (206, expected[100:200])
    replays = [r for r in audit_rows(recording, since) if r["action"] == "recording_replay"]
    assert [(r["actor"], r["subject"], r["detail"]) for r in replays] == [
        ("compliance-1", "family-9", {"via": "bearer"})]  # once per play, not per range
    status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}/media/nobody", token)
    assert (status, body["error"]) == (404, "no_media")
    status, body, _ = await call(server, "GET", "/api/recordings/nope/media/x", token)
    assert (status, body["error"]) == (404, "unknown_recording")
    status, body, _ = await call(server, "GET", "/api/recordings/nope", token)
    assert (status, body["error"]) == (404, "unknown_recording")
    status, body, _ = await call(
        server, "GET", f"/api/recordings/{VISIT}/media/..%2Fmanifest.jsonl", token)
    assert status == 404


async def test_verify_is_audited_and_reports_the_result(session: Session) -> None:
    server, recording, token, since = session
    status, body, _ = await call(server, "POST", f"/api/recordings/{VISIT}/verify", token)
    assert status == 200, body
    assert body["visit"] == VISIT
    assert (body["ok"], body["problems"], body["sealed"], body["segments"]) == (
        True, [], True, 2)
    assert body["tracks"] == ["family-9-video", "inmate-41-video"]
    entries = audit_rows(recording, since)
    assert [(e["action"], e["actor"], e["visit"], e["detail"]["intact"]) for e in entries] == [
        ("recording_verify", "compliance-1", VISIT, body["ok"])]


async def test_export_streams_a_zip_whose_custody_includes_this_export(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-2")
    since = last_seq(recording)
    status, data, headers = await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
    assert status == 200, data
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == f'attachment; filename="visit-{VISIT}.zip"'
    assert headers["X-Export-SHA256"] == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        custody = json.loads(archive.read("custody.json"))
        assert archive.read("media/inmate-41.webm") == recording.finals["inmate-41"].read_bytes()
    assert "segments/inmate-41-video/segment-00001.webm" in names
    assert custody[-1]["action"] == "recording_export"
    assert (custody[-1]["actor"], custody[-1]["visit"]) == ("compliance-2", VISIT)
    assert all(entry["visit"] == VISIT for entry in custody)
    assert {"recording_replay", "recording_export"} <= {e["action"] for e in custody}
    entries = audit_rows(recording, since)
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("recording_export", "compliance-2"), ("recording_export_digest", "compliance-2")]
    assert entries[1]["detail"] == {"file": f"visit-{VISIT}.zip",
                                    "sha256": hashlib.sha256(data).hexdigest(),
                                    "bytes": len(data)}


async def test_legal_hold_is_placed_and_released_and_audited(session: Session) -> None:
    server, recording, token, since = session
    base = f"/api/recordings/{VISIT}/hold"
    status, body, _ = await call(server, "POST", base, token, {})
    assert (status, body["error"]) == (400, "reason_required")
    status, body, _ = await call(server, "POST", base, token, {"reason": "case 2026-114"})
    assert status == 200
    assert body["on_hold"] is True
    assert [(h["placed_by"], h["reason"], h["released_at"]) for h in body["holds"]] == [
        ("compliance-1", "case 2026-114", None)]
    status, body, _ = await call(server, "GET", f"/api/recordings?visit={VISIT}", token)
    assert body["recordings"][0]["on_hold"] is True
    status, body, _ = await call(server, "DELETE", base, token, {"reason": "case closed"})
    assert (status, body["on_hold"]) == (200, False)
    status, body, _ = await call(server, "DELETE", base, token)
    assert (status, body["error"]) == (409, "not_on_hold")
    # The issue's wording: "POST .../hold and its release".
    await call(server, "POST", base, token, {"reason": "subpoena 88"})
    status, body, _ = await call(server, "POST", base + "/release", token)
    assert (status, body["on_hold"]) == (200, False)
    assert [h["released_by"] for h in body["holds"]] == ["compliance-1", "compliance-1"]
    status, body, _ = await call(server, "POST", "/api/recordings/nope/hold", token,
                                 {"reason": "x"})
    assert (status, body["error"]) == (404, "unknown_recording")

    entries = [e for e in audit_rows(recording, since) if e["action"] != "recording_search"]
    assert [(e["action"], e["actor"], e["visit"], e["reason"]) for e in entries] == [
        ("recording_hold", "compliance-1", VISIT, "case 2026-114"),
        ("recording_release", "compliance-1", VISIT, "case closed"),
        ("recording_hold", "compliance-1", VISIT, "subpoena 88"),
        ("recording_release", "compliance-1", VISIT, "")]


async def test_every_compliance_action_is_in_a_valid_audit_chain(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-9")
    since = last_seq(recording)
    await call(server, "GET", "/api/recordings?inmate=reyes", token)
    await call(server, "GET", f"/api/recordings/{VISIT}", token)
    await call(server, "POST", f"/api/recordings/{VISIT}/verify", token)
    await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
    await call(server, "POST", f"/api/recordings/{VISIT}/hold", token, {"reason": "r"})
    await call(server, "DELETE", f"/api/recordings/{VISIT}/hold", token)
    actions = {e["action"] for e in audit_rows(recording, since) if e["actor"] == "compliance-9"}
    expected = {"recording_search", "recording_replay", "recording_hold", "recording_release",
                "recording_verify", "recording_export"}
    assert expected <= actions
    db = sqlite3.connect(recording.data_dir / "visitbridge.db")
    try:
        assert verify_audit(db).ok
    finally:
        db.close()


async def test_the_console_page_is_served_with_the_strict_policy(
        recorded: tuple[Server, Recording]) -> None:
    server, _ = recorded
    status, data, headers = await call(server, "GET", "/compliance")
    assert status == 200
    html = data.decode()
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert '<script src="/static/compliance.js" defer></script>' in html
    # Only external scripts: no inline script could run under the policy anyway.
    assert html.count("<script") == html.count('<script src="/static/')
    status, _, _ = await call(server, "GET", "/static/compliance.js")
    assert status == 200


# -- in process, with a fake clock ----------------------------------------------------------

@dataclass
class InProcess:
    client: TestClient
    token: str
    archive: Archive
    audit: AuditLog
    clock: list[float]
    recordings: Path

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        resp = await self.client.request(method, path, json=body, headers=sent)
        raw = await resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw


@contextlib.asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[InProcess]:
    keys = tmp_path / "keys"
    write_keypair("k1", keys / "public", keys / "k1.private.pem")
    clock = [time.time()]
    db = sqlite_store.connect(tmp_path / "visitbridge.db")
    try:
        archive, audit = Archive(db), AuditLog(db)
        verifier = TokenVerifier(PemDirKeyStore(keys / "public"), ISSUER, AUDIENCE)
        compliance = Compliance(verifier, archive, audit, tmp_path / "recordings",
                                lambda: b"", clock=lambda: clock[0])
        app = web.Application()
        app.router.add_routes(compliance.routes())
        token = issue_token(load_private_key(keys / "k1.private.pem"), kid="k1",
                            issuer=ISSUER, audience=AUDIENCE, sub="compliance-1",
                            role="compliance", name="C", now=clock[0])
        async with TestClient(TestServer(app)) as client:
            yield InProcess(client, token, archive, audit, clock, tmp_path / "recordings")
    finally:
        db.close()


def final_file(recordings: Path, visit: str, participant: str, data: bytes) -> None:
    (recordings / visit / "final").mkdir(parents=True, exist_ok=True)
    (recordings / visit / "final" / f"{participant}.webm").write_bytes(data)


async def test_an_expired_ticket_is_refused(tmp_path: Path) -> None:
    async with in_process(tmp_path) as it:
        add(it.archive, "v-1", "inmate-1", "A", T0)
        final_file(it.recordings, "v-1", "inmate-1", b"x" * 500)
        status, body = await it.call("GET", "/api/recordings/v-1")
        assert status == 200
        url = body["finals"][0]["url"]
        it.clock[0] += 599
        resp = await it.client.get(url, headers={"Range": "bytes=0-9"})
        assert (resp.status, await resp.read()) == (206, b"x" * 10)
        it.clock[0] += 2
        resp = await it.client.get(url, headers={"Range": "bytes=0-9"})
        assert resp.status == 403
        assert (await resp.json())["error"] == "ticket_expired"
        refused = it.audit.entries(action="api")
        assert [(e["reason"], e["visit"], e["subject"]) for e in refused] == [
            ("ticket_expired", "v-1", "inmate-1")]


def refusals(code: str) -> float:
    return REGISTRY.get_sample_value("visitbridge_token_refusals_total", {"code": code}) or 0


async def test_a_refused_bearer_token_is_counted_and_audited(tmp_path: Path) -> None:
    async with in_process(tmp_path) as it:
        before = {code: refusals(code) for code in ("malformed", "missing_token")}
        path = "/api/recordings/v-1/media/inmate-1"
        status, body = await it.call("GET", path, headers={"Authorization": "Bearer x.y"})
        assert (status, body["error"]) == (401, "malformed")
        status, body = await it.call("POST", "/api/recordings/v-1/hold",
                                     headers={"Authorization": ""})
        assert (status, body["error"]) == (401, "missing_token")
        assert {code: refusals(code) - n for code, n in before.items()} == {
            "malformed": 1, "missing_token": 1}
        assert [(e["actor"], e["outcome"], e["reason"], e["visit"], e["subject"],
                 e["detail"]) for e in it.audit.entries(action="api")] == [
            ("unknown", "refused", "malformed", "v-1", "inmate-1", {"request": f"GET {path}"}),
            ("unknown", "refused", "missing_token", "v-1", None,
             {"request": "POST /api/recordings/v-1/hold"})]


async def test_live_and_deleted_recordings_are_answered_for_what_they_are(
        tmp_path: Path) -> None:
    async with in_process(tmp_path) as it:
        add(it.archive, "live", "inmate-1", "A", T0, seal=False)
        add(it.archive, "gone", "inmate-2", "B", T0)
        final_file(it.recordings, "gone", "inmate-2", b"y" * 50)
        it.archive.mark_deleted("gone", T0 + DAY)
        # A file that escapes the visit folder is never served, whatever the index says.
        add(it.archive, "odd", "inmate-3", "C", T0)
        it.archive.sealed("odd", "s", 1, 1.0, {"inmate-3": "../gone/final/inmate-2.webm",
                                               "x": {"path": "final/x.webm", "offset_s": 2.5}},
                          now=T0)
        final_file(it.recordings, "odd", "x", b"z" * 10)

        status, body = await it.call("GET", "/api/recordings/gone")
        assert (status, body["state"], body["finals"]) == (200, "deleted", [])
        assert body["integrity"] == {"ok": None, "unavailable": "the recording was deleted"}
        for method, path, code in (("POST", "/api/recordings/gone/verify", 410),
                                   ("GET", "/api/recordings/gone/export", 410),
                                   ("POST", "/api/recordings/gone/hold", 409),
                                   ("GET", "/api/recordings/gone/media/inmate-2", 404),
                                   ("GET", "/api/recordings/live/export", 409)):
            status, body = await it.call(method, path, {"reason": "r"})
            assert status == code, (path, body)
        status, body = await it.call("GET", "/api/recordings/odd")
        assert [(f["participant"], f["offset_s"]) for f in body["finals"]] == [("x", 2.5)]
        status, _ = await it.call("GET", "/api/recordings/odd/media/inmate-3")
        assert status == 404


# -- the console in a real browser ---------------------------------------------------------

async def until(page: Any, expression: str, timeout: float = 10.0) -> None:
    """Poll a page expression (wait_for_function evaluates strings, which the page's CSP
    forbids)."""
    deadline = time.time() + timeout
    while not await page.evaluate(expression):
        if time.time() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {expression}")
        await asyncio.sleep(0.05)


async def test_console_finds_plays_in_sync_verifies_and_holds(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-ui")
    async with chromium() as browser:
        page = await open_page(browser, f"{server.url}/compliance#token={token}")
        await page.get_by_label("Visitor (name or ID)").fill("casey")
        await page.get_by_role("button", name="Search").click()
        await page.locator(f"tr[data-visit='{VISIT}']").wait_for()
        assert await page.locator("#results tr").count() == 1
        await page.get_by_role("button", name=f"Open recording of visit {VISIT}").click()
        await page.get_by_role("heading", name=f"Recording of visit {VISIT}").wait_for()
        assert await page.evaluate("document.activeElement.id") == "view-title"

        videos = page.locator("#players video")
        assert await videos.count() == 2
        await until(
            page, "[...document.querySelectorAll('#players video')].every(v => v.readyState >= 2)")
        assert await page.get_by_label("Recording of Jordan Reyes (inmate)").count() == 1
        assert (await page.locator("#integrity").text_content()).startswith("Intact")

        # One play button starts every party; they stay together on one timeline.
        await page.get_by_role("button", name="Play all parties").click()
        await page.get_by_role("button", name="Pause all parties").wait_for()
        await asyncio.sleep(1.2)
        state = await page.evaluate("window.replayState()")
        assert state["playing"] and not any(state["paused"]), state
        assert min(state["times"]) > 0.5, state
        assert max(state["times"]) - min(state["times"]) < 0.35, state
        await page.get_by_role("button", name="Pause all parties").click()
        await until(page, "window.replayState().paused.every(p => p)")

        # The single slider seeks every party (keyboard: focus it, press End/Home).
        slider = page.get_by_label("Position in the visit")
        await slider.fill("2")
        await until(page, "window.replayState().times.every(t => Math.abs(t - 2) < 0.3)")
        await slider.focus()
        await page.keyboard.press("Home")
        # The inmate's file is at its start; the visitor's, which starts 0.5 s into the
        # visit, waits at its own start.
        await until(page, "window.replayState().times[0] < 0.3"
                          " && Math.abs(window.replayState().times[1] - 0.5) < 0.05")
        assert "0:00 /" in await page.locator("#time").text_content()

        await page.get_by_role("button", name="Verify integrity").click()
        await page.get_by_text(f"Integrity of visit {VISIT} checked.").wait_for()
        assert await page.locator("#integrity").get_attribute("data-ok") == "true"

        await page.get_by_label("Reason (required to place a hold)").fill("case 55")
        await page.get_by_role("button", name="Place legal hold").click()
        await page.get_by_text("On legal hold (1)").wait_for()
        await page.get_by_role("button", name="Release hold").click()
        await page.get_by_text("Not on hold.").wait_for()

        await page.get_by_role("button", name="Export with chain of custody").click()
        link = page.get_by_role("link", name=f"Download visit-{VISIT}.zip")
        await link.wait_for()
        assert (await link.get_attribute("href")).startswith("blob:")

        results = await Axe().run(page)
        assert results.violations_count == 0, results.generate_report()

        # 200% zoom of a 1024 px window is a 512 px layout: nothing scrolls sideways.
        await page.set_viewport_size({"width": 512, "height": 384})
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth")

    actions = [(r["action"], r["subject"]) for r in audit_rows(recording)
               if r["actor"] == "compliance-ui"]
    assert ("recording_search", None) in actions
    assert ("recording_replay", "inmate-41") in actions
    assert ("recording_hold", None) in actions and ("recording_release", None) in actions
