package sqlrows

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The reads of store.Reads.

// Environment implements store.Reads.
func (o Ops) Environment(ctx context.Context, id string) (store.Environment, error) {
	return one(ctx, o, scanEnvironment, "environment", id, "SELECT "+envColumns+" FROM environments WHERE id = ?", id)
}

// LockEnvironment reads an environment and locks its row (Dialect.Lock).
func (o Ops) LockEnvironment(ctx context.Context, id string) (store.Environment, error) {
	return one(ctx, o, scanEnvironment, "environment", id, "SELECT "+envColumns+" FROM environments WHERE id = ?"+o.D.Lock, id)
}

// Environments implements store.Reads.
func (o Ops) Environments(ctx context.Context, p store.Page, includeArchived bool) ([]store.Environment, bool, error) {
	q := "SELECT " + envColumns + " FROM environments WHERE 1=1"
	if !includeArchived {
		q += " AND archived_at IS NULL"
	}
	return list(ctx, o, scanEnvironment, "environments", q, nil, p)
}

// CountSessions implements store.Reads.
func (o Ops) CountSessions(ctx context.Context, environmentID string) (int, error) {
	return value[int](ctx, o, "SELECT count(*) FROM sessions WHERE environment_id = ?", environmentID)
}

// Session implements store.Reads.
func (o Ops) Session(ctx context.Context, id string) (store.Session, error) {
	return one(ctx, o, scanSession, "session", id, "SELECT "+sessionColumns+" FROM sessions WHERE id = ?", id)
}

// LockSession reads a session and locks its row (not the work rows of its status).
func (o Ops) LockSession(ctx context.Context, id string) (store.Session, error) {
	return one(ctx, o, scanSession, "session", id, o.lockSession(), id)
}

func (o Ops) lockSession() string {
	lock := ""
	if o.D.LockOf != nil {
		lock = o.D.LockOf("sessions")
	}
	return "SELECT " + sessionColumns + " FROM sessions WHERE id = ?" + lock
}

// LockSessionLastEvent is LockSession and then the session's last event ID (LastEventID),
// read after the lock is granted, in one round trip where the Conn pipelines.
func (o Ops) LockSessionLastEvent(ctx context.Context, id string) (store.Session, string, error) {
	var ss []store.Session
	var last string
	err := o.pipeline(ctx, []Stmt{{o.lockSession(), []any{id}}, {lastEventID, []any{id}}}, func(i int, r Rows) (err error) {
		if i == 0 {
			ss, err = scanAll(r, scanSession)
			return err
		}
		return scanOne(r, &last)
	})
	if err != nil {
		return store.Session{}, "", fmt.Errorf("session %s: %w", id, err)
	}
	if len(ss) == 0 {
		return store.Session{}, "", NotFound("session", id)
	}
	return ss[0], last, nil
}

// LockEnvironmentWebhooks is LockEnvironment and the IDs of the environment's webhooks
// (WebhookIDs), read after the lock is granted, in one round trip where the Conn
// pipelines.
func (o Ops) LockEnvironmentWebhooks(ctx context.Context, id string) (store.Environment, []string, error) {
	var envs []store.Environment
	var hooks []string
	err := o.pipeline(ctx, []Stmt{
		{"SELECT " + envColumns + " FROM environments WHERE id = ?" + o.D.Lock, []any{id}},
		{webhookIDs, []any{id}},
	}, func(i int, r Rows) (err error) {
		if i == 0 {
			envs, err = scanAll(r, scanEnvironment)
		} else {
			hooks, err = scanAll(r, scanString)
		}
		return err
	})
	if err != nil {
		return store.Environment{}, nil, fmt.Errorf("environment %s: %w", id, err)
	}
	if len(envs) == 0 {
		return store.Environment{}, nil, NotFound("environment", id)
	}
	return envs[0], hooks, nil
}

// LockLeaseRows reads what a transition that starts or ends a lease needs (store.Tx.LockLease),
// in one round trip where the Conn pipelines, as two statements: the item's session,
// locked (its row only); then the item, locked, with whether another item of the session
// holds a lease and, when lastEvent is set, the session's last event ID. The second
// statement begins once the session's lock is granted, so its reads see every write of
// the transactions that held it, which every change to a session's leases and events
// does; and a write that held the item without the session (a compare-and-set) changes
// neither.
func (o Ops) LockLeaseRows(ctx context.Context, environmentID, id string, lastEvent bool) (store.LeaseRows, string, error) {
	lock := ""
	if o.D.LockOf != nil {
		lock = o.D.LockOf("sessions")
	}
	last := "''"
	if lastEvent {
		last = "(SELECT coalesce(max(e.id), '') FROM events e WHERE e.session_id = work.session_id)"
	}
	stmts := []Stmt{
		{"SELECT id FROM sessions WHERE id = (SELECT session_id FROM work WHERE id = ? AND environment_id = ?)" + lock,
			[]any{id, environmentID}},
		{"SELECT " + workColumns + ", EXISTS (SELECT 1 FROM work o WHERE o.session_id = work.session_id AND o.id <> work.id AND o." +
			Leased + "), " + last + " FROM work WHERE id = ? AND environment_id = ?" + o.D.Lock, []any{id, environmentID}},
	}
	var out store.LeaseRows
	var items []work.Item
	var lastID string
	err := o.pipeline(ctx, stmts, func(i int, r Rows) (err error) {
		if i == 0 {
			out.SessionFound = r.Next()
			return r.Err()
		}
		items, err = scanAll(r, func(r Rows) (work.Item, error) { return scanWorkWith(r, &out.OtherLeased, &lastID) })
		return err
	})
	if err != nil {
		return store.LeaseRows{}, "", fmt.Errorf("work %s: %w", id, err)
	}
	if len(items) == 0 {
		return store.LeaseRows{}, "", NotFound("work", id)
	}
	out.Item = items[0]
	return out, lastID, nil
}

// Sessions implements store.Reads.
func (o Ops) Sessions(ctx context.Context, p store.Page, environmentID string, includeArchived bool) ([]store.Session, bool, error) {
	q := "SELECT " + sessionColumns + " FROM sessions WHERE 1=1"
	var args []any
	if environmentID != "" {
		q += " AND environment_id = ?"
		args = append(args, environmentID)
	}
	if !includeArchived {
		q += " AND archived_at IS NULL"
	}
	return list(ctx, o, scanSession, "sessions", q, args, p)
}

// Events implements store.Reads.
func (o Ops) Events(ctx context.Context, sessionID string, p store.Page) ([]store.Event, bool, error) {
	return list(ctx, o, scanEvent, "events", "SELECT "+eventColumns+" FROM events WHERE session_id = ?", []any{sessionID}, p)
}

const lastEventID = "SELECT coalesce(max(id), '') FROM events WHERE session_id = ?"

// LastEventID returns the greatest event ID of the session ("" for none).
func (o Ops) LastEventID(ctx context.Context, sessionID string) (string, error) {
	return value[string](ctx, o, lastEventID, sessionID)
}

// Event implements store.Reads.
func (o Ops) Event(ctx context.Context, sessionID, id string) (store.Event, error) {
	return one(ctx, o, scanEvent, "event", id, "SELECT "+eventColumns+" FROM events WHERE id = ? AND session_id = ?", id, sessionID)
}

// Work implements store.Reads.
func (o Ops) Work(ctx context.Context, environmentID, id string) (work.Item, error) {
	return one(ctx, o, scanWork, "work", id, "SELECT "+workColumns+" FROM work WHERE id = ? AND environment_id = ?", id, environmentID)
}

// LockWork reads an item and locks its row.
func (o Ops) LockWork(ctx context.Context, environmentID, id string) (work.Item, error) {
	return one(ctx, o, scanWork, "work", id, "SELECT "+workColumns+" FROM work WHERE id = ? AND environment_id = ?"+o.D.Lock, id, environmentID)
}

// LockLiveWork reads a session's live items in ID order and locks their rows.
func (o Ops) LockLiveWork(ctx context.Context, sessionID string) ([]work.Item, error) {
	return all(ctx, o, scanWork, "SELECT "+workColumns+" FROM work WHERE session_id = ? AND "+Live+" ORDER BY id"+o.D.Lock, sessionID)
}

// WorkList implements store.Reads.
func (o Ops) WorkList(ctx context.Context, environmentID string, p store.Page, states []work.State) ([]work.Item, bool, error) {
	q := "SELECT " + workColumns + " FROM work WHERE environment_id = ?"
	args := []any{environmentID}
	if len(states) > 0 {
		q += " AND state IN (?" + strings.Repeat(", ?", len(states)-1) + ")"
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	return list(ctx, o, scanWork, "work", q, args, p)
}

// DeliverableCutoff is the placeholder of Deliverable for a claim.
func DeliverableCutoff(c work.Claim) int64 { return c.At.Add(-c.Reclaim).UnixMicro() }

// OldestDeliverable selects the oldest item of an environment (?1) that is deliverable
// with a cutoff (?2): the claims' walk of the queue, along the partial index of queued
// items in ID order.
const OldestDeliverable = "SELECT " + workColumns + " FROM work WHERE environment_id = ? AND " + Deliverable + " ORDER BY id LIMIT 1"

// OldestDeliverable returns the oldest item of the environment that c may deliver;
// lock is appended to the statement.
func (o Ops) OldestDeliverable(ctx context.Context, environmentID string, c work.Claim, lock string) (work.Item, bool, error) {
	rows, err := all(ctx, o, scanWork, OldestDeliverable+lock, environmentID, DeliverableCutoff(c))
	if err != nil || len(rows) == 0 {
		return work.Item{}, false, err
	}
	return rows[0], true, nil
}

// WorkColumns are the columns of work as every statement reads them, in the order that
// WorkAndFlag scans.
const WorkColumns = workColumns

// WorkAndFlag runs q, a read of at most one row of WorkColumns followed by one integer
// column, and returns them; found is false when q returned no row.
func (o Ops) WorkAndFlag(ctx context.Context, q string, args ...any) (it work.Item, flag int, found bool, err error) {
	rows, err := all(ctx, o, func(r Rows) (work.Item, error) { return scanWorkWith(r, &flag) }, q, args...)
	if err != nil || len(rows) == 0 {
		return work.Item{}, 0, false, err
	}
	return rows[0], flag, true, nil
}

// HasDeliverable implements store.Reads.
func (o Ops) HasDeliverable(ctx context.Context, environmentID string, c work.Claim) (bool, error) {
	rows, err := o.query(ctx, "SELECT 1 FROM work WHERE environment_id = ? AND "+Deliverable+" LIMIT 1", environmentID, DeliverableCutoff(c))
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// HasLiveWork implements store.Reads.
func (o Ops) HasLiveWork(ctx context.Context, sessionID, except string) (bool, error) {
	rows, err := o.query(ctx, "SELECT 1 FROM work WHERE session_id = ? AND "+Live+" AND id <> ? LIMIT 1", sessionID, except)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// Queue implements store.Reads.
func (o Ops) Queue(ctx context.Context, environmentID string, now time.Time) (depth, pending int, oldest time.Time, err error) {
	cutoff := now.Add(-work.DefaultReclaim).UnixMicro()
	rows, err := o.query(ctx, `SELECT
			count(*) FILTER (WHERE delivered_at IS NULL OR delivered_at <= ?),
			count(*) FILTER (WHERE delivered_at > ?),
			min(created_at)
		FROM work WHERE environment_id = ? AND state = 'queued'`, cutoff, cutoff, environmentID)
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	defer rows.Close()
	var min sql.NullInt64
	if rows.Next() {
		err = rows.Scan(&depth, &pending, &min)
	}
	if err == nil {
		err = rows.Err()
	}
	return depth, pending, fromMicros(min), err
}

// NextReclaim implements store.Reads.
func (o Ops) NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (time.Time, bool, error) {
	at, err := value[sql.NullInt64](ctx, o, `SELECT min(delivered_at) FROM work
		WHERE environment_id = ? AND state = 'queued' AND delivered_at IS NOT NULL`, environmentID)
	if err != nil || !at.Valid {
		return time.Time{}, false, err
	}
	return fromMicros(at).Add(reclaim), true, nil
}

// ExpiredLeases implements store.Reads. Both planners walk the index of leases
// (work_leases) from the cursor's lease end up to now, in the index's order, so that only
// ended leases are read and none is sorted: the cursor is one range on the lease's end
// and a filter for the IDs at its first instant, since a row value or an OR makes
// SQLite's planner search twice and sort. A zero after starts before every lease.
func (o Ops) ExpiredLeases(ctx context.Context, now time.Time, after store.LeaseEnd, limit int) ([]store.LeaseEnd, error) {
	at := int64(math.MinInt64)
	if !after.At.IsZero() {
		at = after.At.UnixMicro()
	}
	return all(ctx, o, func(r Rows) (store.LeaseEnd, error) {
		var e store.LeaseEnd
		var end sql.NullInt64
		err := r.Scan(&e.EnvironmentID, &e.ID, &end)
		e.At = fromMicros(end)
		return e, err
	}, ExpiredLeasesSQL, now.UnixMicro(), at, at, after.ID, limit)
}

// ExpiredLeasesSQL is the statement of Ops.ExpiredLeases: ?1 now, ?2 and ?3 the lease end
// and ?4 the ID after which it reads, ?5 the limit.
const ExpiredLeasesSQL = "SELECT environment_id, id, lease_expires_at FROM work WHERE " + LeaseEnded +
	" AND lease_expires_at >= ? AND NOT (lease_expires_at = ? AND id <= ?) ORDER BY lease_expires_at, id LIMIT ?"

// NextLeaseExpiry implements store.Reads.
func (o Ops) NextLeaseExpiry(ctx context.Context) (time.Time, bool, error) {
	at, err := value[sql.NullInt64](ctx, o, "SELECT min(lease_expires_at) FROM work WHERE lease_expires_at IS NOT NULL")
	if err != nil || !at.Valid {
		return time.Time{}, false, err
	}
	return fromMicros(at), true, nil
}

// CountWork implements store.Reads, with the dialect's statement (Dialect.CountWork).
// It is one statement, which each database runs on one snapshot, so the counts are
// consistent while writes go on.
func (o Ops) CountWork(ctx context.Context) ([]store.WorkCount, error) {
	counts, err := all(ctx, o, func(r Rows) (store.WorkCount, error) {
		var c store.WorkCount
		var state string
		err := r.Scan(&c.EnvironmentID, &state, &c.Count)
		c.State = work.State(state)
		return c, err
	}, o.D.CountWork)
	if err != nil {
		return nil, fmt.Errorf("count work: %w", err)
	}
	return counts, nil
}

// TokenByHash implements store.Reads.
func (o Ops) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	return one(ctx, o, scanToken, "token", "with that secret", "SELECT "+tokenColumns+" FROM tokens WHERE hash = ?", hash)
}

// Token implements store.Reads.
func (o Ops) Token(ctx context.Context, id string) (store.Token, error) {
	return one(ctx, o, scanToken, "token", id, "SELECT "+tokenColumns+" FROM tokens WHERE id = ?", id)
}

// Tokens implements store.Reads.
func (o Ops) Tokens(ctx context.Context, p store.Page) ([]store.Token, bool, error) {
	return list(ctx, o, scanToken, "tokens", "SELECT "+tokenColumns+" FROM tokens WHERE 1=1", nil, p)
}

// CountTokens implements store.Reads.
func (o Ops) CountTokens(ctx context.Context) (int, error) {
	return value[int](ctx, o, "SELECT count(*) FROM tokens")
}

// Idempotency implements store.Reads.
func (o Ops) Idempotency(ctx context.Context, tokenID, key string) (store.Idempotency, error) {
	return one(ctx, o, scanIdempotency, "idempotency key", key,
		"SELECT "+idempotencyColumns+" FROM idempotency_keys WHERE token_id = ? AND key = ?", tokenID, key)
}
