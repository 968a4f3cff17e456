package sqlite

import (
	"context"

	"github.com/berth-sh/berth/internal/store"
)

// Reads are sqlrows' on the read-only pool, but for the two rows that every request
// reads, which come from the read cache (cache.go) once read.

// Environment implements store.Reads, through the read cache.
func (d *driver) Environment(ctx context.Context, id string) (store.Environment, error) {
	if e, ok := d.cache.environment(id); ok {
		return e, nil
	}
	gen := d.cache.generation()
	e, err := d.Ops.Environment(ctx, id)
	if err == nil {
		d.cache.putEnvironment(gen, e)
	}
	return e, err
}

// TokenByHash implements store.Reads, through the read cache; unknown hashes are looked
// up every time.
func (d *driver) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	if t, ok := d.cache.token(hash); ok {
		return t, nil
	}
	gen := d.cache.generation()
	t, err := d.Ops.TokenByHash(ctx, hash)
	if err == nil {
		d.cache.putToken(gen, t)
	}
	return t, err
}
