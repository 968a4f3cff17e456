-- Webhooks (API.md §9) and their durable delivery outbox. A delivery is written in the
-- transaction that queues its work item; next_attempt_at is when it is due (NULL once it
-- is delivered or given up), and a sender that claims it moves next_attempt_at past the
-- end of its attempt, so that no other claim takes it meanwhile.

CREATE TABLE webhooks (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    url            TEXT NOT NULL,
    description    TEXT NOT NULL,
    secret         TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX webhooks_by_environment ON webhooks (environment_id, id);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL,
    environment_id  TEXT NOT NULL,
    work_id         TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
-- The sender's scan: pending deliveries by when they are due. Partial, so its size is the
-- outbox's, not the history's.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
