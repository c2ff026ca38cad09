"""SQLite or PostgreSQL: where the records' SQL differs between the two, in one place.

The records modules write SQLite's SQL (``?`` placeholders, ``BEGIN IMMEDIATE``) against
the connection :func:`open_database` returns. For a ``postgresql://`` URL that connection
is a thin wrapper over psycopg which translates the little that differs: placeholders,
the write lock (one transaction-scoped advisory lock stands for SQLite's single writer),
column types in DDL, and rows readable both by index and by name as ``sqlite3.Row``
are. What cannot be translated statement by statement (triggers, JSON functions) is a
:class:`Variants` pair, chosen with :func:`pick`.

psycopg (3) rather than asyncpg: every caller is synchronous (the event loop's thread,
the recorder's thread, command-line tools), as with ``sqlite3``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import pq

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
# Every failure either backend raises (a locked file, a lost server, a refused statement).
ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
# The key of the advisory lock that plays SQLite's write lock.
WRITE_LOCK = 0x76620001
# The key of the advisory lock held by the one process that delivers webhooks.
DELIVERY_LOCK = 0x76620002


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the records modules use of a connection; both backends provide it."""

    dialect: str
    in_transaction: bool

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> Any: ...


@dataclass(frozen=True)
class Variants:
    """One statement or fragment written once per dialect."""

    sqlite: str
    postgresql: str


def dialect_of(db: Connection | sqlite3.Connection) -> str:
    """A plain ``sqlite3`` connection (a tool's, a test's) counts as SQLite."""
    return getattr(db, "dialect", SQLITE)


def pick(db: Connection, text: str | Variants) -> str:
    if isinstance(text, str):
        return text
    return text.postgresql if dialect_of(db) == POSTGRESQL else text.sqlite


def ddl(db: Connection, statement: str | Variants) -> str:
    """A schema statement (a migration's) as this connection's database runs it."""
    sql = pick(db, statement)
    return postgres_ddl(sql) if dialect_of(db) == POSTGRESQL else sql


def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class SqliteConnection(sqlite3.Connection):
    dialect = SQLITE


def open_database(target: str | Path, *, readonly: bool = False) -> Connection:
    """An autocommit connection (explicit BEGIN where needed) with name-and-index rows."""
    if is_url(target):
        return PgConnection(str(target), readonly=readonly)
    path = Path(target)
    if readonly:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             isolation_level=None, factory=SqliteConnection)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, factory=SqliteConnection)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=5000")
    return db  # type: ignore[return-value]


def location(db: Connection) -> Path | str:
    """What :func:`open_database` needs to open the same database again (another thread's
    connection)."""
    if dialect_of(db) == POSTGRESQL:
        return db.url  # type: ignore[attr-defined, no-any-return]
    return Path(db.execute("PRAGMA database_list").fetchone()["file"])


def tables(db: Connection) -> set[str]:
    sql = pick(db, Variants(
        "SELECT name FROM sqlite_master WHERE type = 'table'",
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
    return {row[0] for row in db.execute(sql)}


def try_lock(db: Connection, key: int) -> bool:
    """Take a lock held until the connection ends, if no other connection holds it. Only
    PostgreSQL is shared by several servers; a SQLite file's processes coordinate
    themselves (one of them runs the once-only jobs)."""
    if dialect_of(db) != POSTGRESQL:
        return True
    return bool(db.execute(f"SELECT pg_try_advisory_lock({key})").fetchone()[0])


def json_array(db: Connection, column: str, alias: str) -> str:
    """A FROM item with one row per element of the JSON array in text ``column``; each
    element is ``<alias>.value``."""
    return pick(db, Variants(f"json_each({column}) {alias}",
                             f"jsonb_array_elements({column}::jsonb) {alias}"))


def json_text(db: Connection, value: str, key: str) -> str:
    """The text of member ``key`` of the JSON object ``value`` (an element above)."""
    return pick(db, Variants(f"json_extract({value}, '$.{key}')", f"({value} ->> '{key}')"))


# -- PostgreSQL ------------------------------------------------------------------------

_DDL = ((re.compile(r"\bINTEGER PRIMARY KEY( AUTOINCREMENT)?"),
         "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        (re.compile(r"\bINTEGER\b"), "BIGINT"),  # SQLite's integers are 64-bit
        (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"))  # PostgreSQL's REAL is 32-bit
_STATEMENTS = {"BEGIN IMMEDIATE": ("BEGIN", f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")}
_LITERAL_OR_MARK = re.compile(r"'(?:[^']|'')*'|\?|%")


def postgres_ddl(statement: str) -> str:
    """A SQLite ``CREATE TABLE`` or ``ALTER TABLE`` with PostgreSQL's column types."""
    if not statement.lstrip().upper().startswith(("CREATE TABLE", "ALTER TABLE")):
        return statement
    for pattern, replacement in _DDL:
        statement = pattern.sub(replacement, statement)
    return statement


def postgres_placeholders(sql: str) -> str:
    """``?`` to ``%s`` and ``%`` to ``%%``, outside string literals."""
    def mark(match: re.Match[str]) -> str:
        text = match.group(0)
        return {"?": "%s", "%": "%%"}.get(text, text)
    return _LITERAL_OR_MARK.sub(mark, sql)


class Row(tuple):  # type: ignore[type-arg]
    """A row read by index or by column name, and ``dict(row)``, like ``sqlite3.Row``."""

    columns: tuple[str, ...] = ()

    def keys(self) -> list[str]:
        return list(self.columns)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.columns.index(key))
        return tuple.__getitem__(self, key)


def _rows(cursor: Any) -> Any:
    names = tuple(c.name for c in cursor.description or ())

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row.columns = names
        return row
    return make


class PgConnection:
    """psycopg in autocommit mode, speaking the records modules' SQLite dialect."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        options = "-c default_transaction_read_only=on" if readonly else ""
        self._conn = psycopg.connect(url, autocommit=True, options=options,
                                     row_factory=_rows)

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> Any:
        statements = _STATEMENTS.get(sql.strip().upper())
        if statements:
            for statement in statements:
                cursor = self._conn.execute(statement)
            return cursor
        if args is None:
            return self._conn.execute(sql)
        return self._conn.execute(postgres_placeholders(sql), tuple(args))

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != pq.TransactionStatus.IDLE

    def commit(self) -> None:
        if self.in_transaction:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()
