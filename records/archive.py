"""The recordings index: which visits were recorded, who was in them, and legal holds.

One row per visit in ``recordings`` (kept after deletion, so the index still shows that a
recording existed and when retention removed it) and one row per hold placed in
``holds`` (never deleted: a released hold keeps who released it and when). The media
itself lives under ``<recordings>/<visit>/``, or, once archived, in the write-once bucket
(``bucket``: the objects and their versions, see ``recorder.archiver``); this module
never touches files.

Takes a connection from ``records.store.connect`` (autocommit, rows read by name)
and is used from one thread, the event loop's. Times are unix seconds, passed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from records.dialect import Connection, json_array, json_text
from records.store import dicts

STATES = ("recording", "sealed", "recovered", "deleted")
# Only a finished recording may be removed by retention; a live one never is.
DELETABLE = ("sealed", "recovered")
DAY_S = 86400.0

_ACTIVE_HOLD = "SELECT 1 FROM holds h WHERE h.visit = r.visit AND h.released_at IS NULL"


class UnknownRecording(LookupError):
    """No recording with this visit id is indexed."""


class RecordingDeleted(Exception):
    """The recording was already deleted, so it can no longer be held."""


class UnknownHold(LookupError):
    """No hold with this id was placed on this visit's recording."""


class HoldReleased(Exception):
    """The hold was already released."""


def recording_length(spans: Iterable[tuple[float, float]]) -> float:
    """The length of a recording, the one definition the index, the console's list and its
    replay timeline share: from the first recorded media of any party to the last, given
    each party's (start on the visit timeline, seconds). Time before anyone was recorded
    (after the booked start) is not part of it; a pause between parties is."""
    spans = list(spans)
    if not spans:
        return 0.0
    return max(start + seconds for start, seconds in spans) - min(s for s, _ in spans)


def _like(text: str) -> str:
    """A case-insensitive ``LIKE`` pattern matching ``text`` anywhere, wildcards escaped."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _row(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["visitors"] = json.loads(data.pop("visitors_json") or "[]")
    data["finals"] = json.loads(data.pop("finals_json") or "{}")
    data["on_hold"] = bool(data.pop("on_hold", 0))
    data["bucket"] = json.loads(data.pop("bucket_json", None) or "null")
    return data


class Archive:
    def __init__(self, db: Connection) -> None:
        self.db = db

    # -- the recorder's side ------------------------------------------------------------

    def started(self, visit: str, inmate: str | None, inmate_name: str | None,
                starts_at: float | None, ends_at: float | None, now: float) -> None:
        """A recording began (or began again after a restart: back to 'recording')."""
        self.db.execute(
            "INSERT INTO recordings (visit, inmate, inmate_name, starts_at, ends_at, state, "
            "created_at) VALUES (?,?,?,?,?,'recording',?) ON CONFLICT(visit) DO UPDATE SET "
            "inmate = COALESCE(excluded.inmate, recordings.inmate), "
            "inmate_name = COALESCE(excluded.inmate_name, recordings.inmate_name), "
            "starts_at = COALESCE(excluded.starts_at, recordings.starts_at), "
            "ends_at = COALESCE(excluded.ends_at, recordings.ends_at), state = 'recording', "
            "deleted_at = NULL",
            (visit, inmate, inmate_name, starts_at, ends_at, now))

    def add_inmate(self, visit: str, sub: str, name: str) -> None:
        """Index the visit's inmate, whenever they join (the recording may have begun with a
        visitor alone)."""
        cursor = self.db.execute("UPDATE recordings SET inmate = ?, inmate_name = ? "
                                 "WHERE visit = ?", (sub, name, visit))
        if cursor.rowcount == 0:
            raise UnknownRecording(visit)

    def add_visitor(self, visit: str, sub: str, name: str) -> None:
        """Index a visitor of a recorded visit (once per ``sub``; a new name replaces)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT visitors_json FROM recordings WHERE visit = ?",
                             (visit,)).fetchone()
            if row is None:
                raise UnknownRecording(visit)
            visitors = json.loads(row[0] or "[]")
            for entry in visitors:
                if entry.get("sub") == sub:
                    entry["name"] = name
                    break
            else:
                visitors.append({"sub": sub, "name": name})
            db.execute("UPDATE recordings SET visitors_json = ? WHERE visit = ?",
                       (json.dumps(visitors, ensure_ascii=False), visit))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def sealed(self, visit: str, seal: str, bytes: int, seconds: float,
               finals: dict[str, Any], now: float, *, recovered: bool = False) -> None:
        """The recording is complete: its manifest seal, size, length and final files.

        ``finals`` maps participant id to that party's final file, relative to the visit
        folder (``"final/<participant>.webm"``), or to ``{"path": ..., "offset_s": ...}``
        when the file starts ``offset_s`` seconds into the visit (``FinalFile.offset_s``),
        so that replay can line the parties up. ``recovered`` marks one sealed by crash
        recovery rather than by a normal end.
        """
        cursor = self.db.execute(
            "UPDATE recordings SET state = ?, seal = ?, bytes = ?, seconds = ?, "
            "finals_json = ?, sealed_at = ? WHERE visit = ? AND state != 'deleted'",
            ("recovered" if recovered else "sealed", seal, int(bytes), float(seconds),
             json.dumps(finals, ensure_ascii=False, sort_keys=True), now, visit))
        if cursor.rowcount == 0:
            raise UnknownRecording(visit)

    # -- the archive's side -------------------------------------------------------------

    def unarchived(self) -> list[dict[str, Any]]:
        """Finished recordings still on local disk only, oldest first."""
        rows = self.db.execute(
            f"SELECT r.*, EXISTS ({_ACTIVE_HOLD}) AS on_hold FROM recordings r "
            "WHERE r.state IN ('sealed', 'recovered') AND r.bucket_json IS NULL "
            "ORDER BY r.sealed_at, r.visit").fetchall()
        return [_row(r) for r in rows]

    def archived(self, visit: str, bucket: dict[str, Any]) -> None:
        """The recording's objects were written to the bucket and read back intact."""
        cursor = self.db.execute(
            "UPDATE recordings SET bucket_json = ? WHERE visit = ? AND state != 'deleted'",
            (json.dumps(bucket, sort_keys=True), visit))
        if cursor.rowcount == 0:
            raise UnknownRecording(visit)

    def unpurged(self) -> list[dict[str, Any]]:
        """Deleted recordings whose objects are still in the bucket."""
        rows = self.db.execute(
            "SELECT r.*, 0 AS on_hold FROM recordings r WHERE r.state = 'deleted' AND "
            "r.bucket_json IS NOT NULL ORDER BY r.deleted_at, r.visit").fetchall()
        return [row for row in map(_row, rows) if "purged_at" not in row["bucket"]]

    def purged(self, visit: str, now: float) -> None:
        """Every object version of the deleted recording was deleted from the bucket."""
        row = self.db.execute("SELECT bucket_json FROM recordings WHERE visit = ?",
                              (visit,)).fetchone()
        bucket = {**json.loads(row[0] or "{}"), "purged_at": now} if row else None
        self.db.execute("UPDATE recordings SET bucket_json = ? WHERE visit = ?",
                        (json.dumps(bucket, sort_keys=True), visit))

    # -- the compliance side ------------------------------------------------------------

    def search(self, visit: str | None = None, inmate: str | None = None,
               visitor: str | None = None, date_from: float | None = None,
               date_to: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recordings matching every given filter, newest first.

        ``visit`` is an exact id; ``inmate`` and ``visitor`` match a case-insensitive
        substring of the id or the name; ``date_from`` (inclusive) and ``date_to``
        (exclusive) bound ``starts_at``.
        """
        where, args = [], []
        if visit:
            where.append("r.visit = ?")
            args.append(visit)
        if inmate:
            where.append("(lower(coalesce(r.inmate, '')) LIKE ? ESCAPE '\\' "
                         "OR lower(coalesce(r.inmate_name, '')) LIKE ? ESCAPE '\\')")
            args += [_like(inmate)] * 2
        if visitor:
            where.append(f"EXISTS (SELECT 1 FROM {json_array(self.db, 'r.visitors_json', 'v')} "
                         f"WHERE lower(coalesce({json_text(self.db, 'v.value', 'sub')}, '')) "
                         "LIKE ? ESCAPE '\\' OR "
                         f"lower(coalesce({json_text(self.db, 'v.value', 'name')}, '')) "
                         "LIKE ? ESCAPE '\\')")
            args += [_like(visitor)] * 2
        if date_from is not None:
            where.append("r.starts_at >= ?")
            args.append(float(date_from))
        if date_to is not None:
            where.append("r.starts_at < ?")
            args.append(float(date_to))
        sql = f"SELECT r.*, EXISTS ({_ACTIVE_HOLD}) AS on_hold FROM recordings r"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.starts_at DESC, r.visit LIMIT ?"
        rows = self.db.execute(sql, [*args, max(1, min(int(limit), 1000))]).fetchall()
        return [_row(r) for r in rows]

    def get(self, visit: str) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT r.*, EXISTS ({_ACTIVE_HOLD}) AS on_hold FROM recordings r "
            "WHERE r.visit = ?", (visit,)).fetchone()
        return None if row is None else _row(row)

    def holds(self, visit: str) -> list[dict[str, Any]]:
        """Every hold ever placed on the visit, oldest first, released ones included."""
        return dicts(self.db, "SELECT id, visit, placed_by, reason, placed_at, released_by, "
                     "released_at, release_reason FROM holds WHERE visit = ? ORDER BY id",
                     (visit,))

    def hold(self, visit: str, by: str, reason: str, now: float) -> int:
        """Place a legal hold; returns its id. Several holds may be active at once."""
        row = self.db.execute("SELECT state FROM recordings WHERE visit = ?",
                              (visit,)).fetchone()
        if row is None:
            raise UnknownRecording(visit)
        if row["state"] == "deleted":
            raise RecordingDeleted(visit)
        return int(self.db.execute(
            "INSERT INTO holds (visit, placed_by, reason, placed_at) VALUES (?,?,?,?) "
            "RETURNING id", (visit, by, reason, now)).fetchone()[0])

    def release(self, visit: str, hold: int, by: str, reason: str, now: float) -> None:
        """Release one hold, for a stated reason: each hold was placed for its own reason,
        so each is released on its own."""
        cursor = self.db.execute(
            "UPDATE holds SET released_by = ?, released_at = ?, release_reason = ? "
            "WHERE id = ? AND visit = ? AND released_at IS NULL", (by, now, reason, hold, visit))
        if cursor.rowcount == 1:
            return
        if self.db.execute("SELECT 1 FROM holds WHERE id = ? AND visit = ?",
                           (hold, visit)).fetchone() is None:
            raise UnknownHold(hold)
        raise HoldReleased(hold)

    def on_hold(self, visit: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM holds WHERE visit = ? AND released_at IS NULL LIMIT 1",
            (visit,)).fetchone() is not None

    def expired(self, retention_days: float, now: float) -> list[str]:
        """Finished recordings that ended more than ``retention_days`` ago, not on hold."""
        cutoff = now - float(retention_days) * DAY_S
        rows = self.db.execute(
            "SELECT r.visit FROM recordings r WHERE r.state IN ('sealed', 'recovered') "
            "AND COALESCE(r.ends_at, r.sealed_at, r.created_at) < ? "
            f"AND NOT EXISTS ({_ACTIVE_HOLD}) ORDER BY r.ends_at, r.visit", (cutoff,)).fetchall()
        return [r[0] for r in rows]

    def mark_deleted(self, visit: str, now: float) -> bool:
        """Record the deletion. Refused (False) for a live, already deleted or held one."""
        cursor = self.db.execute(
            "UPDATE recordings SET state = 'deleted', deleted_at = ? "
            "WHERE visit = ? AND state IN ('sealed', 'recovered') AND NOT EXISTS "
            "(SELECT 1 FROM holds h WHERE h.visit = recordings.visit "
            "AND h.released_at IS NULL)", (now, visit))
        return cursor.rowcount == 1
