-- Times are INTEGER microseconds since the Unix epoch, NULL where the API shows null.
-- Tables are WITHOUT ROWID and keyed by their time-ordered text IDs, so that a primary-key
-- range scan is the API's ascending-ID order.

CREATE TABLE environments (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    config_type TEXT NOT NULL,
    config      TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    archived_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id),
    agent          TEXT NOT NULL,
    title          TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    archived_at    INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_by_environment ON sessions (environment_id, id);

CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX events_by_session ON events (session_id, id);

CREATE TABLE work (
    id                  TEXT PRIMARY KEY,
    environment_id      TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    state               TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    acknowledged_at     INTEGER,
    started_at          INTEGER,
    latest_heartbeat_at INTEGER,
    stop_requested_at   INTEGER,
    stopped_at          INTEGER,
    delivered_at        INTEGER,
    delivered_to        TEXT NOT NULL DEFAULT '',
    deliveries          INTEGER NOT NULL DEFAULT 0,
    acked_by            TEXT NOT NULL DEFAULT '',
    lease_expires_at    INTEGER,
    ttl_seconds         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- List and get within an environment.
CREATE INDEX work_by_environment ON work (environment_id, id);
-- Claim: the oldest queued item of an environment. Partial, so its size is the queue's,
-- not the history's.
CREATE INDEX work_queued ON work (environment_id, id) WHERE state = 'queued';
-- A session's live items (status, cancel, delete, requeue and wake-up checks).
CREATE INDEX work_live_by_session ON work (session_id) WHERE state <> 'stopped';
-- Lease expiry scan.
CREATE INDEX work_leases ON work (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE tokens (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    environment_id TEXT NOT NULL DEFAULT '',
    hash           TEXT NOT NULL UNIQUE,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    revoked_at     INTEGER
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    token_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    body        BLOB,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (token_id, key)
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
