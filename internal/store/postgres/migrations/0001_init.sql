-- Times are BIGINT microseconds since the Unix epoch, NULL where the API shows null, so
-- that both stores hold exactly the same instants. IDs are time-ordered text: a primary
-- key range scan is the API's ascending-ID order (COLLATE "C" so that it is byte order).

CREATE TABLE environments (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    config_type TEXT NOT NULL,
    config      TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    archived_at BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE sessions (
    id             TEXT COLLATE "C" PRIMARY KEY,
    environment_id TEXT COLLATE "C" NOT NULL REFERENCES environments (id),
    agent          TEXT NOT NULL,
    title          TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    archived_at    BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX sessions_by_environment ON sessions (environment_id, id);

CREATE TABLE events (
    id         TEXT COLLATE "C" PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX events_by_session ON events (session_id, id);

CREATE TABLE work (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    environment_id      TEXT COLLATE "C" NOT NULL,
    session_id          TEXT COLLATE "C" NOT NULL,
    state               TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    acknowledged_at     BIGINT,
    started_at          BIGINT,
    latest_heartbeat_at BIGINT,
    stop_requested_at   BIGINT,
    stopped_at          BIGINT,
    delivered_at        BIGINT,
    delivered_to        TEXT NOT NULL DEFAULT '',
    deliveries          INTEGER NOT NULL DEFAULT 0,
    acked_by            TEXT NOT NULL DEFAULT '',
    lease_expires_at    BIGINT,
    ttl_seconds         INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX work_by_environment ON work (environment_id, id);
-- Claim: the oldest queued item of an environment; partial, so it is the queue's size.
CREATE INDEX work_queued ON work (environment_id, id) WHERE state = 'queued';
CREATE INDEX work_live_by_session ON work (session_id) WHERE state <> 'stopped';
CREATE INDEX work_leases ON work (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE tokens (
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    environment_id TEXT NOT NULL DEFAULT '',
    hash           TEXT NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT
);

CREATE TABLE idempotency_keys (
    token_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    body        BYTEA,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (token_id, key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- Distinct Worker-IDs polling each environment, shared by every replica.
CREATE TABLE pollers (
    environment_id TEXT NOT NULL,
    worker_id      TEXT NOT NULL,
    last_poll_at   BIGINT NOT NULL,
    PRIMARY KEY (environment_id, worker_id)
);
