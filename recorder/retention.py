"""Retention: delete finished recordings older than the facility's retention period.

A recording on legal hold is never deleted, and neither is one still being recorded
(``Archive.expired`` lists neither, and ``Archive.mark_deleted`` refuses both again at
the moment of deletion). Each deletion is one audit entry.

The order makes a crash harmless: the folder is first renamed into
``<recordings>/.trash/`` (instant, on the event loop, so no hold can slip in between the
check and the removal), then the index row is marked deleted, the visit's data keys
are shredded (an encrypted recording is unreadable from then on, in every copy of its
media) and the deletion audited with the number of keys shredded, and only then are
the files removed, in a worker thread. Whatever a crash or an I/O error leaves in
``.trash`` is removed on the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from recorder.periodic import Periodic
from records.archive import Archive

log = logging.getLogger(__name__)

TRASH = ".trash"


def visit_folder(recordings_dir: Path, visit: str) -> Path | None:
    """``<recordings>/<visit>``, or None if the id cannot name a folder directly inside."""
    if not visit or visit in (".", "..") or visit.startswith(".") \
            or any(c in visit for c in "/\\\0"):
        return None
    return recordings_dir / visit


async def run_retention(archive: Archive, recordings_dir: Path, retention_days: int,
                        audit_record: Callable[..., int], now: float,
                        shred: Callable[[str], int] | None = None) -> list[str]:
    """Delete every expired, unheld, finished recording; return the visit ids deleted.
    ``shred`` deletes a visit's data keys and says how many there were."""
    recordings_dir = Path(recordings_dir)
    trash = recordings_dir / TRASH
    await _empty_trash(trash)
    deleted: list[str] = []
    for visit in archive.expired(retention_days, now):
        folder = visit_folder(recordings_dir, visit)
        # From here to mark_deleted there is no await: nothing else runs on the loop, so
        # a hold cannot be placed between the check and the claim.
        row = archive.get(visit)
        if row is None or row["state"] not in ("sealed", "recovered") or row["on_hold"]:
            continue
        if folder is None:
            log.error("retention: visit id %r cannot name a folder, not deleting", visit)
            continue
        moved: Path | None = None
        if folder.exists():
            trash.mkdir(parents=True, exist_ok=True)
            moved = trash / f"{visit}-{int(now)}"
            try:
                folder.rename(moved)
            except OSError as exc:
                log.error("retention: cannot move %s aside, not deleting: %s", folder, exc)
                continue
        if not archive.mark_deleted(visit, now):
            if moved is not None:  # cannot happen without an await above; undo anyway
                moved.rename(folder)
            continue
        detail = {"bytes": row.get("bytes"), "seal": row.get("seal"),
                  "ends_at": row.get("ends_at"), "files_found": moved is not None}
        if shred is not None:
            try:
                detail["data_keys_shredded"] = await asyncio.to_thread(shred, visit)
            except OSError as exc:
                log.error("retention: data keys of %s not shredded: %s", visit, exc)
                detail["data_keys_shredded"] = None
                detail["shred_error"] = str(exc)[:200]
        audit_record(action="recording_deleted", actor="retention", role="system",
                     visit=visit, reason=f"retention {retention_days} days", now=now,
                     detail=detail)
        deleted.append(visit)
        if moved is not None:
            await _remove(moved)
    if deleted:
        log.info("retention: deleted %d recording(s) older than %d days", len(deleted),
                 retention_days)
    return deleted


async def _remove(path: Path) -> None:
    try:
        await asyncio.to_thread(shutil.rmtree, path)
    except OSError as exc:
        log.warning("retention: %s not fully removed (retried next run): %s", path, exc)


async def _empty_trash(trash: Path) -> None:
    if not trash.is_dir():
        return
    for leftover in list(trash.iterdir()):
        if leftover.is_dir() and not leftover.is_symlink():
            await _remove(leftover)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()


class RetentionJob(Periodic):
    """Runs ``run_retention`` now and then every ``interval_s`` seconds in the background."""

    what = "retention"

    def __init__(self, archive: Archive, recordings_dir: Path, retention_days: int,
                 audit_record: Callable[..., int], *, interval_s: float = 3600.0,
                 clock: Callable[[], float] | None = None,
                 shred: Callable[[str], int] | None = None) -> None:
        super().__init__(interval_s)
        self._archive = archive
        self._recordings_dir = Path(recordings_dir)
        self._retention_days = retention_days
        self._audit_record = audit_record
        self._clock = clock or time.time
        self._shred = shred
        self.runs = 0

    async def run_once(self) -> list[str]:
        deleted = await run_retention(self._archive, self._recordings_dir,
                                      self._retention_days, self._audit_record, self._clock(),
                                      self._shred)
        self.runs += 1
        return deleted
