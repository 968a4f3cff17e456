package sqlite

import (
	"context"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

// Reads are sqlrows' on the read-only pool, but for the two rows that every request
// reads, which come from the read cache (sqlrows.ReadCache) once read.

// Environment implements store.Reads, through the read cache.
func (d *driver) Environment(ctx context.Context, id string) (store.Environment, error) {
	return d.cache.Environment(ctx, id, d.Ops.Environment)
}

// TokenUsed implements store.TokenUser.
func (d *driver) TokenUsed(id string, at time.Time) { d.cache.TokenUsed(id, at) }

// TokenByHash implements store.Reads, through the read cache; unknown hashes are looked
// up every time.
func (d *driver) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	return d.cache.TokenByHash(ctx, hash, d.Ops.TokenByHash)
}
