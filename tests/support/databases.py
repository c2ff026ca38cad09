"""The records database on either backend, for tests: a fresh one, and its schema.

``database`` (tests/conftest.py) hands each test a fresh database on SQLite and again on
PostgreSQL (``tests.support.postgres``).
"""

from __future__ import annotations

from pathlib import Path

from records.dialect import Connection, Variants, dialect_of, pick
from tests.support.postgres import cluster

BACKENDS = ("sqlite", "postgresql")


def fresh(backend: str, folder: Path) -> Path | str:
    """Where a new, empty database of ``backend`` is: a file path or a URL."""
    return folder / "visitbridge.db" if backend == "sqlite" else cluster().new_database()


def schema(db: Connection) -> dict[str, str]:
    """Every table, index and trigger of the application, by name, with its definition."""
    if dialect_of(db) == "sqlite":
        return {name: sql for name, sql in db.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name != 'schema_migrations'")}
    found: dict[str, str] = {}
    for table, column, kind, nullable, default in db.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name != 'schema_migrations' ORDER BY table_name, ordinal_position"):
        found[table] = found.get(table, "") + f"{column} {kind} {nullable} {default};"
    for name, definition in db.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename != 'schema_migrations'"):
        found[name] = definition
    for name, definition in db.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal"):
        found[name] = definition
    return found


def drop_trigger(db: Connection, name: str, table: str) -> None:
    """What someone with write access to the database can do before editing a table its
    triggers protect."""
    db.execute(pick(db, Variants(f'DROP TRIGGER "{name}"', f'DROP TRIGGER "{name}" ON {table}')))


def triggers(db: Connection, table: str, event: str) -> list[str]:
    """The names of the triggers that run before ``event`` (``UPDATE``, ``DELETE``) on
    ``table``."""
    sql = pick(db, Variants(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? "
        "AND sql LIKE ?",
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = ?::regclass "
        "AND pg_get_triggerdef(oid) LIKE ? ORDER BY tgname"))
    return [row[0] for row in db.execute(sql, (table, f"%BEFORE {event}%"))]
