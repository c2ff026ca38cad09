"""Opening a track's recording never blocks the SFU: the tap is handed out at once from the
UDP receive path, the disk and database work runs in the recorder's thread, and nothing
is forwarded until the recording is really open and has its first keyframe."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.session import Recordings
from recorder.signing import RecordingKey
from records.archive import Archive
from records.audit import AuditLog
from records.dialect import open_database
from records.store import Store, connect
from tests.support.media import VP8, Publisher
from visit.tap import TapRequest

VISIT = "v-open"
BOOKED_AGO = 5.0  # the visit started this long before the first packet
LOCK_S = 1.0
FAST_S = 0.05  # what the SFU's receive path may spend in the tap, generously


@dataclass
class Signals:
    ready_at: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def recordings_on(tmp_path: Path, database: Path | str) -> Recordings:
    db = connect(database)
    store = Store(db)
    now = time.time()
    store.save_visit(VISIT, now, state="live", starts_at=now - BOOKED_AGO, ends_at=now + 600)
    store.participant_seen(VISIT, "inmate-1", "Ina Mate", "inmate", now)
    store.participant_seen(VISIT, "family-1", "Fam Ily", "family", now)
    return Recordings(tmp_path / "recordings", RecordingKey.generate(), Archive(db), store,
                      AuditLog(db))


def hold(database: Path | str) -> Any:
    """Another process holding the database (a backup, a long transaction): the whole
    SQLite file, or on PostgreSQL the table a recording's opening writes to."""
    if isinstance(database, Path):
        locker = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        return locker
    locker = open_database(database)
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE recordings IN EXCLUSIVE MODE")
    return locker


def request(publisher: Publisher, signals: Signals) -> TapRequest:
    return TapRequest(visit_id=VISIT, participant="family-1", kind="video", mime="video/vp8",
                      clock_rate=90000, request_keyframe=publisher.request_keyframe,
                      on_ready=lambda: signals.ready_at.append(time.time()),
                      on_failure=signals.failures.append)


async def test_a_locked_database_delays_recording_but_never_the_media_path(
        tmp_path: Path, database: Path | str) -> None:
    recordings = recordings_on(tmp_path, database)
    locker = hold(database)  # for a second
    released_at: list[float] = []

    def release() -> None:
        locker.execute("COMMIT")
        released_at.append(time.time())

    threading.Timer(LOCK_S, release).start()

    publisher = Publisher(VP8)
    signals = Signals()
    started = time.perf_counter()
    tap = recordings.tap(request(publisher, signals))
    assert time.perf_counter() - started < FAST_S

    first_arrival = time.time()
    slowest = 0.0
    forwarded_before_ready = 0  # what the SFU would have forwarded: packets while ready
    for send_time, packets in publisher.frames():
        if send_time > LOCK_S + 1.5:
            break
        await asyncio.sleep(max(0.0, first_arrival + send_time - time.time()))
        for packet in packets:
            started = time.perf_counter()
            tap.packet(packet, time.time())
            slowest = max(slowest, time.perf_counter() - started)
            if tap.ready and not released_at:
                forwarded_before_ready += 1

    assert slowest < FAST_S, f"a packet waited {slowest:.3f} s in the tap"
    assert forwarded_before_ready == 0
    assert signals.failures == []
    assert released_at and len(signals.ready_at) == 1, "recording never started"
    assert released_at[0] <= signals.ready_at[0] <= released_at[0] + 1.0
    assert tap.ready

    recordings.visit_ended(VISIT)
    await recordings.close()
    locker.close()
    row = recordings.archive.get(VISIT)
    assert row is not None and row["state"] == "sealed"
    assert row["inmate"] == "inmate-1"
    assert row["visitors"] == [{"sub": "family-1", "name": "Fam Ily"}]
    # The packets held while the database was locked are on the timeline where they
    # arrived (the visit's booked start is the origin), not where they were replayed.
    folder = tmp_path / "recordings" / VISIT
    lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    segment = next(line for line in lines if line["type"] == "segment")
    assert segment["track"] == "family-1-video"
    assert abs(segment["first_pts"] / 90000 - BOOKED_AGO) < 0.2, segment["first_pts"]


async def test_a_recording_that_cannot_be_opened_fails_closed(tmp_path: Path) -> None:
    recordings = recordings_on(tmp_path, tmp_path / "visitbridge.db")
    (tmp_path / "recordings").write_text("not a folder")  # the volume is not mounted right
    publisher = Publisher(VP8)
    signals = Signals()
    tap = recordings.tap(request(publisher, signals))
    start = time.time()
    for send_time, packets in publisher.frames():
        if send_time > 0.5:
            break
        await asyncio.sleep(max(0.0, start + send_time - time.time()))
        for packet in packets:
            tap.packet(packet, time.time())
            assert not tap.ready
    assert signals.failures == ["io_error"]
    assert signals.ready_at == []
    recordings.visit_ended(VISIT)
    await recordings.close()
