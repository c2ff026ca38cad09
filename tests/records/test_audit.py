"""The audit log: entries chain, SQL edits are refused, and tampering with the database
shows (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from records.audit import AuditLog, entry_hash, verify, verify_file
from records.chain import GENESIS
from records.dialect import ERRORS, dialect_of, open_database
from records.store import connect
from tests.support.databases import drop_trigger

T0 = 1_760_000_000.0


@pytest.fixture
def log_path(database: Path | str) -> Iterator[Path | str]:
    """A log with five entries, written the way the server would."""
    path = database
    db = connect(path)
    log = AuditLog(db)
    log.record(action="visit.monitor.start", actor="officer-7", role="officer", now=T0,
               visit="v-1", reason="routine")
    log.record(action="participant.mute", actor="officer-7", role="officer", now=T0 + 5,
               visit="v-1", subject="family-3", reason="showing a document to the camera")
    log.record(action="join.refused", actor="family-9", role="family", now=T0 + 9,
               visit="v-1", outcome="refused", detail={"code": "token_expired"})
    log.record(action="visit.monitor.stop", actor="officer-7", role="officer", now=T0 + 60,
               visit="v-1")
    log.record(action="recording.export", actor="compliance-2", role="compliance",
               now=T0 + 3600, visit="v-1", reason="subpoena 2025-113",
               detail={"files": 4, "ü": "non-ascii kept"})
    db.close()
    yield path


def tamper(path: Path | str, *statements: str) -> None:
    """What someone with write access to the database can do: drop the triggers, then
    edit."""
    db = open_database(path)
    for trigger in ("audit_no_update", "audit_no_delete"):
        drop_trigger(db, trigger, "audit")
    for sql in statements:
        db.execute(sql)
    db.close()


def test_a_chain_of_entries_verifies_and_reads_back_in_order(log_path: Path | str) -> None:
    result = verify_file(log_path)
    assert result.ok, result.problem
    assert result.checked == 5
    assert result.first_bad_seq is None

    db = open_database(log_path)
    entries = AuditLog(db).entries(visit="v-1")
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[1]["subject"] == "family-3"
    assert entries[1]["reason"] == "showing a document to the camera"
    assert entries[2]["outcome"] == "refused"
    assert entries[2]["detail"] == {"code": "token_expired"}
    assert entries[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))


def test_entries_filter_by_action_and_keep_the_newest_when_limited(
        log_path: Path | str) -> None:
    db = open_database(log_path)
    log = AuditLog(db)
    assert [e["action"] for e in log.entries(action="join.refused")] == ["join.refused"]
    assert [e["seq"] for e in log.entries(limit=2)] == [4, 5]
    assert log.entries(visit="v-other") == []


def test_appending_after_reopening_continues_the_chain(log_path: Path | str) -> None:
    db = open_database(log_path)
    seq = AuditLog(db).record(action="recording.delete", actor="compliance-2",
                              role="compliance", now=T0 + 7200, visit="v-1",
                              reason="retention period over")
    db.close()
    assert seq == 6
    result = verify_file(log_path)
    assert result.ok and result.checked == 6


def test_update_and_delete_through_sql_are_refused(log_path: Path | str) -> None:
    db = open_database(log_path)
    with pytest.raises(ERRORS, match="append-only"):
        db.execute("UPDATE audit SET reason = 'nothing to see' WHERE seq = 2")
    with pytest.raises(ERRORS, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 5")
    with pytest.raises(ERRORS, match="only advances"):
        db.execute("UPDATE audit_head SET seq = 4")
    db.close()
    assert verify_file(log_path).ok


def test_an_edited_reason_is_detected(log_path: Path | str) -> None:
    tamper(log_path, "UPDATE audit SET reason = 'routine' WHERE seq = 2")
    result = verify_file(log_path)
    assert not result.ok
    assert result.first_bad_seq == 2
    assert "Entry 2" in result.problem


# The last entry's deletion (a truncated tail) is found through the head.
@pytest.mark.parametrize(("seq", "problem"), [(3, "Entry 3 is missing"), (5, "removed")],
                         ids=["middle", "tail"])
def test_a_deleted_entry_is_detected(log_path: Path | str, seq: int, problem: str) -> None:
    tamper(log_path, f"DELETE FROM audit WHERE seq = {seq}")
    result = verify_file(log_path)
    assert not result.ok
    assert result.first_bad_seq == seq
    assert result.checked == seq - 1
    assert problem in result.problem


def test_a_deleted_middle_entry_with_later_seqs_renumbered_is_detected(
        log_path: Path | str) -> None:
    tamper(log_path, "DELETE FROM audit WHERE seq = 3",
           "UPDATE audit SET seq = seq - 1 WHERE seq > 3")
    result = verify_file(log_path)
    assert not result.ok
    assert result.first_bad_seq == 3


def test_two_swapped_entries_are_detected(log_path: Path | str) -> None:
    columns = "ts, action, actor, role, visit, subject, reason, outcome, detail, prev_hash, hash"
    tamper(log_path,
           f"CREATE TEMP TABLE keep AS SELECT {columns} FROM audit WHERE seq = 2",
           f"UPDATE audit SET ({columns}) = (SELECT {columns} FROM audit WHERE seq = 4) "
           "WHERE seq = 2",
           f"UPDATE audit SET ({columns}) = (SELECT {columns} FROM keep) WHERE seq = 4")
    result = verify_file(log_path)
    assert not result.ok
    assert result.first_bad_seq == 2


def test_a_row_with_a_forged_prev_hash_and_a_recomputed_hash_is_detected(
        log_path: Path | str) -> None:
    db = open_database(log_path)
    row = dict(db.execute("SELECT * FROM audit WHERE seq = 3").fetchone())
    db.close()
    row["prev_hash"] = "f" * 64
    row["hash"] = entry_hash(row)
    tamper(log_path, f"UPDATE audit SET prev_hash = '{row['prev_hash']}', "
                     f"hash = '{row['hash']}' WHERE seq = 3")
    result = verify_file(log_path)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "does not follow entry 2" in result.problem


def test_a_fresh_empty_log_verifies(database: Path | str) -> None:
    path = database
    db = connect(path)
    AuditLog(db)
    assert verify(db).ok
    db.close()
    result = verify_file(path)
    assert result.ok and result.checked == 0


def test_two_servers_opening_a_new_log_at_once_both_start(database: Path | str) -> None:
    """Nodes sharing one database start side by side: the second to write the genesis
    head finds it written by the first, and starts instead of failing."""
    first = connect(database)
    first.execute("BEGIN")  # the first node's genesis, written but not yet committed
    first.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", (GENESIS,))
    with ThreadPoolExecutor(1) as pool:
        opened = pool.submit(lambda: AuditLog(connect(database)))
        if dialect_of(first) == "postgresql":  # the second waits on the first's row
            watcher = open_database(database)
            while not watcher.execute("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE wait_event_type = 'Lock'").fetchone()[0]:
                time.sleep(0.05)
            watcher.close()
        else:
            time.sleep(0.3)
        first.execute("COMMIT")
        opened.result(timeout=10)
    assert verify(first).ok
    first.close()


def test_a_database_without_an_audit_log_does_not_verify(database: Path | str) -> None:
    db = open_database(database)
    db.execute("CREATE TABLE visits (id TEXT)")
    db.close()
    assert not verify_file(database).ok


def test_a_database_that_is_not_there_does_not_verify(database: Path | str) -> None:
    """A mistyped file or database name is reported, not a crash."""
    absent = (f"{database.rpartition('?')[0]}_absent?{database.rpartition('?')[2]}"
              if isinstance(database, str) else database.with_name("absent.db"))
    result = verify_file(absent)
    assert not result.ok and "absent" in result.problem


@pytest.mark.parametrize("detail", [
    {"token": "eyJhbGciOiJFZERTQSJ9.e30.sig"},
    {"request": {"access_token": "eyJ..."}},
])
def test_a_detail_carrying_a_token_is_refused_and_nothing_is_written(
        database: Path | str, detail: dict[str, object]) -> None:
    db = connect(database)
    log = AuditLog(db)
    with pytest.raises(ValueError, match="token"):
        log.record(action="join.refused", actor="family-9", role="family", now=T0,
                   detail=detail)
    assert log.entries() == []
    assert verify(db).ok
