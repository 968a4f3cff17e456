package sqlrows

import (
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The columns of each table, as every statement reads them, and their scans.

const envColumns = "id, name, description, config_type, config, metadata, archived_at, created_at, updated_at"

func scanEnvironment(r Rows) (store.Environment, error) {
	var e store.Environment
	var config, meta string
	var archived, created, updated sql.NullInt64
	if err := r.Scan(&e.ID, &e.Name, &e.Description, &e.ConfigType, &config, &meta, &archived, &created, &updated); err != nil {
		return e, err
	}
	e.Config = json.RawMessage(config)
	if err := json.Unmarshal([]byte(meta), &e.Metadata); err != nil {
		return e, fmt.Errorf("environment %s metadata: %w", e.ID, err)
	}
	e.ArchivedAt, e.CreatedAt, e.UpdatedAt = fromMicros(archived), fromMicros(created), fromMicros(updated)
	return e, nil
}

// sessionColumns derive running from the session's leased items.
const sessionColumns = `id, environment_id, agent, title, metadata, archived_at, created_at, updated_at,
	EXISTS (SELECT 1 FROM work w WHERE w.session_id = sessions.id AND w.` + Leased + `)`

func scanSession(r Rows) (store.Session, error) {
	var s store.Session
	var agent, meta string
	var archived, created, updated sql.NullInt64
	if err := r.Scan(&s.ID, &s.EnvironmentID, &agent, &s.Title, &meta, &archived, &created, &updated, &s.Running); err != nil {
		return s, err
	}
	s.Agent = json.RawMessage(agent)
	if err := json.Unmarshal([]byte(meta), &s.Metadata); err != nil {
		return s, fmt.Errorf("session %s metadata: %w", s.ID, err)
	}
	s.ArchivedAt, s.CreatedAt, s.UpdatedAt = fromMicros(archived), fromMicros(created), fromMicros(updated)
	return s, nil
}

const eventColumns = "id, session_id, type, body, created_at"

func scanEvent(r Rows) (store.Event, error) {
	var e store.Event
	var body string
	var created sql.NullInt64
	err := r.Scan(&e.ID, &e.SessionID, &e.Type, &body, &created)
	e.Body, e.CreatedAt = json.RawMessage(body), fromMicros(created)
	return e, err
}

const workColumns = `id, environment_id, session_id, state, metadata, created_at, acknowledged_at, started_at,
	latest_heartbeat_at, stop_requested_at, stopped_at, delivered_at, delivered_to, deliveries, acked_by,
	lease_expires_at, ttl_seconds, version`

func scanWork(r Rows) (work.Item, error) { return scanWorkWith(r) }

// scanWorkWith scans workColumns and then the columns after them into extra.
func scanWorkWith(r Rows, extra ...any) (work.Item, error) {
	var it work.Item
	var meta, state string
	var created, acked, started, beat, stopReq, stopped, delivered, lease sql.NullInt64
	if err := r.Scan(append([]any{&it.ID, &it.EnvironmentID, &it.SessionID, &state, &meta, &created, &acked, &started,
		&beat, &stopReq, &stopped, &delivered, &it.DeliveredTo, &it.Deliveries, &it.AckedBy, &lease, &it.TTLSeconds,
		&it.Version}, extra...)...); err != nil {
		return it, err
	}
	it.State = work.State(state)
	if err := json.Unmarshal([]byte(meta), &it.Metadata); err != nil {
		return it, fmt.Errorf("work %s metadata: %w", it.ID, err)
	}
	it.CreatedAt, it.AcknowledgedAt, it.StartedAt = fromMicros(created), fromMicros(acked), fromMicros(started)
	it.LatestHeartbeatAt, it.StopRequestedAt, it.StoppedAt = fromMicros(beat), fromMicros(stopReq), fromMicros(stopped)
	it.DeliveredAt, it.LeaseExpiresAt = fromMicros(delivered), fromMicros(lease)
	return it, nil
}

// workValues are the values of workColumns but the version, in order.
func workValues(it work.Item) []any {
	return []any{it.ID, it.EnvironmentID, it.SessionID, string(it.State), metadataJSON(it.Metadata), Micros(it.CreatedAt),
		Micros(it.AcknowledgedAt), Micros(it.StartedAt), Micros(it.LatestHeartbeatAt), Micros(it.StopRequestedAt),
		Micros(it.StoppedAt), Micros(it.DeliveredAt), it.DeliveredTo, it.Deliveries, it.AckedBy,
		Micros(it.LeaseExpiresAt), it.TTLSeconds}
}

const tokenColumns = "id, name, role, environment_id, hash, created_at, last_used_at, revoked_at"

func scanToken(r Rows) (store.Token, error) {
	var t store.Token
	var created, used, revoked sql.NullInt64
	err := r.Scan(&t.ID, &t.Name, &t.Role, &t.EnvironmentID, &t.Hash, &created, &used, &revoked)
	t.CreatedAt, t.LastUsedAt, t.RevokedAt = fromMicros(created), fromMicros(used), fromMicros(revoked)
	return t, err
}

const idempotencyColumns = "token_id, key, fingerprint, status, body, created_at"

func scanIdempotency(r Rows) (store.Idempotency, error) {
	var rec store.Idempotency
	var created sql.NullInt64
	err := r.Scan(&rec.TokenID, &rec.Key, &rec.Fingerprint, &rec.Status, &rec.Body, &created)
	rec.CreatedAt = fromMicros(created)
	return rec, err
}

func scanString(r Rows) (string, error) {
	var s string
	return s, r.Scan(&s)
}

// scanOne scans the one row of a one-value read into v.
func scanOne(r Rows, v any) error {
	if !r.Next() {
		if err := r.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	return r.Scan(v)
}
