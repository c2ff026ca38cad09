"""What must outlive the process, in one database: visits seen, the ledger, revocations.

The audit log, the webhook outbox and the recordings index keep their tables in the same
database; :func:`connect` brings its schema up to date (``records.migrations``) before
anyone uses it. The database is a SQLite file in WAL mode by default, or PostgreSQL
(``records.dialect``); writes are small, so they run on the event loop's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from records.dialect import Connection, open_database
from records.migrations import migrate


def connect(target: Path | str) -> Connection:
    """Open the database (a SQLite file, created if needed, or a ``postgresql://`` URL),
    migrated to the latest schema."""
    db = open_database(target)
    migrate(db)
    return db


def dicts(db: Connection, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    """Every row of a query as a plain dict, ready to answer in JSON."""
    return [dict(row) for row in db.execute(sql, args).fetchall()]


@dataclass(frozen=True)
class VisitRow:
    id: str
    starts_at: float | None
    ends_at: float | None
    privileged: bool
    state: str
    cause: str | None
    reason: str
    started_at: float | None
    ended_at: float | None


class Store:
    def __init__(self, db: Connection) -> None:
        self.db = db

    def visit(self, visit_id: str) -> VisitRow | None:
        row = self.db.execute("SELECT * FROM visits WHERE id = ?", (visit_id,)).fetchone()
        if row is None:
            return None
        return VisitRow(row["id"], row["starts_at"], row["ends_at"], bool(row["privileged"]),
                        row["state"], row["cause"], row["reason"], row["started_at"],
                        row["ended_at"])

    def save_visit(self, visit_id: str, now: float, *, state: str,
                   starts_at: float | None = None, ends_at: float | None = None,
                   privileged: bool | None = None, cause: str | None = None,
                   reason: str | None = None, started_at: float | None = None,
                   ended_at: float | None = None) -> None:
        """Insert or update; ``None`` leaves a column as it was."""
        self.db.execute(
            "INSERT INTO visits (id, starts_at, ends_at, privileged, state, cause, reason, "
            "started_at, ended_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET "
            "starts_at = COALESCE(excluded.starts_at, visits.starts_at), "
            "ends_at = COALESCE(excluded.ends_at, visits.ends_at), "
            "privileged = CASE WHEN ? THEN visits.privileged ELSE excluded.privileged END, "
            "state = excluded.state, cause = COALESCE(excluded.cause, visits.cause), "
            "reason = CASE WHEN ? THEN visits.reason ELSE excluded.reason END, "
            "started_at = COALESCE(visits.started_at, excluded.started_at), "
            "ended_at = COALESCE(excluded.ended_at, visits.ended_at), "
            "updated_at = excluded.updated_at",
            (visit_id, starts_at, ends_at, int(bool(privileged)), state, cause, reason or "",
             started_at, ended_at, now, privileged is None, reason is None))

    def open_visits(self) -> list[VisitRow]:
        ids = [r["id"] for r in self.db.execute(
            "SELECT id FROM visits WHERE state IN ('waiting', 'live')").fetchall()]
        return [row for row in (self.visit(i) for i in ids) if row is not None]

    def participant_seen(self, visit_id: str, sub: str, name: str, role: str,
                         now: float) -> None:
        self.db.execute(
            "INSERT INTO participants (visit, sub, name, role, first_joined_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(visit, sub) DO UPDATE SET name = excluded.name",
            (visit_id, sub, name, role, now))

    def add_seconds(self, visit_id: str, sub: str, seconds: float, now: float) -> None:
        self.db.execute(
            "UPDATE participants SET seconds = seconds + ?, last_left_at = ? "
            "WHERE visit = ? AND sub = ?", (seconds, now, visit_id, sub))

    def participants(self, visit_id: str) -> list[dict[str, Any]]:
        return dicts(self.db, "SELECT sub, name, role, seconds FROM participants "
                     "WHERE visit = ? ORDER BY first_joined_at", (visit_id,))

    def revoke(self, visit_id: str, sub: str, by: str, now: float) -> None:
        self.db.execute("INSERT INTO revocations (visit, sub, at, by) VALUES (?,?,?,?) "
                        "ON CONFLICT DO NOTHING", (visit_id, sub, now, by))

    def revoked(self, visit_id: str, sub: str) -> bool:
        return self.db.execute("SELECT 1 FROM revocations WHERE visit = ? AND sub = ?",
                               (visit_id, sub)).fetchone() is not None
