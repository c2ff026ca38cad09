"""The database schema, in one place: an ordered list of migrations applied at start-up.

``records.store.connect`` calls :func:`migrate`, which applies each migration not yet
applied in its own transaction and records it in ``schema_migrations`` (``version``,
``applied_at`` in unix seconds) in that same transaction, so a failing migration leaves
the database and its version as they were. Several workers may start at once: the write
lock taken before the version is read makes the second one find the work done.

Adding a migration: append ``Migration(<last version + 1>, "<what and why>", (...))``
to ``MIGRATIONS``, one SQL statement per string, plus a test that upgrades a database
from the version before. Never edit, renumber or remove a migration that has shipped:
databases in the field have applied it and will not run it again. Keep statements plain
SQL (types TEXT, INTEGER, REAL; no SQLite-only syntax where a portable form exists):
PostgreSQL applies this same list, with its own column types (``records.dialect``).
Where no portable form exists (triggers, JSON functions) a statement is a
``records.dialect.Variants`` pair, written once for each.

Releases before this list had no migrations: each module ran ``CREATE ... IF NOT
EXISTS`` for its own tables. Migration 1 is exactly those statements, so a database from
such a release (its tables present, no version recorded) is adopted as version 1:
applying migration 1 to it creates only what is missing and keeps every row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from records.dialect import Connection, Variants, ddl, tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str | Variants, ...]


# PostgreSQL's triggers call a function; this one refuses the change with its argument.
_REFUSE_FUNCTION = """CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$"""


def _refusing(name: str, event: str, table: str, message: str, *,
              if_not_exists: bool = True) -> Variants:
    """A trigger that refuses every ``event`` on ``table`` with ``message``, in both
    dialects (in PostgreSQL an append-only table also refuses TRUNCATE, which has no
    SQLite counterpart). ``if_not_exists``: as migration 1 wrote it, for the tables of
    releases before migrations."""
    guard = "IF NOT EXISTS " if if_not_exists else ""
    sqlite = (f"CREATE TRIGGER {guard}{name} BEFORE {event} ON {table}\n"
              f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    truncate = (f";\nCREATE OR REPLACE TRIGGER {name}_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('{message}')"
                if event == "DELETE" else "")
    return Variants(sqlite, (
        f"{_REFUSE_FUNCTION};\nCREATE OR REPLACE TRIGGER {name} BEFORE {event} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION refuse_change('{message}'){truncate}"))


VERSIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the schema of the releases before migrations", (
        # The visits ledger and revocations (records.store).
        """CREATE TABLE IF NOT EXISTS visits (
    id TEXT PRIMARY KEY,
    starts_at REAL, ends_at REAL, privileged INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, cause TEXT, reason TEXT NOT NULL DEFAULT '',
    started_at REAL, ended_at REAL, updated_at REAL NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS participants (
    visit TEXT NOT NULL, sub TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0, first_joined_at REAL, last_left_at REAL,
    PRIMARY KEY (visit, sub)
)""",
        """CREATE TABLE IF NOT EXISTS revocations (
    visit TEXT NOT NULL, sub TEXT NOT NULL, at REAL NOT NULL, by TEXT NOT NULL,
    PRIMARY KEY (visit, sub)
)""",
        # The audit log (records.audit): append-only, and its head only moves forward.
        """CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    visit TEXT,
    subject TEXT,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS audit_visit ON audit (visit, seq)",
        _refusing("audit_no_update", "UPDATE", "audit", "audit log is append-only: UPDATE refused"),
        _refusing("audit_no_delete", "DELETE", "audit", "audit log is append-only: DELETE refused"),
        """CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
)""",
        _refusing("audit_head_no_delete", "DELETE", "audit_head", "audit head cannot be deleted"),
        Variants(
            """CREATE TRIGGER IF NOT EXISTS audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.seq != OLD.seq + 1
  OR NEW.hash IS NOT (SELECT hash FROM audit WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit head only advances to the newest entry'); END""",
            """CREATE OR REPLACE FUNCTION audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN
  IF NEW.seq != OLD.seq + 1
     OR NEW.hash IS DISTINCT FROM (SELECT hash FROM audit WHERE seq = NEW.seq) THEN
    RAISE EXCEPTION 'audit head only advances to the newest entry';
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only()"""),
        # The webhook outbox (records.webhooks).
        """CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    delivered_at REAL
)""",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL",
        # The recordings index and legal holds (records.archive).
        """CREATE TABLE IF NOT EXISTS recordings (
    visit TEXT PRIMARY KEY,
    inmate TEXT,
    inmate_name TEXT,
    visitors_json TEXT NOT NULL DEFAULT '[]',
    starts_at REAL,
    ends_at REAL,
    state TEXT NOT NULL DEFAULT 'recording'
        CHECK (state IN ('recording', 'sealed', 'recovered', 'deleted')),
    seal TEXT,
    bytes INTEGER,
    seconds REAL,
    finals_json TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    sealed_at REAL,
    deleted_at REAL
)""",
        "CREATE INDEX IF NOT EXISTS recordings_starts ON recordings (starts_at)",
        """CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    visit TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    placed_at REAL NOT NULL,
    released_by TEXT,
    released_at REAL
)""",
        "CREATE INDEX IF NOT EXISTS holds_visit ON holds (visit, released_at)",
    )),
    Migration(2, "webhook dead letters, so one rejected event cannot block the rest, and "
                 "an index to prune delivered events by age", (
        "ALTER TABLE outbox ADD COLUMN rejections INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE outbox ADD COLUMN dead_at REAL",
        "DROP INDEX IF EXISTS outbox_pending",
        "CREATE INDEX outbox_pending ON outbox (seq) "
        "WHERE delivered_at IS NULL AND dead_at IS NULL",
        "CREATE INDEX outbox_delivered ON outbox (delivered_at) "
        "WHERE delivered_at IS NOT NULL",
    )),
    Migration(3, "time-stamped checkpoints of the audit head and of recording seals "
                 "(records.anchoring), append-only like the audit log", (
        """CREATE TABLE checkpoints (
    n INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    sig TEXT NOT NULL,
    token TEXT NOT NULL,
    token_time TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    created_at REAL NOT NULL
)""",
        """CREATE TABLE checkpoint_seals (
    visit TEXT NOT NULL,
    seal TEXT NOT NULL,
    n INTEGER NOT NULL REFERENCES checkpoints (n),
    PRIMARY KEY (visit, seal)
)""",
        _refusing("checkpoints_no_update", "UPDATE", "checkpoints",
                  "checkpoints are append-only: UPDATE refused", if_not_exists=False),
        _refusing("checkpoints_no_delete", "DELETE", "checkpoints",
                  "checkpoints are append-only: DELETE refused", if_not_exists=False),
    )),
    Migration(4, "recordings index repairs: the inmate of a recording that began before "
                 "they joined (earlier releases indexed the inmate only when their media "
                 "opened the recording), and lengths measured from the first recorded media "
                 "rather than the booked start (records.archive.recording_length; the "
                 "offsets are read with SQLite's JSON functions, as the search does)", (
        """UPDATE recordings SET
    inmate = (SELECT p.sub FROM participants p WHERE p.visit = recordings.visit
              AND p.role = 'inmate' ORDER BY p.first_joined_at LIMIT 1),
    inmate_name = (SELECT p.name FROM participants p WHERE p.visit = recordings.visit
                   AND p.role = 'inmate' ORDER BY p.first_joined_at LIMIT 1)
WHERE inmate IS NULL AND EXISTS (SELECT 1 FROM participants p
                                 WHERE p.visit = recordings.visit AND p.role = 'inmate')""",
        Variants(
            """UPDATE recordings SET seconds = seconds - (
    SELECT MIN(CASE WHEN f.type = 'object'
               THEN COALESCE(json_extract(f.value, '$.offset_s'), 0) ELSE 0 END)
    FROM json_each(recordings.finals_json) f)
WHERE seconds IS NOT NULL AND finals_json NOT IN ('', '{}')""",
            """UPDATE recordings SET seconds = seconds - (
    SELECT MIN(CASE WHEN jsonb_typeof(f.value) = 'object'
               THEN COALESCE((f.value ->> 'offset_s')::double precision, 0) ELSE 0 END)
    FROM jsonb_each(recordings.finals_json::jsonb) f)
WHERE seconds IS NOT NULL AND finals_json NOT IN ('', '{}')"""),
    )),
    Migration(5, "the reason a legal hold was released: each hold is released on its own, "
                 "for a stated reason (NULL for holds released before)", (
        "ALTER TABLE holds ADD COLUMN release_reason TEXT",
    )),
    Migration(6, "where a recording was archived in the write-once bucket: its objects and "
                 "their versions (NULL while it is on local disk only)", (
        "ALTER TABLE recordings ADD COLUMN bucket_json TEXT",
    )),
)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release; this one must not write to it."""


def version(db: Connection) -> int:
    """The last migration applied; 0 for an empty database or one from before migrations."""
    if "schema_migrations" not in tables(db):
        return 0
    return int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
               .fetchone()[0])


def migrate(db: Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the migrations not yet applied, each in its own transaction; returns the
    version reached. ``db`` must not be inside a transaction."""
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... in order")
    latest = migrations[-1].version if migrations else 0
    current = version(db)
    if current > latest:
        raise SchemaTooNew(f"the database is at schema version {current}, newer than the "
                           f"{latest} this release knows; use the release that wrote it")
    for migration in migrations[current:]:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(ddl(db, VERSIONS_TABLE))
            current = version(db)  # again under the write lock: another worker may be done
            if current < migration.version:
                if current == 0 and tables(db) - {"schema_migrations", "sqlite_sequence"}:
                    log.info("adopting a database from before schema migrations",
                             extra={"tables": sorted(tables(db))})
                for statement in migration.statements:
                    db.execute(ddl(db, statement))
                db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                           (migration.version, time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return version(db)

