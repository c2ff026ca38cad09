-- What the release before schema migrations ran, module by module, when it opened the
-- database (records.store, records.audit, records.webhooks, records.archive), copied as
-- it was: the fixture that migration 1 must reproduce and adopt.
CREATE TABLE IF NOT EXISTS visits (
    id TEXT PRIMARY KEY,
    starts_at REAL, ends_at REAL, privileged INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, cause TEXT, reason TEXT NOT NULL DEFAULT '',
    started_at REAL, ended_at REAL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS participants (
    visit TEXT NOT NULL, sub TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0, first_joined_at REAL, last_left_at REAL,
    PRIMARY KEY (visit, sub)
);
CREATE TABLE IF NOT EXISTS revocations (
    visit TEXT NOT NULL, sub TEXT NOT NULL, at REAL NOT NULL, by TEXT NOT NULL,
    PRIMARY KEY (visit, sub)
);
CREATE TABLE IF NOT EXISTS audit (
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
);
CREATE INDEX IF NOT EXISTS audit_visit ON audit (visit, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END;
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit head cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.seq != OLD.seq + 1
  OR NEW.hash IS NOT (SELECT hash FROM audit WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit head only advances to the newest entry'); END;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS recordings (
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
);
CREATE INDEX IF NOT EXISTS recordings_starts ON recordings (starts_at);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    visit TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    placed_at REAL NOT NULL,
    released_by TEXT,
    released_at REAL
);
CREATE INDEX IF NOT EXISTS holds_visit ON holds (visit, released_at);
