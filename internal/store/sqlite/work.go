package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

const workColumns = `id, environment_id, session_id, state, metadata, created_at, acknowledged_at, started_at,
	latest_heartbeat_at, stop_requested_at, stopped_at, delivered_at, delivered_to, deliveries, acked_by,
	lease_expires_at, ttl_seconds`

func scanWork(r scanner) (work.Item, error) {
	var it work.Item
	var meta string
	var created, acked, started, beat, stopReq, stopped, delivered, lease sql.NullInt64
	if err := r.Scan(&it.ID, &it.EnvironmentID, &it.SessionID, &it.State, &meta, &created, &acked, &started,
		&beat, &stopReq, &stopped, &delivered, &it.DeliveredTo, &it.Deliveries, &it.AckedBy, &lease, &it.TTLSeconds); err != nil {
		return it, err
	}
	if err := json.Unmarshal([]byte(meta), &it.Metadata); err != nil {
		return it, fmt.Errorf("work %s metadata: %w", it.ID, err)
	}
	it.CreatedAt, it.AcknowledgedAt, it.StartedAt = fromMicros(created), fromMicros(acked), fromMicros(started)
	it.LatestHeartbeatAt, it.StopRequestedAt, it.StoppedAt = fromMicros(beat), fromMicros(stopReq), fromMicros(stopped)
	it.DeliveredAt, it.LeaseExpiresAt = fromMicros(delivered), fromMicros(lease)
	return it, nil
}

func insertWork(ctx context.Context, tx *wtx, it work.Item) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO work ("+workColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		it.ID, it.EnvironmentID, it.SessionID, string(it.State), metadataJSON(it.Metadata), micros(it.CreatedAt),
		micros(it.AcknowledgedAt), micros(it.StartedAt), micros(it.LatestHeartbeatAt), micros(it.StopRequestedAt),
		micros(it.StoppedAt), micros(it.DeliveredAt), it.DeliveredTo, it.Deliveries, it.AckedBy,
		micros(it.LeaseExpiresAt), it.TTLSeconds)
	return err
}

// updateWork writes every mutable column of it. Only ever called with a row read in the
// same write transaction, so nothing can have changed in between.
func updateWork(ctx context.Context, tx *wtx, it work.Item) error {
	_, err := tx.ExecContext(ctx, `UPDATE work SET state = ?, metadata = ?, acknowledged_at = ?, started_at = ?,
		latest_heartbeat_at = ?, stop_requested_at = ?, stopped_at = ?, delivered_at = ?, delivered_to = ?,
		deliveries = ?, acked_by = ?, lease_expires_at = ?, ttl_seconds = ? WHERE id = ?`,
		string(it.State), metadataJSON(it.Metadata), micros(it.AcknowledgedAt), micros(it.StartedAt),
		micros(it.LatestHeartbeatAt), micros(it.StopRequestedAt), micros(it.StoppedAt), micros(it.DeliveredAt),
		it.DeliveredTo, it.Deliveries, it.AckedBy, micros(it.LeaseExpiresAt), it.TTLSeconds, it.ID)
	return err
}

func getWork(ctx context.Context, q queryer, environmentID, id string) (work.Item, error) {
	rows, err := query(ctx, q, scanWork, "SELECT "+workColumns+" FROM work WHERE id = ? AND environment_id = ?", id, environmentID)
	return one(rows, err, "work", id)
}

// ClaimWork implements store.Store. The query walks the partial index of queued items in
// ID order and skips those delivered inside the reclaim window; the single writer makes the
// read and the delivery one atomic step.
func (s *Store) ClaimWork(ctx context.Context, environmentID string, c work.Claim) (work.Item, bool, error) {
	workerID, reclaim, now := c.WorkerID, c.Reclaim, c.At
	cutoff := now.Add(-reclaim).UnixMicro()
	// An empty poll is the common case under parked pollers: answer it from a read
	// connection without queueing for the writer.
	var probe string
	switch err := s.rd.QueryRowContext(ctx, "SELECT id"+deliverable, environmentID, cutoff).Scan(&probe); {
	case errors.Is(err, sql.ErrNoRows):
		return work.Item{}, false, nil
	case err != nil:
		return work.Item{}, false, fmt.Errorf("claim work in %s: %w", environmentID, err)
	}
	var out work.Item
	var found bool
	err := s.tx(ctx, func(tx *wtx) error {
		var err error
		out, found, err = claimWork(ctx, tx, environmentID, workerID, reclaim, now)
		return err
	})
	if err != nil {
		return work.Item{}, false, err
	}
	return out, found, nil
}

// deliverable selects the oldest item of an environment (?1) that is deliverable with a
// reclaim cutoff (?2).
const deliverable = ` FROM work
	WHERE environment_id = ? AND state = 'queued' AND (delivered_at IS NULL OR delivered_at <= ?)
	ORDER BY id LIMIT 1`

// claimWork is ClaimWork inside a write transaction.
func claimWork(ctx context.Context, tx *wtx, environmentID, workerID string, reclaim time.Duration, now time.Time) (work.Item, bool, error) {
	rows, err := query(ctx, tx, scanWork, "SELECT "+workColumns+deliverable, environmentID, now.Add(-reclaim).UnixMicro())
	if err != nil {
		return work.Item{}, false, fmt.Errorf("claim work in %s: %w", environmentID, err)
	}
	if len(rows) == 0 || !work.Deliverable(rows[0], now, reclaim) {
		return work.Item{}, false, nil
	}
	out, _, _ := work.Deliver(work.Claim{WorkerID: workerID, Reclaim: reclaim, At: now}).Apply(rows[0])
	if err := updateWork(ctx, tx, out); err != nil {
		return work.Item{}, false, fmt.Errorf("claim work in %s: %w", environmentID, err)
	}
	return out, true, nil
}

// NextReclaim implements store.Store.
func (s *Store) NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (time.Time, bool, error) {
	var at sql.NullInt64
	err := s.rd.QueryRowContext(ctx, `SELECT min(delivered_at) FROM work
		WHERE environment_id = ? AND state = 'queued' AND delivered_at IS NOT NULL`, environmentID).Scan(&at)
	if err != nil || !at.Valid {
		return time.Time{}, false, err
	}
	return fromMicros(at).Add(reclaim), true, nil
}

// GetWork implements store.Store.
func (s *Store) GetWork(ctx context.Context, environmentID, id string) (work.Item, error) {
	return getWork(ctx, s.rd, environmentID, id)
}

// ListWork implements store.Store.
func (s *Store) ListWork(ctx context.Context, environmentID string, p store.Page, states []work.State) ([]work.Item, bool, error) {
	q := "SELECT " + workColumns + " FROM work WHERE environment_id = ?"
	args := []any{environmentID}
	if len(states) > 0 {
		q += " AND state IN (?" + strings.Repeat(", ?", len(states)-1) + ")"
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	q, args = page(q, args, p)
	rows, err := query(ctx, s.rd, scanWork, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list work: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// UpdateWork implements store.Store.
func (s *Store) UpdateWork(ctx context.Context, environmentID, id string, t work.Transition) (store.Change, error) {
	var ch store.Change
	err := s.tx(ctx, func(tx *wtx) error {
		it, err := getWork(ctx, tx, environmentID, id)
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

// WorkStats implements store.Store.
func (s *Store) WorkStats(ctx context.Context, environmentID string, now time.Time) (store.Stats, error) {
	var st store.Stats
	var oldest sql.NullInt64
	cutoff := now.Add(-work.DefaultReclaim).UnixMicro()
	err := s.rd.QueryRowContext(ctx, `SELECT
			count(*) FILTER (WHERE delivered_at IS NULL OR delivered_at <= ?),
			count(*) FILTER (WHERE delivered_at > ?),
			min(created_at)
		FROM work WHERE environment_id = ? AND state = 'queued'`, cutoff, cutoff, environmentID).
		Scan(&st.Depth, &st.Pending, &oldest)
	if err != nil {
		return st, fmt.Errorf("work stats of %s: %w", environmentID, err)
	}
	st.OldestQueuedAt = fromMicros(oldest)
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	for worker, at := range s.pollers[environmentID] {
		if now.Sub(at) <= work.PollerWindow {
			st.WorkersPolling++
		} else {
			delete(s.pollers[environmentID], worker)
		}
	}
	return st, nil
}

// RecordPoll implements store.Store.
func (s *Store) RecordPoll(_ context.Context, environmentID, workerID string, now time.Time) error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	m := s.pollers[environmentID]
	if m == nil {
		m = map[string]time.Time{}
		s.pollers[environmentID] = m
	}
	m[workerID] = now
	return nil
}

// ExpireLeases implements store.Store.
func (s *Store) ExpireLeases(ctx context.Context, now time.Time, newID func() string) ([]store.Expiry, error) {
	var out []store.Expiry
	after := ""
	for {
		batch, err := s.expireBatch(ctx, now, newID, after)
		out = append(out, batch.done...)
		if err != nil || !batch.more {
			return out, err
		}
		after = batch.last
	}
}

// expireBatch is one round of ExpireLeases over at most expiryBatch candidates with IDs
// after the given one; it reports whether more candidates may remain.
func (s *Store) expireBatch(ctx context.Context, now time.Time, newID func() string, after string) (expiryBatchResult, error) {
	type key struct{ env, id string }
	// <= on the microsecond value: a lease that ended within now's microsecond is a
	// candidate, and work.ExpireLease decides to the nanosecond.
	keys, err := query(ctx, s.rd, func(r scanner) (key, error) {
		var k key
		return k, r.Scan(&k.env, &k.id)
	}, "SELECT environment_id, id FROM work WHERE lease_expires_at <= ? AND id > ? ORDER BY id LIMIT ?", now.UnixMicro(), after, expiryBatch)
	var res expiryBatchResult
	if err != nil {
		return res, fmt.Errorf("expire leases: %w", err)
	}
	res.more = len(keys) == expiryBatch
	if len(keys) > 0 {
		res.last = keys[len(keys)-1].id
	}
	out := &res.done
	for _, k := range keys {
		err := s.tx(ctx, func(tx *wtx) error {
			it, err := getWork(ctx, tx, k.env, k.id)
			if err != nil {
				return err
			}
			requeue := work.RequeuesAfterExpiry(it)
			stopped, ok, _ := work.ExpireLease(now).Apply(it)
			if !ok {
				return nil // heartbeated or stopped since the scan
			}
			if err := updateWork(ctx, tx, stopped); err != nil {
				return err
			}
			exp := store.Expiry{Item: stopped}
			if requeue {
				state := work.SessionState{}
				sess, err := getSession(ctx, tx, it.SessionID)
				switch {
				case err == nil:
					state.Exists, state.Archived = true, !sess.ArchivedAt.IsZero()
					if state.HasLiveItem, err = hasLiveItem(ctx, tx, it.SessionID, it.ID); err != nil {
						return err
					}
				case !isNotFound(err):
					return err
				}
				if work.RequeueAllowed(state) {
					fresh := work.New(newID(), it.EnvironmentID, it.SessionID, it.Metadata, now)
					if err := insertWork(ctx, tx, fresh); err != nil {
						return err
					}
					exp.Requeue = &fresh
				}
			}
			*out = append(*out, exp)
			return nil
		})
		if err != nil && !isNotFound(err) {
			return res, fmt.Errorf("expire lease of %s: %w", k.id, err)
		}
	}
	return res, nil
}

// expiryBatch bounds one scan of ExpireLeases, so that a backlog of expired leases (a
// server that was down for a while) is worked through in pieces.
const expiryBatch = 1000

type expiryBatchResult struct {
	done []store.Expiry
	more bool
	last string
}

// NextLeaseExpiry implements store.Store.
func (s *Store) NextLeaseExpiry(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullInt64
	err := s.rd.QueryRowContext(ctx, "SELECT min(lease_expires_at) FROM work WHERE lease_expires_at IS NOT NULL").Scan(&at)
	if err != nil || !at.Valid {
		return time.Time{}, false, err
	}
	return fromMicros(at), true, nil
}
