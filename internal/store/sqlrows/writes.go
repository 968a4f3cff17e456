package sqlrows

import (
	"context"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The row writes of store.Tx. Those whose result no one needs go through Send, which a
// driver may defer to the next statement or the commit.

// InsertEnvironment implements store.Tx.
func (o Ops) InsertEnvironment(ctx context.Context, e store.Environment) error {
	o.cached()
	return o.send(ctx, "INSERT INTO environments ("+envColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		e.ID, e.Name, e.Description, e.ConfigType, string(e.Config), metadataJSON(e.Metadata),
		Micros(e.ArchivedAt), Micros(e.CreatedAt), Micros(e.UpdatedAt))
}

// PutEnvironment implements store.Tx.
func (o Ops) PutEnvironment(ctx context.Context, e store.Environment) error {
	o.cached()
	return o.send(ctx, `UPDATE environments SET name = ?, description = ?, config_type = ?, config = ?,
		metadata = ?, archived_at = ?, updated_at = ? WHERE id = ?`,
		e.Name, e.Description, e.ConfigType, string(e.Config), metadataJSON(e.Metadata),
		Micros(e.ArchivedAt), Micros(e.UpdatedAt), e.ID)
}

// DeleteEnvironment implements store.Tx.
func (o Ops) DeleteEnvironment(ctx context.Context, id string) error {
	o.cached()
	for _, table := range []string{"work", "webhook_deliveries", "webhooks"} {
		if err := o.send(ctx, "DELETE FROM "+table+" WHERE environment_id = ?", id); err != nil {
			return err
		}
	}
	return o.send(ctx, "DELETE FROM environments WHERE id = ?", id)
}

// InsertSession implements store.Tx.
func (o Ops) InsertSession(ctx context.Context, s store.Session) error {
	return o.send(ctx, `INSERT INTO sessions (id, environment_id, agent, title, metadata, archived_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, s.ID, s.EnvironmentID, string(s.Agent), s.Title,
		metadataJSON(s.Metadata), Micros(s.ArchivedAt), Micros(s.CreatedAt), Micros(s.UpdatedAt))
}

// PutSession implements store.Tx.
func (o Ops) PutSession(ctx context.Context, s store.Session) error {
	return o.send(ctx, "UPDATE sessions SET agent = ?, title = ?, metadata = ?, archived_at = ?, updated_at = ? WHERE id = ?",
		string(s.Agent), s.Title, metadataJSON(s.Metadata), Micros(s.ArchivedAt), Micros(s.UpdatedAt), s.ID)
}

// DeleteSession implements store.Tx.
func (o Ops) DeleteSession(ctx context.Context, id string) error {
	if err := o.send(ctx, "DELETE FROM events WHERE session_id = ?", id); err != nil {
		return err
	}
	return o.send(ctx, "DELETE FROM sessions WHERE id = ?", id)
}

// InsertEvents implements store.Tx.
func (o Ops) InsertEvents(ctx context.Context, events []store.Event) error {
	for _, e := range events {
		if err := o.send(ctx, "INSERT INTO events ("+eventColumns+") VALUES (?, ?, ?, ?, ?)",
			e.ID, e.SessionID, e.Type, string(e.Body), Micros(e.CreatedAt)); err != nil {
			return err
		}
	}
	return nil
}

var (
	insertWork = "INSERT INTO work (" + workColumns + ") VALUES (" + strings.Repeat("?, ", 17) + "0)"
	// putWork writes every mutable column and raises the version.
	putWork = `UPDATE work SET state = ?, metadata = ?, acknowledged_at = ?, started_at = ?,
		latest_heartbeat_at = ?, stop_requested_at = ?, stopped_at = ?, delivered_at = ?, delivered_to = ?,
		deliveries = ?, acked_by = ?, lease_expires_at = ?, ttl_seconds = ?, version = version + 1 WHERE id = ?`
)

func putWorkArgs(it work.Item) []any {
	return []any{string(it.State), metadataJSON(it.Metadata), Micros(it.AcknowledgedAt), Micros(it.StartedAt),
		Micros(it.LatestHeartbeatAt), Micros(it.StopRequestedAt), Micros(it.StoppedAt), Micros(it.DeliveredAt),
		it.DeliveredTo, it.Deliveries, it.AckedBy, Micros(it.LeaseExpiresAt), it.TTLSeconds, it.ID}
}

// InsertWork implements store.Tx. A new item's version is 0.
func (o Ops) InsertWork(ctx context.Context, it work.Item) error {
	return o.send(ctx, insertWork, workValues(it)...)
}

// PutWork implements store.Tx.
func (o Ops) PutWork(ctx context.Context, it work.Item) error {
	return o.send(ctx, putWork, putWorkArgs(it)...)
}

// PutWorkIf writes it if its row is at version, and reports whether it did (a
// compare-and-set).
func (o Ops) PutWorkIf(ctx context.Context, it work.Item, version int64) (bool, error) {
	n, err := o.exec(ctx, putWork+" AND version = ?", append(putWorkArgs(it), version)...)
	return n == 1, err
}

var insertToken = "INSERT INTO tokens (" + tokenColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

func tokenValues(t store.Token) []any {
	return []any{t.ID, t.Name, t.Role, t.EnvironmentID, t.Hash, Micros(t.CreatedAt), Micros(t.LastUsedAt), Micros(t.RevokedAt)}
}

// InsertToken implements store.Tx.
func (o Ops) InsertToken(ctx context.Context, t store.Token) error {
	o.cached()
	return o.send(ctx, insertToken, tokenValues(t)...)
}

// InsertFirstTokenIfNone inserts t if the tokens table is empty, in one statement, and
// reports whether it did. Whether two transactions can both see the table empty is the
// driver's matter (store.Tx.InsertFirstToken).
func (o Ops) InsertFirstTokenIfNone(ctx context.Context, t store.Token) (bool, error) {
	o.cached()
	n, err := o.exec(ctx, "INSERT INTO tokens ("+tokenColumns+") SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM tokens)",
		tokenValues(t)...)
	return n == 1, err
}

// RevokeToken implements store.Tx.
func (o Ops) RevokeToken(ctx context.Context, id string, at time.Time) (store.Token, error) {
	o.cached()
	if err := o.send(ctx, "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", at.UnixMicro(), id); err != nil {
		return store.Token{}, err
	}
	return o.Token(ctx, id)
}

// TouchToken implements store.Tx. It does not mark the cache: the driver updates the
// token it keeps once the write has committed (store.TokenUser).
func (o Ops) TouchToken(ctx context.Context, id string, at time.Time) error {
	n, err := o.exec(ctx, "UPDATE tokens SET last_used_at = ? WHERE id = ?", at.UnixMicro(), id)
	if err == nil && n == 0 {
		return NotFound("token", id)
	}
	return err
}

// InsertIdempotency implements store.Tx.
func (o Ops) InsertIdempotency(ctx context.Context, rec store.Idempotency) (bool, error) {
	n, err := o.exec(ctx, `INSERT INTO idempotency_keys (token_id, key, fingerprint, status, body, created_at)
		VALUES (?, ?, ?, 0, NULL, ?) ON CONFLICT DO NOTHING`, rec.TokenID, rec.Key, rec.Fingerprint, rec.CreatedAt.UnixMicro())
	return n == 1, err
}

// CompleteIdempotency implements store.Tx.
func (o Ops) CompleteIdempotency(ctx context.Context, tokenID, key string, status int, body []byte) error {
	n, err := o.exec(ctx, "UPDATE idempotency_keys SET status = ?, body = ? WHERE token_id = ? AND key = ?", status, body, tokenID, key)
	if err == nil && n == 0 {
		return NotFound("idempotency key", key)
	}
	return err
}

// DeleteIdempotency implements store.Tx.
func (o Ops) DeleteIdempotency(ctx context.Context, tokenID, key string) error {
	return o.send(ctx, "DELETE FROM idempotency_keys WHERE token_id = ? AND key = ? AND status = 0", tokenID, key)
}

// PruneIdempotency implements store.Tx.
func (o Ops) PruneIdempotency(ctx context.Context, cutoff time.Time) error {
	return o.send(ctx, "DELETE FROM idempotency_keys WHERE created_at < ?", cutoff.UnixMicro())
}
