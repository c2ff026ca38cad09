"""The local copy of a recording goes only after its upload to the bucket is verified."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recorder.archive_plan import object_key, retain_until
from recorder.archiver import ArchiveJob, download
from recorder.bucket import Bucket, BucketRefused
from recorder.signing import load_or_create
from recorder.verify import verify_visit
from records import store as sqlite_store
from records.archive import Archive
from records.audit import AuditLog
from tests.support.compliance import VISIT, Recording, fabricate, flip_byte
from tests.support.postgres import server_database
from tests.support.s3 import SeaweedS3


class CorruptingBucket(Bucket):
    """Uploads one file with a byte flipped, as a faulty link or gateway would."""

    def put(self, key: str, path: Path, retain_until: datetime, hold: bool) -> str:
        if not key.endswith("family-9.webm"):
            return super().put(key, path, retain_until, hold)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / path.name
            shutil.copy(path, copy)
            flip_byte(copy, 500)
            return super().put(key, copy, retain_until, hold)


def _job(recording: Recording, bucket: Bucket) -> tuple[ArchiveJob, Archive, AuditLog]:
    db = sqlite_store.connect(server_database(recording.data_dir))
    key = load_or_create(recording.data_dir / "keys" / "recording.private.pem",
                         recording.data_dir / "keys" / "recording.public.pem")
    archive, audit = Archive(db), AuditLog(db)
    return (ArchiveJob(archive, recording.data_dir / "recordings", bucket, key.public_pem, 180,
                       audit.record), archive, audit)


def _failures(audit: AuditLog) -> list[str]:
    return [e["reason"] for e in audit.entries(visit=VISIT)
            if e["action"] == "recording_archive" and e["outcome"] == "error"]


def _objects(s3: SeaweedS3, bucket: str) -> list[dict[str, Any]]:
    return s3.client().list_object_versions(Bucket=bucket).get("Versions", [])


async def test_the_local_copy_goes_once_the_locked_upload_reads_back_intact(
        s3: SeaweedS3, tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    files = sorted(p.relative_to(recording.visit_dir).as_posix()
                   for p in recording.visit_dir.rglob("*") if p.is_file())
    bucket = s3.bucket(s3.new_bucket("archive-good"))
    job, archive, audit = _job(recording, bucket)

    assert await job.run_once() == [VISIT]
    assert not recording.visit_dir.exists()
    row = archive.get(VISIT)
    assert row is not None and sorted(row["bucket"]["objects"]) == files
    until = retain_until(row, 180)
    client = s3.client()
    for rel, entry in row["bucket"]["objects"].items():
        head = client.head_object(Bucket="archive-good", Key=object_key(VISIT, rel),
                                  VersionId=entry["version"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == until
        with pytest.raises(BucketRefused):
            bucket.delete(object_key(VISIT, rel), entry["version"])
    done = [e for e in audit.entries(visit=VISIT) if e["action"] == "recording_archive"]
    assert [(e["outcome"], e["detail"]["objects"]) for e in done] == [("ok", len(files))]
    # What the bucket holds is the sealed recording, as verify reads it.
    key_pem = (tmp_path / "keys" / "recording.public.pem").read_bytes()
    copy = download(bucket, VISIT, row["bucket"]["objects"], tmp_path / "copy")
    assert verify_visit(copy, key_pem, expected_seal=recording.seal).ok


async def test_a_corrupted_upload_keeps_the_local_copy(s3: SeaweedS3, tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    before = {p: p.read_bytes() for p in recording.visit_dir.rglob("*") if p.is_file()}
    bucket = CorruptingBucket(s3.settings(s3.new_bucket("archive-corrupt")))
    job, archive, audit = _job(recording, bucket)

    assert await job.run_once() == []
    assert {p: p.read_bytes() for p in recording.visit_dir.rglob("*") if p.is_file()} == before
    row = archive.get(VISIT)
    assert row is not None and row["bucket"] is None
    assert _failures(audit) == ["not archived, the local copy is kept: final/family-9.webm "
                                "read back from the bucket differs from the file uploaded"]
    assert await job.run_once() == []  # tried again, audited once
    assert len(_failures(audit)) == 1


async def test_a_failed_upload_or_an_unlocked_bucket_keeps_the_local_copy(
        s3: SeaweedS3, tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    job, archive, audit = _job(recording, s3.bucket("no-such-bucket"))
    assert await job.run_once() == []
    assert recording.visit_dir.is_dir()
    unlocked = s3.new_bucket("archive-unlocked", locked=False)
    job, archive, audit = _job(recording, s3.bucket(unlocked))
    assert await job.run_once() == []
    assert recording.visit_dir.is_dir() and _objects(s3, unlocked) == []
    row = archive.get(VISIT)
    assert row is not None and row["bucket"] is None


async def test_a_local_copy_that_fails_its_check_is_not_made_permanent(
        s3: SeaweedS3, tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    flip_byte(recording.finals["inmate-41"], 700)
    bucket = s3.new_bucket("archive-tampered")
    job, archive, audit = _job(recording, s3.bucket(bucket))
    assert await job.run_once() == []
    assert recording.visit_dir.is_dir() and _objects(s3, bucket) == []
    assert _failures(audit)[0].startswith("not archived, the local copy is kept: the local "
                                          "copy does not verify")
