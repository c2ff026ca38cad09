"""Retention: expired recordings are deleted from disk and audited; held and live ones stay."""

from __future__ import annotations

import asyncio
from pathlib import Path

from recorder.retention import TRASH, RetentionJob, run_retention
from records.archive import Archive
from records.audit import AuditLog
from records.audit import verify as verify_audit
from records.dialect import Connection
from tests.support.archive import DAY, T0, add


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
        db: Connection, tmp_path: Path) -> None:
    archive, audit = Archive(db), AuditLog(db)
    recordings = tmp_path / "recordings"
    now = T0 + 400 * DAY
    for visit in ("old-1", "old-2", "held", "live", "recent"):
        make_visit_folder(recordings, visit)
    add(archive, "old-1", "i-1", "A", T0)
    add(archive, "old-2", "i-2", "B", T0 + DAY)
    add(archive, "held", "i-3", "C", T0)
    held = archive.hold("held", "compliance-1", "case 7", now=T0 + 5 * DAY)
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
    archive.release("held", held, "compliance-1", "case closed", now + 2)
    assert await run_retention(archive, recordings, 180, audit.record, now + 3) == ["held"]
    assert not (recordings / "held").exists()
    assert len(audit.entries(action="recording_deleted")) == 4


async def test_retention_clears_leftovers_of_an_interrupted_run(
        db: Connection, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    leftover = make_visit_folder(recordings / TRASH, "crashed-123")
    audit = AuditLog(db)
    assert await run_retention(Archive(db), recordings, 30, audit.record, T0) == []
    assert not leftover.exists()
    assert audit.entries() == []


async def test_retention_job_runs_in_the_background_until_closed(
        db: Connection, tmp_path: Path) -> None:
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
