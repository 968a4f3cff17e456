package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

const envColumns = "id, name, description, config_type, config, metadata, archived_at, created_at, updated_at"

func scanEnvironment(r pgx.Row) (store.Environment, error) {
	var e store.Environment
	var config, meta string
	var archived, created, updated *int64
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
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO environments ("+envColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
			e.ID, e.Name, e.Description, e.ConfigType, string(e.Config), metadataJSON(e.Metadata),
			micros(e.ArchivedAt), micros(e.CreatedAt), micros(e.UpdatedAt))
		return err
	})
}

// getEnvironment reads an environment; lock is "", " FOR SHARE" or " FOR UPDATE".
func getEnvironment(ctx context.Context, q querier, id, lock string) (store.Environment, error) {
	rows, err := query(ctx, q, scanEnvironment, "SELECT "+envColumns+" FROM environments WHERE id = $1"+lock, id)
	return one(rows, err, "environment", id)
}

// GetEnvironment implements store.Store.
func (s *Store) GetEnvironment(ctx context.Context, id string) (store.Environment, error) {
	return getEnvironment(ctx, s.pool, id, "")
}

// ListEnvironments implements store.Store.
func (s *Store) ListEnvironments(ctx context.Context, p store.Page, includeArchived bool) ([]store.Environment, bool, error) {
	q := "SELECT " + envColumns + " FROM environments WHERE true"
	if !includeArchived {
		q += " AND archived_at IS NULL"
	}
	q, args := page(q, nil, p)
	rows, err := query(ctx, s.pool, scanEnvironment, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list environments: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// UpdateEnvironment implements store.Store.
func (s *Store) UpdateEnvironment(ctx context.Context, id string, fn func(*store.Environment) error) (store.Environment, error) {
	var out store.Environment
	err := s.tx(ctx, func(tx pgx.Tx) error {
		e, err := getEnvironment(ctx, tx, id, " FOR UPDATE")
		if err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE environments SET name = $1, description = $2, config_type = $3, config = $4,
			metadata = $5, archived_at = $6, updated_at = $7 WHERE id = $8`,
			e.Name, e.Description, e.ConfigType, string(e.Config), metadataJSON(e.Metadata),
			micros(e.ArchivedAt), micros(e.UpdatedAt), id)
		out = e
		return err
	})
	return out, err
}

// DeleteEnvironment implements store.Store. The environment row is locked FOR UPDATE and
// session creation locks it FOR SHARE, so no session can appear between the check and the
// delete; the foreign key stands behind both.
func (s *Store) DeleteEnvironment(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := getEnvironment(ctx, tx, id, " FOR UPDATE"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM sessions WHERE environment_id = $1", id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("environment %s is referenced by %d sessions: %w", id, n, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM work WHERE environment_id = $1", id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM environments WHERE id = $1", id)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		return fmt.Errorf("environment %s is referenced: %w", id, store.ErrConflict)
	}
	return err
}
