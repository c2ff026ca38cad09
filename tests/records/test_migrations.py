"""Schema migrations: new databases, databases of the previous release, failed upgrades."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from records.archive import Archive
from records.audit import AuditLog, verify
from records.dialect import ERRORS, open_database, tables
from records.migrations import MIGRATIONS, Migration, SchemaTooNew, migrate, version
from records.store import Store, connect
from records.webhooks import Outbox
from tests.support.databases import schema

T0 = 1_760_000_000.0
TABLES = {"visits", "participants", "revocations", "audit", "audit_head", "outbox",
          "recordings", "holds"}

# A database written by the release before migrations (its own code made the tables and
# the rows: a visit, a participant, a revocation, two audit entries, a webhook in the
# outbox, a recording on hold), in rollback-journal mode. Releases before migrations
# knew only SQLite, so the tests of adopting such a database are SQLite's alone.
PREVIOUS_RELEASE = Path(__file__).parent / "previous_release.db"


def previous_release_database(path: Path) -> None:
    shutil.copyfile(PREVIOUS_RELEASE, path)


def test_a_new_database_gets_every_table_at_the_latest_version(database: Path | str) -> None:
    db = connect(database)
    assert TABLES <= set(schema(db))
    assert version(db) == MIGRATIONS[-1].version
    applied = db.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert [row[0] for row in applied] == [m.version for m in MIGRATIONS]
    assert all(row[1] > T0 for row in applied)
    # The classes work on it as they are.
    AuditLog(db).record(action="visit.monitor.start", actor="officer-7", role="officer",
                        now=T0)
    assert verify(db).ok and Outbox(db).depth() == 0


def test_migration_1_is_exactly_the_previous_release_schema(tmp_path: Path) -> None:
    old = sqlite3.connect(PREVIOUS_RELEASE)
    new = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    migrate(new, MIGRATIONS[:1])
    assert schema(new) == schema(old)


def test_a_previous_release_database_is_adopted_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "visitbridge.db"
    previous_release_database(path)
    before = sqlite3.connect(path)
    old_schema = schema(before)
    before.close()

    db = connect(path)
    assert version(db) == MIGRATIONS[-1].version
    assert db.execute("SELECT MIN(version) FROM schema_migrations").fetchone()[0] == 1
    # By migration 2 (webhook dead letters), 5 (the reason a hold was released) and 6
    # (where a recording was archived).
    changed_later = {"outbox", "outbox_pending", "holds", "recordings"}
    assert {k: v for k, v in schema(db).items() if k in old_schema.keys() - changed_later} \
        == {k: v for k, v in old_schema.items() if k not in changed_later}
    store = Store(db)
    visit = store.visit("v-1")
    assert visit is not None and visit.state == "ended" and visit.reason == "over"
    assert store.participants("v-1")[0]["name"] == "Ana Família"
    assert store.revoked("v-1", "family-9")
    result = verify(db)
    assert result.ok and result.checked == 2
    assert AuditLog(db).entries()[1]["detail"] == {"files": 4}
    assert Outbox(db).depth() == 1
    archive = Archive(db)
    recording = archive.get("v-1")
    assert recording is not None and recording["inmate_name"] == "Inmate One"
    assert recording["bucket"] is None  # on local disk, as before the archive existed
    assert archive.on_hold("v-1")
    # And the log continues where it stopped.
    assert AuditLog(db).record(action="recording.replay", actor="compliance-2",
                               role="compliance", now=T0 + 300, visit="v-1") == 3
    assert verify(db).ok


def test_migration_2_keeps_pending_webhooks_and_lets_them_be_dead_lettered(
        database: Path | str) -> None:
    db = open_database(database)
    migrate(db, MIGRATIONS[:1])
    db.execute("INSERT INTO outbox (id, type, created_at, body, next_attempt_at) "
               "VALUES ('e1', 'visit.started', ?, '{}', ?), ('e2', 'visit.ended', ?, '{}', ?)",
               (T0, T0, T0, T0))
    assert migrate(db, MIGRATIONS[:2]) == 2
    outbox = Outbox(db)
    event = outbox.next_pending()
    assert event is not None and (event.id, event.rejections) == ("e1", 0)
    outbox.mark_dead("e1", "HTTP 400 Bad Request", T0 + 1)
    event = outbox.next_pending()
    assert event is not None and event.id == "e2" and outbox.depth() == 1


def test_migrations_4_and_5_repair_the_recordings_index_of_a_version_2_database(
        database: Path | str) -> None:
    db = open_database(database)
    migrate(db, MIGRATIONS[:2])
    # As version 2 left them: the family's media opened both recordings, so neither
    # knows its inmate; lengths counted from the booked start (the first media 95 s in).
    for participant in [("v-late", "family-9", "Casey Reyes", "family", T0 + 90),
                        ("v-late", "inmate-41", "Jordan Reyes", "inmate", T0 + 120),
                        ("v-alone", "family-3", "Ana Silva", "family", T0)]:
        db.execute("INSERT INTO participants (visit, sub, name, role, first_joined_at) "
                   "VALUES (?,?,?,?,?)", participant)
    finals = json.dumps({"family-9": {"path": "final/family-9.webm", "offset_s": 95.0},
                         "inmate-41": {"path": "final/inmate-41.webm", "offset_s": 121.5}})
    db.execute("INSERT INTO recordings (visit, visitors_json, starts_at, state, seconds, "
               "finals_json, created_at) VALUES ('v-late', ?, ?, 'sealed', 1300.0, ?, ?)",
               ('[{"sub": "family-9", "name": "Casey Reyes"}]', T0, finals, T0))
    db.execute("INSERT INTO recordings (visit, starts_at, state, seconds, finals_json, "
               "created_at) VALUES ('v-alone', ?, 'sealed', 60.0, ?, ?)",
               (T0, '{"family-3": "final/family-3.webm"}', T0))
    db.execute("INSERT INTO holds (visit, placed_by, reason, placed_at, released_by, "
               "released_at) VALUES ('v-late', 'c-1', 'case 9', ?, 'c-1', ?)", (T0, T0 + 9))

    assert migrate(db) == MIGRATIONS[-1].version
    archive = Archive(db)
    assert [r["visit"] for r in archive.search(inmate="jordan")] == ["v-late"]
    late, alone = archive.get("v-late"), archive.get("v-alone")
    assert late is not None and alone is not None
    assert (late["inmate"], late["inmate_name"], late["seconds"]) == (
        "inmate-41", "Jordan Reyes", 1205.0)
    # No inmate ever joined: nothing to repair; a file at offset 0 keeps its length.
    assert (alone["inmate"], alone["seconds"]) == (None, 60.0)
    assert [h["release_reason"] for h in archive.holds("v-late")] == [None]


def test_a_partial_previous_release_database_gets_its_missing_tables(tmp_path: Path) -> None:
    # A file that only ever held the audit log (the audit tables alone).
    path = tmp_path / "audit-only.db"
    previous_release_database(path)
    old = sqlite3.connect(path, isolation_level=None)
    for table in TABLES - {"audit", "audit_head"}:
        old.execute(f"DROP TABLE {table}")
    old.close()

    db = connect(path)
    assert TABLES <= set(schema(db))
    assert verify(db).ok and verify(db).checked == 2


def test_migrating_twice_changes_nothing(database: Path | str) -> None:
    db = connect(database)
    applied = db.execute("SELECT * FROM schema_migrations").fetchall()
    before = schema(db)
    assert migrate(db) == MIGRATIONS[-1].version
    assert db.execute("SELECT * FROM schema_migrations").fetchall() == applied
    assert schema(db) == before
    db.close()
    assert version(connect(database)) == MIGRATIONS[-1].version


def test_migrating_twice_writes_nothing(database: Path | str) -> None:
    """Every start migrates; on an up-to-date database that only reads: it works through a
    session that refuses every write, and runs nothing but SELECTs (as far as SQLite's
    statement trace shows; a read-only SQLite file lets a no-op write through)."""
    connect(database).close()
    db = open_database(database, readonly=True)
    statements: list[str] = []
    if isinstance(db, sqlite3.Connection):
        db.set_trace_callback(statements.append)
    try:
        assert migrate(db) == MIGRATIONS[-1].version
    finally:
        db.close()
    assert not [s for s in statements if not s.lstrip().upper().startswith("SELECT")]


def test_a_failing_migration_rolls_back_and_keeps_the_version(database: Path | str) -> None:
    db = connect(database)
    Store(db).save_visit("v-1", T0, state="waiting")
    before = schema(db)
    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "half right", (
        "ALTER TABLE visits ADD COLUMN room TEXT",
        "UPDATE visits SET room = 'A'",
        "ALTER TABLE no_such_table ADD COLUMN x TEXT",
    )))
    with pytest.raises(ERRORS, match="no_such_table"):
        migrate(db, broken)
    assert not db.in_transaction
    assert version(db) == MIGRATIONS[-1].version
    assert schema(db) == before  # the column added before the failure is gone
    assert Store(db).visit("v-1") is not None

    fixed = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "room", (
        "ALTER TABLE visits ADD COLUMN room TEXT",
        "UPDATE visits SET room = 'A'",
    )))
    assert migrate(db, fixed) == len(MIGRATIONS) + 1
    assert [tuple(row) for row in db.execute("SELECT room FROM visits")] == [("A",)]


def test_a_first_migration_that_fails_leaves_an_empty_database(database: Path | str) -> None:
    db = open_database(database)
    broken = (Migration(1, "broken", ("CREATE TABLE t (x INTEGER)", "SELECT * FROM nowhere")),)
    with pytest.raises(ERRORS):
        migrate(db, broken)
    assert version(db) == 0
    assert tables(db) == set()


def test_a_database_from_a_newer_release_is_refused(database: Path | str) -> None:
    db = connect(database)
    db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (len(MIGRATIONS) + 1, T0))
    with pytest.raises(SchemaTooNew):
        migrate(db)

