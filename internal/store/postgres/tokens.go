package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berth-sh/berth/internal/store"
)

const tokenColumns = "id, name, role, environment_id, hash, created_at, last_used_at, revoked_at"

func scanToken(r pgx.Row) (store.Token, error) {
	var t store.Token
	var created, used, revoked *int64
	err := r.Scan(&t.ID, &t.Name, &t.Role, &t.EnvironmentID, &t.Hash, &created, &used, &revoked)
	t.CreatedAt, t.LastUsedAt, t.RevokedAt = fromMicros(created), fromMicros(used), fromMicros(revoked)
	return t, err
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tokens ("+tokenColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			t.ID, t.Name, t.Role, t.EnvironmentID, t.Hash, micros(t.CreatedAt), micros(t.LastUsedAt), micros(t.RevokedAt))
		return err
	})
}

// firstTokenLock serialises CreateFirstToken across replicas: under READ COMMITTED two
// transactions would otherwise both see an empty table.
const firstTokenLock = 0x746f6b31 // "tok1"

// CreateFirstToken implements store.Store.
func (s *Store) CreateFirstToken(ctx context.Context, t store.Token) (bool, error) {
	created := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", firstTokenLock); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "INSERT INTO tokens ("+tokenColumns+") SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM tokens)",
			t.ID, t.Name, t.Role, t.EnvironmentID, t.Hash, micros(t.CreatedAt), micros(t.LastUsedAt), micros(t.RevokedAt))
		created = err == nil && tag.RowsAffected() == 1
		return err
	})
	return created, err
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	rows, err := query(ctx, s.pool, scanToken, "SELECT "+tokenColumns+" FROM tokens WHERE hash = $1", hash)
	return one(rows, err, "token", "with that secret")
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, p store.Page) ([]store.Token, bool, error) {
	q, args := page("SELECT "+tokenColumns+" FROM tokens WHERE true", nil, p)
	rows, err := query(ctx, s.pool, scanToken, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list tokens: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string, now time.Time) (store.Token, error) {
	var out store.Token
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", now.UnixMicro(), id); err != nil {
			return err
		}
		rows, err := query(ctx, tx, scanToken, "SELECT "+tokenColumns+" FROM tokens WHERE id = $1", id)
		out, err = one(rows, err, "token", id)
		return err
	})
	return out, err
}

// TouchToken implements store.Store.
func (s *Store) TouchToken(ctx context.Context, id string, now time.Time) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE tokens SET last_used_at = $1 WHERE id = $2", now.UnixMicro(), id)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
		}
		return err
	})
}

// CountTokens implements store.Store.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM tokens").Scan(&n)
	return n, err
}

// ReserveIdempotencyKey implements store.Store.
func (s *Store) ReserveIdempotencyKey(ctx context.Context, rec store.Idempotency) (store.Idempotency, bool, error) {
	var existing store.Idempotency
	var existed bool
	err := s.tx(ctx, func(tx pgx.Tx) error {
		existed = false
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (token_id, key, fingerprint, status, body, created_at)
			VALUES ($1, $2, $3, 0, NULL, $4) ON CONFLICT DO NOTHING`, rec.TokenID, rec.Key, rec.Fingerprint, rec.CreatedAt.UnixMicro())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		existed = true
		var created *int64
		err = tx.QueryRow(ctx, "SELECT token_id, key, fingerprint, status, body, created_at FROM idempotency_keys WHERE token_id = $1 AND key = $2",
			rec.TokenID, rec.Key).Scan(&existing.TokenID, &existing.Key, &existing.Fingerprint, &existing.Status, &existing.Body, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("idempotency key vanished while reserving: %w", store.ErrConflict)
		}
		existing.CreatedAt = fromMicros(created)
		return err
	})
	return existing, existed, err
}

// CompleteIdempotencyKey implements store.Store.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, tokenID, key string, status int, body []byte) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE idempotency_keys SET status = $1, body = $2 WHERE token_id = $3 AND key = $4", status, body, tokenID, key)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("idempotency key %s: %w", key, store.ErrNotFound)
		}
		return err
	})
}

// ReleaseIdempotencyKey implements store.Store.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, tokenID, key string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND status = 0", tokenID, key)
		return err
	})
}

// PruneIdempotencyKeys implements store.Store.
func (s *Store) PruneIdempotencyKeys(ctx context.Context, cutoff time.Time) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM idempotency_keys WHERE created_at < $1", cutoff.UnixMicro())
		return err
	})
}
