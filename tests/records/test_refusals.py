"""records.refusals on a real database: sources, the bound on sources held, windows."""

from __future__ import annotations

from pathlib import Path

from records.audit import AuditLog, verify
from records.refusals import RefusalAudit, RefusalLimits, client_source, networks
from records.store import connect

LOOPBACK = networks(["127.0.0.1", "::1"])


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    assert client_source("198.51.100.9", "1.2.3.4", LOOPBACK) == "198.51.100.9"
    assert client_source("127.0.0.1", "1.2.3.4, 203.0.113.5", LOOPBACK) == "203.0.113.5"
    assert client_source("127.0.0.1", "203.0.113.5, 127.0.0.1", LOOPBACK) == "203.0.113.5"
    assert client_source("127.0.0.1", "", LOOPBACK) == "127.0.0.1"
    assert client_source("127.0.0.1", "x" * 5000, LOOPBACK) == "invalid"
    assert client_source(None, "", LOOPBACK) == "invalid"


def test_windows_count_and_sources_beyond_the_bound_share_one(database: Path | str) -> None:
    db = connect(database)
    audit = AuditLog(db)
    now = [1000.0]
    refusals = RefusalAudit(audit, RefusalLimits(window_s=10, max_sources=2,
                                                 max_field_chars=20), clock=lambda: now[0])
    for i in range(5):  # five sources, three refusals each
        for _ in range(3):
            refusals.anonymous(source=f"10.0.0.{i}", action="api", code="malformed",
                               request="GET /" + "a" * 100)
    rows = audit.entries()
    assert [(r["detail"]["source"], r["detail"]["count"]) for r in rows] == [
        ("10.0.0.0", 1), ("10.0.0.1", 1), ("*", 1)]
    assert rows[0]["detail"]["request"] == "GET /" + "a" * 12 + "..."
    now[0] += 10  # the windows close at the next refusal
    refusals.anonymous(source="10.0.0.0", action="api", code="malformed")
    assert [(r["detail"]["source"], r["detail"]["count"]) for r in audit.entries()[3:]] == [
        ("10.0.0.0", 2), ("10.0.0.1", 2), ("*", 8)]
    refusals.close()  # the refusal that found the window closed opened the next one
    assert [(r["detail"]["source"], r["detail"]["count"]) for r in audit.entries()[6:]] == [
        ("10.0.0.0", 1)]
    assert all(r["visit"] is None for r in audit.entries()) and verify(db).ok
