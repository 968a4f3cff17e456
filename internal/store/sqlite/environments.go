package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

const envColumns = "id, name, description, config_type, config, metadata, archived_at, created_at, updated_at"

func scanEnvironment(r scanner) (store.Environment, error) {
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

func metadataJSON(m work.Metadata) string {
	if m == nil {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return string(b)
}

// CreateEnvironment implements store.Store.
func (s *Store) CreateEnvironment(ctx context.Context, e store.Environment) error {
	return s.tx(ctx, func(tx *wtx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO environments ("+envColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			e.ID, e.Name, e.Description, e.ConfigType, string(e.Config), metadataJSON(e.Metadata),
			micros(e.ArchivedAt), micros(e.CreatedAt), micros(e.UpdatedAt))
		return err
	})
}

func getEnvironment(ctx context.Context, q queryer, id string) (store.Environment, error) {
	rows, err := query(ctx, q, scanEnvironment, "SELECT "+envColumns+" FROM environments WHERE id = ?", id)
	return one(rows, err, "environment", id)
}

// GetEnvironment implements store.Store, through the read cache (cache.go).
func (s *Store) GetEnvironment(ctx context.Context, id string) (store.Environment, error) {
	if e, ok := s.cache.environment(id); ok {
		return e, nil
	}
	gen := s.cache.generation()
	e, err := getEnvironment(ctx, s.rd, id)
	if err == nil {
		s.cache.putEnvironment(gen, e)
	}
	return e, err
}

// ListEnvironments implements store.Store.
func (s *Store) ListEnvironments(ctx context.Context, p store.Page, includeArchived bool) ([]store.Environment, bool, error) {
	q := "SELECT " + envColumns + " FROM environments WHERE 1=1"
	if !includeArchived {
		q += " AND archived_at IS NULL"
	}
	q, args := page(q, nil, p)
	rows, err := query(ctx, s.rd, scanEnvironment, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list environments: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// UpdateEnvironment implements store.Store.
func (s *Store) UpdateEnvironment(ctx context.Context, id string, fn func(*store.Environment) error) (store.Environment, error) {
	var out store.Environment
	err := s.tx(ctx, func(tx *wtx) error {
		e, err := getEnvironment(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE environments SET name = ?, description = ?, config_type = ?, config = ?,
			metadata = ?, archived_at = ?, updated_at = ? WHERE id = ?`,
			e.Name, e.Description, e.ConfigType, string(e.Config), metadataJSON(e.Metadata),
			micros(e.ArchivedAt), micros(e.UpdatedAt), id)
		out = e
		return err
	})
	return out, err
}

// DeleteEnvironment implements store.Store.
func (s *Store) DeleteEnvironment(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *wtx) error {
		if _, err := getEnvironment(ctx, tx, id); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sessions WHERE environment_id = ?", id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("environment %s is referenced by %d sessions: %w", id, n, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM work WHERE environment_id = ?", id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM environments WHERE id = ?", id)
		return err
	})
}
