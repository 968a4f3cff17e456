package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

const tokenColumns = "id, name, role, environment_id, hash, created_at, last_used_at, revoked_at"

func scanToken(r scanner) (store.Token, error) {
	var t store.Token
	var created, used, revoked sql.NullInt64
	err := r.Scan(&t.ID, &t.Name, &t.Role, &t.EnvironmentID, &t.Hash, &created, &used, &revoked)
	t.CreatedAt, t.LastUsedAt, t.RevokedAt = fromMicros(created), fromMicros(used), fromMicros(revoked)
	return t, err
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	return s.tx(ctx, func(tx *wtx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO tokens ("+tokenColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			t.ID, t.Name, t.Role, t.EnvironmentID, t.Hash, micros(t.CreatedAt), micros(t.LastUsedAt), micros(t.RevokedAt))
		return err
	})
}

// CreateFirstToken implements store.Store; the single writer makes the check and the
// insert one step.
func (s *Store) CreateFirstToken(ctx context.Context, t store.Token) (bool, error) {
	created := false
	err := s.tx(ctx, func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO tokens ("+tokenColumns+") SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM tokens)",
			t.ID, t.Name, t.Role, t.EnvironmentID, t.Hash, micros(t.CreatedAt), micros(t.LastUsedAt), micros(t.RevokedAt))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		created = n == 1
		return nil
	})
	return created, err
}

// TokenByHash implements store.Store. Tokens found are kept in the read cache
// (cache.go); unknown hashes are looked up every time.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	if t, ok := s.cache.token(hash); ok {
		return t, nil
	}
	gen := s.cache.generation()
	rows, err := query(ctx, s.rd, scanToken, "SELECT "+tokenColumns+" FROM tokens WHERE hash = ?", hash)
	t, err := one(rows, err, "token", "with that secret")
	if err == nil {
		s.cache.putToken(gen, t)
	}
	return t, err
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, p store.Page) ([]store.Token, bool, error) {
	q, args := page("SELECT "+tokenColumns+" FROM tokens WHERE 1=1", nil, p)
	rows, err := query(ctx, s.rd, scanToken, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list tokens: %w", err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string, now time.Time) (store.Token, error) {
	var out store.Token
	err := s.tx(ctx, func(tx *wtx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", now.UnixMicro(), id); err != nil {
			return err
		}
		rows, err := query(ctx, tx, scanToken, "SELECT "+tokenColumns+" FROM tokens WHERE id = ?", id)
		out, err = one(rows, err, "token", id)
		return err
	})
	return out, err
}

// TouchToken implements store.Store.
func (s *Store) TouchToken(ctx context.Context, id string, now time.Time) error {
	return s.tx(ctx, func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, "UPDATE tokens SET last_used_at = ? WHERE id = ?", now.UnixMicro(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("token", id)
		}
		return nil
	})
}

// CountTokens implements store.Store.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.rd.QueryRowContext(ctx, "SELECT count(*) FROM tokens").Scan(&n)
	return n, err
}

// ReserveIdempotencyKey implements store.Store.
func (s *Store) ReserveIdempotencyKey(ctx context.Context, rec store.Idempotency) (store.Idempotency, bool, error) {
	var existing store.Idempotency
	var existed bool
	err := s.tx(ctx, func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (token_id, key, fingerprint, status, body, created_at)
			VALUES (?, ?, ?, 0, NULL, ?) ON CONFLICT DO NOTHING`, rec.TokenID, rec.Key, rec.Fingerprint, rec.CreatedAt.UnixMicro())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		existed = true
		var created sql.NullInt64
		err = tx.QueryRowContext(ctx, "SELECT token_id, key, fingerprint, status, body, created_at FROM idempotency_keys WHERE token_id = ? AND key = ?",
			rec.TokenID, rec.Key).Scan(&existing.TokenID, &existing.Key, &existing.Fingerprint, &existing.Status, &existing.Body, &created)
		existing.CreatedAt = fromMicros(created)
		return err
	})
	return existing, existed, err
}

// CompleteIdempotencyKey implements store.Store.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, tokenID, key string, status int, body []byte) error {
	return s.tx(ctx, func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, "UPDATE idempotency_keys SET status = ?, body = ? WHERE token_id = ? AND key = ?", status, body, tokenID, key)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("idempotency key", key)
		}
		return nil
	})
}

// ReleaseIdempotencyKey implements store.Store.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, tokenID, key string) error {
	return s.tx(ctx, func(tx *wtx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE token_id = ? AND key = ? AND status = 0", tokenID, key)
		return err
	})
}

// PruneIdempotencyKeys implements store.Store.
func (s *Store) PruneIdempotencyKeys(ctx context.Context, cutoff time.Time) error {
	return s.tx(ctx, func(tx *wtx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE created_at < ?", cutoff.UnixMicro())
		return err
	})
}
