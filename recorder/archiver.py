"""Moving sealed recordings into the write-once bucket, and the local copy off the disk.

Off unless a bucket is configured: the embedded default keeps recordings in local files.
For each sealed recording not yet archived, in order:

1. the local folder must verify (``recorder.verify``: manifest, seal, segments and final
   files) - a damaged copy is not made permanent;
2. every file is written as a new object version under COMPLIANCE retention until the
   end of the retention period, with the legal hold ON if the recording is held;
3. every version is read back in full into a scratch folder: each must hash as the
   local file did, and the copy read back must verify against the manifest and the seal
   the database kept, exactly as replay and export will read it;
4. only then is the recording marked archived (with each object's version id) and its
   local folder removed.

Reading back rather than trusting the ETag or ``ChecksumSHA256``: an ETag is an MD5 (or,
for a multipart upload, not a hash of the content at all), and a checksum is the server's
own claim at upload; the bytes read back are the bytes replay and export will get. A
failure at any step leaves the local copy in place, is logged and audited
(``recording_archive``, outcome ``error``) and is tried again on the next run.

After retention deleted a recording (and shredded its data keys), its object versions
are deleted from the bucket. The bucket refuses while a version is retained or held;
that refusal is logged and audited (``recording_purge``, outcome ``refused``) and the
deletion is retried on later runs, until the objects' own retention date lets it go.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recorder.archive_plan import bucket_record, object_key, retain_until, versions
from recorder.bucket import Bucket, BucketError, BucketRefused
from recorder.manifest import file_digest
from recorder.periodic import Periodic
from recorder.retention import visit_folder
from recorder.verify import verify_visit
from records.archive import Archive

log = logging.getLogger(__name__)


def _date(stamp: Any) -> str:
    return datetime.fromtimestamp(float(stamp), UTC).isoformat() if stamp else "unknown"


class ArchiveMismatch(Exception):
    """The copy to archive, or the copy read back from the bucket, is not the sealed one."""


def local_files(folder: Path) -> list[str]:
    """Every file of a visit's folder, as POSIX paths inside it, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.name.endswith(".tmp"))


def _verified(folder: Path, public_pem: bytes, seal: str | None, what: str) -> None:
    report = verify_visit(folder, public_pem, expected_seal=seal)
    if not report.ok:
        raise ArchiveMismatch(f"{what} does not verify: {'; '.join(report.problems[:3])}")


def download(bucket: Bucket, visit: str, objects: Mapping[str, Mapping[str, Any]],
             dest: Path) -> Path:
    """The recording's pinned object versions, written to ``dest/<visit>/``."""
    folder = dest / visit
    for rel, entry in objects.items():
        bucket.download(object_key(visit, rel), str(entry["version"]), folder / rel)
    return folder


def upload_visit(bucket: Bucket, folder: Path, public_pem: bytes, seal: str | None,
                 until: Any, hold: bool) -> dict[str, dict[str, Any]]:
    """Steps 1-3 for one recording (blocking); its objects, as the index records them."""
    visit = folder.name
    _verified(folder, public_pem, seal, "the local copy")
    objects: dict[str, dict[str, Any]] = {}
    for rel in local_files(folder):
        sha256, size = file_digest(folder / rel)
        version = bucket.put(object_key(visit, rel), folder / rel, until, hold)
        objects[rel] = {"version": version, "sha256": sha256, "bytes": size}
    with tempfile.TemporaryDirectory(prefix="visitbridge-readback-") as scratch:
        copy = download(bucket, visit, objects, Path(scratch))
        for rel, entry in objects.items():
            if file_digest(copy / rel) != (entry["sha256"], entry["bytes"]):
                raise ArchiveMismatch(f"{rel} read back from the bucket differs from the "
                                      "file uploaded")
        _verified(copy, public_pem, seal, "the copy read back from the bucket")
    return objects


def set_holds(bucket: Bucket, visit: str, record: Mapping[str, Any] | None, on: bool) -> None:
    """Set the S3 legal hold of every object of an archived recording (blocking)."""
    for rel, version in versions(record):
        bucket.set_hold(object_key(visit, rel), version, on)


def purge(bucket: Bucket, visit: str, record: Mapping[str, Any]) -> None:
    """Delete every object version of a deleted recording (blocking); BucketRefused while
    the bucket still retains or holds one."""
    for rel, version in versions(record):
        bucket.delete(object_key(visit, rel), version)


class ArchiveJob(Periodic):
    """Archives sealed recordings and purges deleted ones, now and every ``interval_s``."""

    what = "archive"

    def __init__(self, archive: Archive, recordings_dir: Path, bucket: Bucket,
                 public_pem: bytes, retention_days: int, audit_record: Callable[..., int], *,
                 interval_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(interval_s)
        self._archive = archive
        self._recordings_dir = recordings_dir
        self._bucket = bucket
        self._public_pem = public_pem
        self._retention_days = retention_days
        self._audit_record = audit_record
        self._clock = clock
        self._reported: set[tuple[str, str]] = set()  # (action, visit) audited as failing

    async def run_once(self) -> list[str]:
        """Archive what is sealed, purge what retention deleted; the visits archived."""
        try:
            await asyncio.to_thread(self._bucket.check_locked)
        except BucketError as exc:
            log.error("archive: nothing archived, recordings stay on local disk: %s", exc)
            return []
        archived = [row["visit"] for row in self._archive.unarchived()
                    if await self._archive_one(row)]
        for row in self._archive.unpurged():
            await self._purge_one(row)
        return archived

    def _failed(self, action: str, visit: str, outcome: str, reason: str) -> None:
        """Log and audit a failure once per visit and process, not once per run (it is
        tried again each run, and logged at debug level from then on)."""
        if (action, visit) in self._reported:
            log.debug("%s of %s: %s", action, visit, reason)
        else:
            log.error("%s of %s: %s", action, visit, reason)
            self._reported.add((action, visit))
            self._audit_record(action=action, actor="archive", role="system", visit=visit,
                               outcome=outcome, reason=reason[:300], now=self._clock())

    async def _archive_one(self, row: dict[str, Any]) -> bool:
        visit = row["visit"]
        folder = visit_folder(self._recordings_dir, visit)
        if folder is None or not folder.is_dir():
            self._failed("recording_archive", visit, "error", "the local folder is missing")
            return False
        until = retain_until(row, self._retention_days)
        try:
            objects = await asyncio.to_thread(upload_visit, self._bucket, folder,
                                              self._public_pem, row.get("seal"), until,
                                              row["on_hold"])
        except (BucketError, ArchiveMismatch, OSError) as exc:
            self._failed("recording_archive", visit, "error",
                         f"not archived, the local copy is kept: {exc}")
            return False
        record = bucket_record(self._bucket.name, objects, until, self._clock())
        self._archive.archived(visit, record)
        if (held := self._archive.on_hold(visit)) != row["on_hold"]:  # changed meanwhile
            await asyncio.to_thread(set_holds, self._bucket, visit, record, held)
        self._audit_record(action="recording_archive", actor="archive", role="system",
                           visit=visit, now=self._clock(),
                           detail={"bucket": self._bucket.name, "objects": len(objects),
                                   "retain_until": record["retain_until"]})
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return True

    async def _purge_one(self, row: dict[str, Any]) -> None:
        visit, record = row["visit"], row["bucket"]
        try:
            await asyncio.to_thread(purge, self._bucket, visit, record)
        except BucketRefused as exc:
            until = _date(record.get("retain_until"))
            self._failed("recording_purge", visit, "refused",
                         f"the bucket refuses to delete the recording's objects before their "
                         f"retention date ({until}) or while held: {exc}")
            return
        except BucketError as exc:
            self._failed("recording_purge", visit, "error", str(exc))
            return
        self._archive.purged(visit, self._clock())
        self._audit_record(action="recording_purge", actor="archive", role="system",
                           visit=visit, now=self._clock(),
                           detail={"bucket": self._bucket.name,
                                   "objects": len(versions(record))})
