package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

const workColumns = `id, environment_id, session_id, state, metadata, created_at, acknowledged_at, started_at,
	latest_heartbeat_at, stop_requested_at, stopped_at, delivered_at, delivered_to, deliveries, acked_by,
	lease_expires_at, ttl_seconds`

func scanWork(r pgx.Row) (work.Item, error) {
	var it work.Item
	var meta, state string
	var created, acked, started, beat, stopReq, stopped, delivered, lease *int64
	if err := r.Scan(&it.ID, &it.EnvironmentID, &it.SessionID, &state, &meta, &created, &acked, &started,
		&beat, &stopReq, &stopped, &delivered, &it.DeliveredTo, &it.Deliveries, &it.AckedBy, &lease, &it.TTLSeconds); err != nil {
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

func insertWork(ctx context.Context, tx pgx.Tx, it work.Item) error {
	_, err := tx.Exec(ctx, "INSERT INTO work ("+workColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
		it.ID, it.EnvironmentID, it.SessionID, string(it.State), metadataJSON(it.Metadata), micros(it.CreatedAt),
		micros(it.AcknowledgedAt), micros(it.StartedAt), micros(it.LatestHeartbeatAt), micros(it.StopRequestedAt),
		micros(it.StoppedAt), micros(it.DeliveredAt), it.DeliveredTo, it.Deliveries, it.AckedBy,
		micros(it.LeaseExpiresAt), it.TTLSeconds)
	return err
}

// updateWork writes every mutable column of it; the row was read FOR UPDATE in the same
// transaction.
func updateWork(ctx context.Context, tx pgx.Tx, it work.Item) error {
	_, err := tx.Exec(ctx, `UPDATE work SET state = $1, metadata = $2, acknowledged_at = $3, started_at = $4,
		latest_heartbeat_at = $5, stop_requested_at = $6, stopped_at = $7, delivered_at = $8, delivered_to = $9,
		deliveries = $10, acked_by = $11, lease_expires_at = $12, ttl_seconds = $13 WHERE id = $14`,
		string(it.State), metadataJSON(it.Metadata), micros(it.AcknowledgedAt), micros(it.StartedAt),
		micros(it.LatestHeartbeatAt), micros(it.StopRequestedAt), micros(it.StoppedAt), micros(it.DeliveredAt),
		it.DeliveredTo, it.Deliveries, it.AckedBy, micros(it.LeaseExpiresAt), it.TTLSeconds, it.ID)
	return err
}

func getWork(ctx context.Context, q querier, environmentID, id, lock string) (work.Item, error) {
	rows, err := query(ctx, q, scanWork, "SELECT "+workColumns+" FROM work WHERE id = $1 AND environment_id = $2"+lock, id, environmentID)
	return one(rows, err, "work", id)
}

// ClaimWork implements store.Store. Claims in one environment take turns, under an
// advisory lock keyed by the environment, and wait for a row that another transaction
// holds rather than skipping it (SKIP LOCKED would): a poll must deliver the oldest
// deliverable item and answer null only when there is none (API.md §4.2), and an ack,
// heartbeat or metadata update holding the oldest row must not hide it. Claims in
// different environments still run side by side.
func (s *Store) ClaimWork(ctx context.Context, environmentID string, c work.Claim) (work.Item, bool, error) {
	workerID, reclaim, now := c.WorkerID, c.Reclaim, c.At
	var out work.Item
	var found bool
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		out, found, err = claimWork(ctx, tx, environmentID, workerID, reclaim, now)
		return err
	})
	if err != nil {
		return work.Item{}, false, fmt.Errorf("claim work in %s: %w", environmentID, err)
	}
	return out, found, nil
}

// claimWork is ClaimWork inside a transaction.
func claimWork(ctx context.Context, tx pgx.Tx, environmentID, workerID string, reclaim time.Duration, now time.Time) (work.Item, bool, error) {
	const deliverable = ` FROM work
		WHERE environment_id = $1 AND state = 'queued' AND (delivered_at IS NULL OR delivered_at <= $2)`
	cutoff := now.Add(-reclaim).UnixMicro()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", environmentID); err != nil {
		return work.Item{}, false, err
	}
	for {
		rows, err := query(ctx, tx, scanWork, "SELECT "+workColumns+deliverable+" ORDER BY id LIMIT 1 FOR UPDATE", environmentID, cutoff)
		if err != nil {
			return work.Item{}, false, err
		}
		if len(rows) == 0 {
			// At READ COMMITTED a row that changed while the claim waited for its lock
			// is re-checked and dropped, and LIMIT 1 then yields nothing even if a
			// younger row qualifies: look again, until nothing qualifies.
			var more bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1"+deliverable+")", environmentID, cutoff).Scan(&more); err != nil || !more {
				return work.Item{}, false, err
			}
			continue
		}
		if !work.Deliverable(rows[0], now, reclaim) {
			return work.Item{}, false, nil
		}
		out, _, _ := work.Deliver(work.Claim{WorkerID: workerID, Reclaim: reclaim, At: now}).Apply(rows[0])
		return out, true, updateWork(ctx, tx, out)
	}
}

// NextReclaim implements store.Store.
func (s *Store) NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (time.Time, bool, error) {
	var at *int64
	err := s.pool.QueryRow(ctx, `SELECT min(delivered_at) FROM work
		WHERE environment_id = $1 AND state = 'queued' AND delivered_at IS NOT NULL`, environmentID).Scan(&at)
	if err != nil || at == nil {
		return time.Time{}, false, err
	}
	return fromMicros(at).Add(reclaim), true, nil
}

// GetWork implements store.Store.
func (s *Store) GetWork(ctx context.Context, environmentID, id string) (work.Item, error) {
	return getWork(ctx, s.pool, environmentID, id, "")
}

// ListWork implements store.Store.
func (s *Store) ListWork(ctx context.Context, environmentID string, p store.Page, states []work.State) ([]work.Item, bool, error) {
	q := "SELECT " + workColumns + " FROM work WHERE environment_id = $1"
	args := []any{environmentID}
	if len(states) > 0 {
		names := make([]string, len(states))
		for i, st := range states {
			names[i] = string(st)
		}
		args = append(args, names)
		q += " AND state = ANY($2)"
	}
	q, args = page(q, args, p)
	rows, err := query(ctx, s.pool, scanWork, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list work: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// UpdateWork implements store.Store.
func (s *Store) UpdateWork(ctx context.Context, environmentID, id string, t work.Transition) (store.Change, error) {
	var ch store.Change
	err := s.tx(ctx, func(tx pgx.Tx) error {
		it, err := getWork(ctx, tx, environmentID, id, " FOR UPDATE")
		if err != nil {
			return err
		}
		ch.Before = it
		next, changed, err := t.Apply(it)
		if err != nil {
			return err
		}
		ch.After, ch.Changed = next, changed
		if !changed {
			return nil
		}
		return updateWork(ctx, tx, next)
	})
	return ch, err
}

// pollerRetention is how long a poller row is kept after its last poll; stats look back
// work.PollerWindow.
const pollerRetention = time.Hour

// WorkStats implements store.Store.
func (s *Store) WorkStats(ctx context.Context, environmentID string, now time.Time) (store.Stats, error) {
	var st store.Stats
	var oldest *int64
	cutoff := now.Add(-work.DefaultReclaim).UnixMicro()
	err := s.pool.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE delivered_at IS NULL OR delivered_at <= $1),
			count(*) FILTER (WHERE delivered_at > $1),
			min(created_at),
			(SELECT count(*) FROM pollers WHERE environment_id = $2 AND last_poll_at >= $3)
		FROM work WHERE environment_id = $2 AND state = 'queued'`, cutoff, environmentID,
		now.Add(-work.PollerWindow).UnixMicro()).Scan(&st.Depth, &st.Pending, &oldest, &st.WorkersPolling)
	if err != nil {
		return st, fmt.Errorf("work stats of %s: %w", environmentID, err)
	}
	st.OldestQueuedAt = fromMicros(oldest)
	return st, nil
}

// RecordPoll implements store.Store. A poller's row is rewritten at most once a second:
// stats count pollers over thirty seconds, and a write per long poll would cost more than
// the poll.
func (s *Store) RecordPoll(ctx context.Context, environmentID, workerID string, now time.Time) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO pollers (environment_id, worker_id, last_poll_at) VALUES ($1, $2, $3)
			ON CONFLICT (environment_id, worker_id) DO UPDATE SET last_poll_at = EXCLUDED.last_poll_at
			WHERE pollers.last_poll_at < EXCLUDED.last_poll_at - 1000000`, environmentID, workerID, now.UnixMicro())
		return err
	})
}

// ExpireLeases implements store.Store. Each item is handled in its own transaction that
// locks its session first and then the item, re-reading the item so that an item
// heartbeated or expired (by another replica) since the scan is left alone.
func (s *Store) ExpireLeases(ctx context.Context, now time.Time, newID func() string) ([]store.Expiry, error) {
	var out []store.Expiry
	after := ""
	for {
		done, more, last, err := s.expireBatch(ctx, now, newID, after)
		out = append(out, done...)
		if err != nil || !more {
			return out, err
		}
		after = last
	}
}

// expiryBatch bounds one scan of ExpireLeases, so that a backlog of expired leases is
// worked through in pieces.
const expiryBatch = 1000

// expireBatch is one round of ExpireLeases over at most expiryBatch candidates with IDs
// after the given one; more reports whether candidates may remain.
func (s *Store) expireBatch(ctx context.Context, now time.Time, newID func() string, after string) (out []store.Expiry, more bool, last string, err error) {
	type key struct{ env, id, session string }
	// <= on the microsecond value: a lease that ended within now's microsecond is a
	// candidate, and work.ExpireLease decides to the nanosecond.
	keys, err := query(ctx, s.pool, func(r pgx.Row) (key, error) {
		var k key
		return k, r.Scan(&k.env, &k.id, &k.session)
	}, "SELECT environment_id, id, session_id FROM work WHERE lease_expires_at <= $1 AND id > $2 ORDER BY id LIMIT $3",
		now.UnixMicro(), after, expiryBatch)
	if err != nil {
		return nil, false, "", fmt.Errorf("expire leases: %w", err)
	}
	if len(keys) > 0 {
		more, last = len(keys) == expiryBatch, keys[len(keys)-1].id
	}
	for _, k := range keys {
		var exp *store.Expiry
		err := s.tx(ctx, func(tx pgx.Tx) error {
			exp = nil
			sess, serr := getSession(ctx, tx, k.session, " FOR UPDATE")
			if serr != nil && !isNotFound(serr) {
				return serr
			}
			it, err := getWork(ctx, tx, k.env, k.id, " FOR UPDATE")
			if err != nil {
				return err
			}
			requeue := work.RequeuesAfterExpiry(it)
			stopped, ok, _ := work.ExpireLease(now).Apply(it)
			if !ok {
				return nil
			}
			if err := updateWork(ctx, tx, stopped); err != nil {
				return err
			}
			exp = &store.Expiry{Item: stopped}
			if !requeue {
				return nil
			}
			state := work.SessionState{}
			if serr == nil {
				state.Exists, state.Archived = true, !sess.ArchivedAt.IsZero()
				if state.HasLiveItem, err = hasLiveItem(ctx, tx, it.SessionID, it.ID); err != nil {
					return err
				}
			}
			if !work.RequeueAllowed(state) {
				return nil
			}
			fresh := work.New(newID(), it.EnvironmentID, it.SessionID, it.Metadata, now)
			if err := insertWork(ctx, tx, fresh); err != nil {
				return err
			}
			exp.Requeue = &fresh
			return s.notify(ctx, tx, fresh.EnvironmentID)
		})
		if err != nil && !isNotFound(err) {
			return out, false, "", fmt.Errorf("expire lease of %s: %w", k.id, err)
		}
		if exp != nil {
			out = append(out, *exp)
		}
	}
	if len(keys) > 0 {
		// Forget pollers long gone, on the same occasional schedule.
		s.pool.Exec(ctx, "DELETE FROM pollers WHERE last_poll_at < $1", now.Add(-pollerRetention).UnixMicro())
	}
	return out, more, last, nil
}

// NextLeaseExpiry implements store.Store.
func (s *Store) NextLeaseExpiry(ctx context.Context) (time.Time, bool, error) {
	var at *int64
	err := s.pool.QueryRow(ctx, "SELECT min(lease_expires_at) FROM work WHERE lease_expires_at IS NOT NULL").Scan(&at)
	if err != nil || at == nil {
		return time.Time{}, false, err
	}
	return fromMicros(at), true, nil
}
