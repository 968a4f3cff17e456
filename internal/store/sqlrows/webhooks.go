package sqlrows

import (
	"context"
	"database/sql"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

// The rows of webhooks and of their delivery outbox (API.md §9).

const webhookColumns = "id, environment_id, url, description, secret, created_at"

func scanWebhook(r Rows) (store.Webhook, error) {
	var w store.Webhook
	var created sql.NullInt64
	err := r.Scan(&w.ID, &w.EnvironmentID, &w.URL, &w.Description, &w.Secret, &created)
	w.CreatedAt = fromMicros(created)
	return w, err
}

const deliveryColumns = `id, webhook_id, environment_id, work_id, session_id, attempts, last_status, last_error,
	next_attempt_at, delivered_at, created_at`

// deliveryColumnsOf is deliveryColumns of the table aliased d.
const deliveryColumnsOf = `d.id, d.webhook_id, d.environment_id, d.work_id, d.session_id, d.attempts, d.last_status,
	d.last_error, d.next_attempt_at, d.delivered_at, d.created_at`

// deliveryScan holds the nullable columns of a delivery while it is scanned.
type deliveryScan struct {
	status                   sql.NullInt64
	lastErr                  sql.NullString
	next, delivered, created sql.NullInt64
}

func (s *deliveryScan) dest(d *store.Delivery) []any {
	return []any{&d.ID, &d.WebhookID, &d.EnvironmentID, &d.WorkID, &d.SessionID, &d.Attempts,
		&s.status, &s.lastErr, &s.next, &s.delivered, &s.created}
}

func (s *deliveryScan) finish(d *store.Delivery) {
	d.LastStatus, d.LastError = int(s.status.Int64), s.lastErr.String
	d.NextAttemptAt, d.DeliveredAt, d.CreatedAt = fromMicros(s.next), fromMicros(s.delivered), fromMicros(s.created)
}

func scanDelivery(r Rows) (store.Delivery, error) {
	var d store.Delivery
	var s deliveryScan
	err := r.Scan(s.dest(&d)...)
	s.finish(&d)
	return d, err
}

func scanClaimed(r Rows) (store.Claimed, error) {
	var c store.Claimed
	var s deliveryScan
	err := r.Scan(append(s.dest(&c.Delivery), &c.URL, &c.Secret)...)
	s.finish(&c.Delivery)
	return c, err
}

// nullInt is n, or NULL for 0.
func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// nullString is s, or NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Webhook implements store.Reads.
func (o Ops) Webhook(ctx context.Context, environmentID, id string) (store.Webhook, error) {
	return one(ctx, o, scanWebhook, "webhook", id,
		"SELECT "+webhookColumns+" FROM webhooks WHERE id = ? AND environment_id = ?", id, environmentID)
}

// Webhooks implements store.Reads.
func (o Ops) Webhooks(ctx context.Context, environmentID string, p store.Page) ([]store.Webhook, bool, error) {
	return list(ctx, o, scanWebhook, "webhooks", "SELECT "+webhookColumns+" FROM webhooks WHERE environment_id = ?",
		[]any{environmentID}, p)
}

// WebhookIDs implements store.Reads.
func (o Ops) WebhookIDs(ctx context.Context, environmentID string) ([]string, error) {
	return all(ctx, o, scanString, webhookIDs, environmentID)
}

const webhookIDs = "SELECT id FROM webhooks WHERE environment_id = ? ORDER BY id"

// Deliveries implements store.Reads.
func (o Ops) Deliveries(ctx context.Context, webhookID string, p store.Page) ([]store.Delivery, bool, error) {
	return list(ctx, o, scanDelivery, "deliveries", "SELECT "+deliveryColumns+" FROM webhook_deliveries WHERE webhook_id = ?",
		[]any{webhookID}, p)
}

// NextDelivery implements store.Reads.
func (o Ops) NextDelivery(ctx context.Context) (time.Time, bool, error) {
	at, err := value[sql.NullInt64](ctx, o, "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL")
	if err != nil || !at.Valid {
		return time.Time{}, false, err
	}
	return fromMicros(at), true, nil
}

// CountPendingDeliveries implements store.Reads.
func (o Ops) CountPendingDeliveries(ctx context.Context) (int, error) {
	return value[int](ctx, o, "SELECT count(*) FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL")
}

// InsertWebhook implements store.Tx.
func (o Ops) InsertWebhook(ctx context.Context, w store.Webhook) error {
	return o.send(ctx, "INSERT INTO webhooks ("+webhookColumns+") VALUES (?, ?, ?, ?, ?, ?)",
		w.ID, w.EnvironmentID, w.URL, w.Description, w.Secret, Micros(w.CreatedAt))
}

// DeleteWebhook implements store.Tx.
func (o Ops) DeleteWebhook(ctx context.Context, id string) error {
	if err := o.send(ctx, "DELETE FROM webhook_deliveries WHERE webhook_id = ?", id); err != nil {
		return err
	}
	return o.send(ctx, "DELETE FROM webhooks WHERE id = ?", id)
}

// InsertDeliveries implements store.Tx.
func (o Ops) InsertDeliveries(ctx context.Context, ds []store.Delivery) error {
	for _, d := range ds {
		if err := o.send(ctx, "INSERT INTO webhook_deliveries ("+deliveryColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			d.ID, d.WebhookID, d.EnvironmentID, d.WorkID, d.SessionID, d.Attempts, nullInt(d.LastStatus),
			nullString(d.LastError), Micros(d.NextAttemptAt), Micros(d.DeliveredAt), Micros(d.CreatedAt)); err != nil {
			return err
		}
	}
	return nil
}

// DueDeliveries is LockDueDeliveries with lock appended to the statement: the driver's
// clause that locks the rows of d and skips those another transaction holds ("" where a
// single writer makes it needless).
func (o Ops) DueDeliveries(ctx context.Context, now time.Time, limit int, lock string) ([]store.Claimed, error) {
	return all(ctx, o, scanClaimed, "SELECT "+deliveryColumnsOf+`, w.url, w.secret
		FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
		WHERE d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.id LIMIT ?`+lock, now.UnixMicro(), limit)
}

// LockDelivery implements store.Tx.
func (o Ops) LockDelivery(ctx context.Context, id string) (store.Delivery, error) {
	return one(ctx, o, scanDelivery, "delivery", id,
		"SELECT "+deliveryColumns+" FROM webhook_deliveries WHERE id = ?"+o.D.Lock, id)
}

// PutDelivery implements store.Tx.
func (o Ops) PutDelivery(ctx context.Context, d store.Delivery) error {
	return o.send(ctx, `UPDATE webhook_deliveries SET attempts = ?, last_status = ?, last_error = ?,
		next_attempt_at = ?, delivered_at = ? WHERE id = ?`,
		d.Attempts, nullInt(d.LastStatus), nullString(d.LastError), Micros(d.NextAttemptAt), Micros(d.DeliveredAt), d.ID)
}
