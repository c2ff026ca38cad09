"""What the write-once archive stores, as plain logic: object keys, the retention date,
the index record of an archived recording, and how its objects are looked up again.

A recording is archived as one object per file of its folder (segments, manifest, final
files, anything else the recorder left there), under ``<visit>/<path in the folder>``.
Wrapped data keys are not archived: they stay in the local key store, so that retention
can shred them (and with them every copy of an encrypted recording's media) while the
bucket still holds the ciphertext under its lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

DAY_S = 86400.0


def object_key(visit: str, rel: str) -> str:
    """The object key of the file at ``rel`` (POSIX path inside the visit's folder)."""
    return f"{visit}/{rel}"


def retention_start(row: Mapping[str, Any]) -> float:
    """When a recording's retention period starts: as ``records.archive.Archive.expired``
    counts it, from the booked end (else the seal, else the first recording)."""
    for field in ("ends_at", "sealed_at", "created_at"):
        if row.get(field) is not None:
            return float(row[field])
    raise ValueError(f"recording {row.get('visit')!r} has no time to count retention from")


def retain_until(row: Mapping[str, Any], retention_days: float) -> datetime:
    """The COMPLIANCE retention date of the recording's objects: the end of its retention
    period, rounded up to the second, so the bucket never lets go before the product."""
    start = retention_start(row) + float(retention_days) * DAY_S
    return datetime.fromtimestamp(int(-(-start // 1)), UTC)


def bucket_record(bucket: str, objects: Mapping[str, Mapping[str, Any]],
                  until: datetime, now: float) -> dict[str, Any]:
    """The index's record of an archived recording (``records.archive`` stores it)."""
    return {"bucket": bucket, "objects": {rel: dict(entry) for rel, entry in objects.items()},
            "retain_until": until.timestamp(), "archived_at": now}


def stored_object(record: Mapping[str, Any] | None, rel: str) -> dict[str, Any] | None:
    """``{"version", "sha256", "bytes"}`` of the archived file at ``rel``; None if the
    recording is not archived or the file is not among its objects."""
    if not record:
        return None
    entry = (record.get("objects") or {}).get(rel)
    return dict(entry) if isinstance(entry, Mapping) and entry.get("version") else None


def versions(record: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(rel, version) of every object of an archived recording (none if not archived):
    what a legal hold is set on, and what retention deletes."""
    if not record:
        return []
    return [(rel, str(entry["version"])) for rel, entry in
            sorted((record.get("objects") or {}).items())]
