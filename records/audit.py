"""Append-only, hash-chained audit log: who did what, when, to which visit, and why.

Prisons must be able to prove every officer action, every monitoring start and stop,
every refused attempt and every replay, export or delete. Each row carries the SHA-256
of its own content plus the previous row's hash, so editing, deleting, reordering or
reinserting a row breaks the chain. Triggers refuse UPDATE and DELETE outright, which
stops mistakes and casual edits; the chain is what catches someone with write access to
the file who drops the triggers first.

Cutting off the newest rows leaves a chain that is still valid, so the head (last seq
and hash) is also kept in the one-row table ``audit_head``, written in the same
transaction, and ``verify`` compares the two. An attacker who truncates the log and
also rewrites the head still goes unnoticed by ``verify``, which checks the file
against itself only: ``records.anchoring`` copies the head into checkpoints time-stamped
by an authority outside the server, which ``visitbridge audit verify`` also checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from records.chain import GENESIS, Chain, canonical
from records.dialect import ERRORS, Connection, open_database

COLUMNS = ("seq", "ts", "action", "actor", "role", "visit", "subject", "reason", "outcome",
           "detail", "prev_hash", "hash")
# An entry's hash covers every other column (``detail`` as its canonical JSON text), in
# Python's canonical JSON; see records.chain.
CHAIN = Chain(prev="prev_hash", unhashed=("hash",), jq=False)
entry_hash = CHAIN.entry_hash


def _check_no_token(value: Any) -> None:
    """Refuse bearer tokens in ``detail``: an audit log is read by many and kept for years."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            name = str(key).lower()
            if name == "token" or name.endswith("_token"):
                raise ValueError(f"audit detail must not contain a token (key {key!r})")
            _check_no_token(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            _check_no_token(inner)


class AuditLog:
    """Writes entries to a connection from ``records.store.connect`` (which creates the
    tables); the caller uses it from one thread (the event loop's)."""

    def __init__(self, db: Connection) -> None:
        self._db = db
        # Only a brand-new log gets a genesis head; a missing head on a log with entries
        # is left missing so that verify reports it. Nodes sharing a database may write
        # it at the same moment: the later one finds the head there and goes on.
        db.execute("INSERT INTO audit_head (id, seq, hash) SELECT 1, 0, ? "
                   "WHERE NOT EXISTS (SELECT 1 FROM audit)"
                   " AND NOT EXISTS (SELECT 1 FROM audit_head)"
                   " ON CONFLICT (id) DO NOTHING", (GENESIS,))
        db.commit()

    def record(self, *, action: str, actor: str, role: str, now: float,
               visit: str | None = None, subject: str | None = None, reason: str = "",
               outcome: str = "ok", detail: Mapping[str, Any] | None = None) -> int:
        """Append one entry and commit; returns its seq."""
        _check_no_token(detail or {})
        detail_text = canonical(dict(detail or {}))
        db = self._db
        # IMMEDIATE takes the write lock before reading the last hash, so another
        # writer (a CLI export in a second process) cannot fork the chain.
        db.execute("BEGIN IMMEDIATE")
        try:
            last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
            fields: dict[str, Any] = {
                "seq": seq, "ts": float(now), "action": action, "actor": actor, "role": role,
                "visit": visit, "subject": subject, "reason": reason, "outcome": outcome,
                "detail": detail_text, "prev_hash": prev_hash,
            }
            fields["hash"] = entry_hash(fields)
            db.execute(f"INSERT INTO audit ({','.join(COLUMNS)}) "
                       f"VALUES ({','.join('?' * len(COLUMNS))})",
                       [fields[c] for c in COLUMNS])
            db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                       (seq, fields["hash"]))
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return seq

    def entries(self, *, visit: str | None = None, action: str | None = None,
                limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` matching entries, oldest first, with ``detail`` decoded."""
        where, args = [], []
        if visit is not None:
            where.append("visit = ?")
            args.append(visit)
        if action is not None:
            where.append("action = ?")
            args.append(action)
        sql = f"SELECT {','.join(COLUMNS)} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit]).fetchall()
        result = []
        for row in reversed(rows):
            entry = dict(zip(COLUMNS, tuple(row), strict=True))
            entry["detail"] = json.loads(entry["detail"])
            result.append(entry)
        return result


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str


def verify(db: Connection) -> Verification:
    """Re-walk the whole chain and compare its end with the stored head."""
    try:
        head = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        rows = db.execute(f"SELECT {','.join(COLUMNS)} FROM audit ORDER BY seq")
    except ERRORS as exc:
        return Verification(False, 0, None, f"No audit log in this database ({exc}).")
    checked, expected, prev_hash = 0, 1, GENESIS
    for row in rows:
        fields = dict(zip(COLUMNS, tuple(row), strict=True))
        seq = fields["seq"]
        if seq != expected:
            return Verification(False, checked, expected,
                                f"Entry {expected} is missing: the log jumps from "
                                f"{expected - 1} to {seq}.")
        link = CHAIN.check(fields, prev_hash)
        if not link.follows:
            return Verification(False, checked, seq,
                                f"Entry {seq} does not follow entry {seq - 1}: its prev_hash "
                                "does not match that entry's hash.")
        if not link.intact:
            return Verification(False, checked, seq,
                                f"Entry {seq} was altered: its content does not match its "
                                "hash.")
        checked, expected, prev_hash = checked + 1, seq + 1, fields["hash"]
    last = expected - 1
    if head is None:
        return Verification(False, checked, last + 1 if checked else None,
                            "The audit head is missing, so removed trailing entries "
                            "cannot be ruled out.")
    head_seq, head_hash = head[0], head[1]
    if head_seq > last:
        return Verification(False, checked, last + 1,
                            f"Entries {last + 1} to {head_seq} were removed: the log ends at "
                            f"entry {last} but its head records entry {head_seq}.")
    if head_seq < last:
        return Verification(False, checked, head_seq + 1,
                            f"Entry {head_seq + 1} onwards is not covered by the head, which "
                            f"records entry {head_seq}.")
    if head_hash != prev_hash:
        return Verification(False, checked, last or None,
                            f"Entry {last} does not match the hash recorded in the head.")
    return Verification(True, checked, None, f"All {checked} entries verify.")


def verify_file(target: Path | str) -> Verification:
    """Verify a log without any chance of writing to it (a read-only connection)."""
    if isinstance(target, Path) and not target.is_file():
        return Verification(False, 0, None, f"No database file at {target}.")
    try:
        db = open_database(target, readonly=True)
    except ERRORS as exc:  # a database server that is down, or no such database on it
        return Verification(False, 0, None, f"Cannot open the database: {exc}")
    try:
        return verify(db)
    finally:
        db.close()
