"""The audit log's hash rule, pinned: logs already on disk must keep verifying."""

from __future__ import annotations

from records.audit import canonical, entry_hash

# An entry as the audit log stores it. The hash below was computed by the release that
# first wrote audit logs; a change to the canonical form or the hashed fields breaks it.
ENTRY = {
    "seq": 2, "ts": 1760000005.0, "action": "participant.mute", "actor": "officer-7",
    "role": "officer", "visit": "v-1", "subject": "família-3", "reason": "del \x7f and ü",
    "outcome": "ok", "detail": '{"n":2.0,"x":0.5,"ü":"ok"}', "prev_hash": "ef" * 32,
}
HASH = "5e600e4a1e4e6c6d2a076d65b70491b71dd9d6aa38382679f51388980eaeab53"


def test_a_known_audit_entry_keeps_its_hash() -> None:
    assert entry_hash(ENTRY) == HASH
    assert entry_hash({**ENTRY, "hash": HASH}) == HASH  # a stored row, hash column included


def test_audit_detail_keeps_python_floats_and_unescaped_text() -> None:
    # Unlike manifest lines, audit text keeps 2.0 as written and DEL unescaped.
    assert canonical({"x": 0.5, "ü": "ok", "n": 2.0}) == ENTRY["detail"]
    assert canonical({"d": "\x7f"}) == '{"d":"\x7f"}'
