"""The bucket the archive writes to, as a real S3 server enforces it (SeaweedFS)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder.bucket import Bucket, BucketError, BucketRefused
from tests.support.s3 import SeaweedS3


def _put(bucket: Bucket, tmp_path: Path, seconds: float, hold: bool = False) -> str:
    path = tmp_path / "segment-1.webm"
    path.write_bytes(b"sealed media " * 100)
    until = datetime.now(UTC) + timedelta(seconds=seconds)
    return bucket.put("visit-1/segment-1.webm", path, until, hold)


def test_a_locked_version_cannot_be_deleted_or_its_retention_shortened(
        s3: SeaweedS3, tmp_path: Path) -> None:
    bucket = s3.bucket(s3.new_bucket("locked-delete"))
    bucket.check_locked()
    version = _put(bucket, tmp_path, seconds=3600)
    with pytest.raises(BucketRefused, match="deleting visit-1/segment-1.webm"):
        bucket.delete("visit-1/segment-1.webm", version)
    with pytest.raises(BucketRefused):
        bucket.retain("visit-1/segment-1.webm", version, datetime.now(UTC) + timedelta(seconds=5))
    assert bucket.digest("visit-1/segment-1.webm", version)[1] == 1300  # still there


def test_a_legal_hold_blocks_deletion_after_retention_has_passed(
        s3: SeaweedS3, tmp_path: Path) -> None:
    bucket = s3.bucket(s3.new_bucket("held-delete"))
    version = _put(bucket, tmp_path, seconds=1, hold=True)
    time.sleep(2)  # the retention date has passed; the hold alone keeps it
    with pytest.raises(BucketRefused):
        bucket.delete("visit-1/segment-1.webm", version)
    bucket.set_hold("visit-1/segment-1.webm", version, on=False)
    bucket.delete("visit-1/segment-1.webm", version)
    with pytest.raises(BucketError):
        bucket.digest("visit-1/segment-1.webm", version)


def test_a_bucket_without_object_lock_is_refused(s3: SeaweedS3) -> None:
    bucket = s3.bucket(s3.new_bucket("not-locked", locked=False))
    with pytest.raises(BucketError, match="Object Lock"):
        bucket.check_locked()
