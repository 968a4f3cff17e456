-- Webhooks (API.md §9) and their durable delivery outbox. A delivery is written in the
-- transaction that queues its work item; next_attempt_at is when it is due (NULL once it
-- is delivered or given up), and a sender that claims it (FOR UPDATE SKIP LOCKED) moves
-- next_attempt_at past the end of its attempt, so that no replica claims it meanwhile.

CREATE TABLE webhooks (
    id             TEXT COLLATE "C" PRIMARY KEY,
    environment_id TEXT COLLATE "C" NOT NULL,
    url            TEXT NOT NULL,
    description    TEXT NOT NULL,
    secret         TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE INDEX webhooks_by_environment ON webhooks (environment_id, id);

CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    webhook_id      TEXT COLLATE "C" NOT NULL,
    environment_id  TEXT COLLATE "C" NOT NULL,
    work_id         TEXT COLLATE "C" NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL
);

CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
