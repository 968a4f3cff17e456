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

const sessionColumns = `id, environment_id, agent, title, metadata, archived_at, created_at, updated_at,
	EXISTS (SELECT 1 FROM work w WHERE w.session_id = sessions.id AND w.state <> 'stopped' AND w.state <> 'queued')`

func scanSession(r pgx.Row) (store.Session, error) {
	var s store.Session
	var agent, meta string
	var archived, created, updated *int64
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

// getSession reads a session; lock is "" or " FOR UPDATE" (which locks the session row
// only, not the work rows of the derived status).
func getSession(ctx context.Context, q querier, id, lock string) (store.Session, error) {
	sql := "SELECT " + sessionColumns + " FROM sessions WHERE id = $1"
	if lock != "" {
		sql += " FOR UPDATE OF sessions"
	}
	rows, err := query(ctx, q, scanSession, sql, id)
	return one(rows, err, "session", id)
}

func insertEvents(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	for _, e := range events {
		if _, err := tx.Exec(ctx, "INSERT INTO events (id, session_id, type, body, created_at) VALUES ($1, $2, $3, $4, $5)",
			e.ID, e.SessionID, e.Type, string(e.Body), micros(e.CreatedAt)); err != nil {
			return err
		}
	}
	return nil
}

// CreateSession implements store.Store.
func (s *Store) CreateSession(ctx context.Context, sess store.Session, events []store.Event, item *work.Item) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		if err := createSession(ctx, tx, sess, events, item); err != nil || item == nil {
			return err
		}
		return s.notify(ctx, tx, item.EnvironmentID)
	})
}

// CreateSessionAndClaim implements store.Store. The item goes to this replica's poller,
// so other replicas are told of new work only when an older item was delivered instead
// and the new one still waits.
func (s *Store) CreateSessionAndClaim(ctx context.Context, sess store.Session, events []store.Event, item work.Item,
	workerID string, reclaim time.Duration, now time.Time) (work.Item, bool, error) {
	var out work.Item
	var found bool
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := createSession(ctx, tx, sess, events, &item); err != nil {
			return err
		}
		var err error
		if out, found, err = claimWork(ctx, tx, sess.EnvironmentID, workerID, reclaim, now); err != nil {
			return err
		}
		if !found || out.ID != item.ID {
			return s.notify(ctx, tx, item.EnvironmentID)
		}
		return nil
	})
	if err != nil {
		return work.Item{}, false, err
	}
	return out, found, nil
}

func createSession(ctx context.Context, tx pgx.Tx, sess store.Session, events []store.Event, item *work.Item) error {
	if _, err := getEnvironment(ctx, tx, sess.EnvironmentID, " FOR SHARE"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, environment_id, agent, title, metadata, archived_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, sess.ID, sess.EnvironmentID, string(sess.Agent), sess.Title,
		metadataJSON(sess.Metadata), micros(sess.ArchivedAt), micros(sess.CreatedAt), micros(sess.UpdatedAt)); err != nil {
		return err
	}
	if err := insertEvents(ctx, tx, events); err != nil {
		return err
	}
	if item == nil {
		return nil
	}
	return insertWork(ctx, tx, *item)
}

// GetSession implements store.Store.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	return getSession(ctx, s.pool, id, "")
}

// ListSessions implements store.Store.
func (s *Store) ListSessions(ctx context.Context, p store.Page, environmentID string, includeArchived bool) ([]store.Session, bool, error) {
	q := "SELECT " + sessionColumns + " FROM sessions WHERE true"
	var args []any
	if environmentID != "" {
		args = append(args, environmentID)
		q += fmt.Sprintf(" AND environment_id = $%d", len(args))
	}
	if !includeArchived {
		q += " AND archived_at IS NULL"
	}
	q, args = page(q, args, p)
	rows, err := query(ctx, s.pool, scanSession, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list sessions: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// UpdateSession implements store.Store.
func (s *Store) UpdateSession(ctx context.Context, id string, fn func(*store.Session) error) (store.Session, error) {
	var out store.Session
	err := s.tx(ctx, func(tx pgx.Tx) error {
		sess, err := getSession(ctx, tx, id, " FOR UPDATE")
		if err != nil {
			return err
		}
		if err := fn(&sess); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE sessions SET agent = $1, title = $2, metadata = $3, archived_at = $4, updated_at = $5 WHERE id = $6",
			string(sess.Agent), sess.Title, metadataJSON(sess.Metadata), micros(sess.ArchivedAt), micros(sess.UpdatedAt), id)
		out = sess
		return err
	})
	return out, err
}

// updateLive applies fn to every live item of a session (its row already locked) and
// returns the live items as fn left them.
func updateLive(ctx context.Context, tx pgx.Tx, sessionID string, fn func(work.Item) (work.Item, bool)) ([]work.Item, error) {
	items, err := query(ctx, tx, scanWork, "SELECT "+workColumns+" FROM work WHERE session_id = $1 AND state <> 'stopped' ORDER BY id FOR UPDATE", sessionID)
	if err != nil {
		return nil, err
	}
	out := make([]work.Item, 0, len(items))
	for _, it := range items {
		next, changed := fn(it)
		if changed {
			if err := updateWork(ctx, tx, next); err != nil {
				return nil, err
			}
		}
		out = append(out, next)
	}
	return out, nil
}

// UpdateSessionWork implements store.Store.
func (s *Store) UpdateSessionWork(ctx context.Context, id string, fn func(work.Item) (work.Item, bool)) ([]work.Item, error) {
	var out []work.Item
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := getSession(ctx, tx, id, " FOR UPDATE"); err != nil {
			return err
		}
		var err error
		out, err = updateLive(ctx, tx, id, fn)
		return err
	})
	return out, err
}

// DeleteSession implements store.Store.
func (s *Store) DeleteSession(ctx context.Context, id string, now time.Time) ([]work.Item, error) {
	var out []work.Item
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := getSession(ctx, tx, id, " FOR UPDATE"); err != nil {
			return err
		}
		stop := func(it work.Item) (work.Item, bool) {
			next, changed, _ := work.Stop(true, now).Apply(it)
			return next, changed
		}
		var err error
		if out, err = updateLive(ctx, tx, id, stop); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM events WHERE session_id = $1", id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM sessions WHERE id = $1", id)
		return err
	})
	return out, err
}

func hasLiveItem(ctx context.Context, q querier, sessionID, exceptID string) (bool, error) {
	rows, err := q.Query(ctx, "SELECT 1 FROM work WHERE session_id = $1 AND state <> 'stopped' AND id <> $2 LIMIT 1", sessionID, exceptID)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// AppendEvents implements store.Store. The session row is locked, so that two messages to
// the same dormant session cannot both see it without live work.
func (s *Store) AppendEvents(ctx context.Context, sessionID string, events []store.Event, newItem func(store.Session) work.Item) (*work.Item, error) {
	var queued *work.Item
	err := s.tx(ctx, func(tx pgx.Tx) error {
		queued = nil
		sess, err := getSession(ctx, tx, sessionID, " FOR UPDATE")
		if err != nil {
			return err
		}
		if err := insertEvents(ctx, tx, events); err != nil {
			return err
		}
		if newItem == nil {
			return nil
		}
		env, err := getEnvironment(ctx, tx, sess.EnvironmentID, "")
		if err != nil {
			return err
		}
		live, err := hasLiveItem(ctx, tx, sessionID, "")
		if err != nil {
			return err
		}
		state := work.SessionState{Exists: true, Archived: !sess.ArchivedAt.IsZero(), HasLiveItem: live}
		for _, e := range events {
			if work.Wakes(e.Type, env.SelfHosted(), state) {
				it := newItem(sess)
				if err := insertWork(ctx, tx, it); err != nil {
					return err
				}
				queued = &it
				return s.notify(ctx, tx, it.EnvironmentID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return queued, nil
}

func scanEvent(r pgx.Row) (store.Event, error) {
	var e store.Event
	var body string
	var created *int64
	err := r.Scan(&e.ID, &e.SessionID, &e.Type, &body, &created)
	e.Body, e.CreatedAt = json.RawMessage(body), fromMicros(created)
	return e, err
}

// ListEvents implements store.Store.
func (s *Store) ListEvents(ctx context.Context, sessionID string, p store.Page) ([]store.Event, bool, error) {
	if _, err := getSession(ctx, s.pool, sessionID, ""); err != nil {
		return nil, false, err
	}
	q, args := page("SELECT id, session_id, type, body, created_at FROM events WHERE session_id = $1", []any{sessionID}, p)
	rows, err := query(ctx, s.pool, scanEvent, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list events: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}
