package sqlrows

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

// Read cache of tokens and environments.
//
// Every API request reads its token, and every work request its environment too: in a
// lifecycle run those two reads were 70% of the request handlers' CPU on SQLite, and on
// PostgreSQL a quarter of the statements. Both rows change rarely, so a driver keeps
// them in memory once read, and drops the whole cache (a token's last use, written once a
// minute, only updates its entry: TokenUsed):
//   - before answering any write that touched the tokens or environments tables, once it
//     is committed (those writes call Ops.Cached, and the driver invalidates after its
//     commit), so a revocation or an archive through this store holds for every request
//     after it has been answered;
//   - when another process or replica has committed such a write: SQLite compares PRAGMA
//     data_version, PostgreSQL hears a notice that those writes send with their commit;
//     and on PostgreSQL, where a notice can be late or lost with its connection, an entry
//     is also trusted for MaxAge at most, and nothing is kept while the replica is not
//     listening (Disable).
//
// A read that raced with an invalidation does not refill the cache: fills carry the
// generation they started under and are dropped if it has moved on.
type ReadCache struct {
	// MaxAge bounds how long an entry is trusted (0: until the next invalidation).
	MaxAge time.Duration
	// Now is the clock of MaxAge; nil means time.Now.
	Now func() time.Time

	mu     sync.Mutex
	off    bool // reads go to the database and are not kept (Disable)
	gen    uint64
	tokens map[string]cached[store.Token]       // by hash
	envs   map[string]cached[store.Environment] // by ID
}

type cached[T any] struct {
	v  T
	at time.Time
}

// maxCached bounds each map; past it the map starts over. Tokens and environments number
// in the tens or hundreds in practice.
const maxCached = 10_000

// NewReadCache returns an empty cache whose entries are trusted for maxAge (0: until the
// next invalidation).
func NewReadCache(maxAge time.Duration) *ReadCache {
	return &ReadCache{MaxAge: maxAge, tokens: map[string]cached[store.Token]{}, envs: map[string]cached[store.Environment]{}}
}

func (c *ReadCache) now() time.Time {
	if c.MaxAge == 0 {
		return time.Time{}
	}
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// TokenByHash returns the token from the cache, or from read, which it then keeps.
// Unknown hashes are read every time.
func (c *ReadCache) TokenByHash(ctx context.Context, hash string, read func(context.Context, string) (store.Token, error)) (store.Token, error) {
	return through(c, c.tokens, hash, ctx, read, func(t store.Token) store.Token { return t })
}

// Environment returns the environment from the cache, or from read, which it then keeps.
func (c *ReadCache) Environment(ctx context.Context, id string, read func(context.Context, string) (store.Environment, error)) (store.Environment, error) {
	return through(c, c.envs, id, ctx, read, cloneEnvironment)
}

func through[T any](c *ReadCache, m map[string]cached[T], key string, ctx context.Context,
	read func(context.Context, string) (T, error), clone func(T) T) (T, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := m[key]
	gen, off := c.gen, c.off
	c.mu.Unlock()
	if off {
		return read(ctx, key)
	}
	if ok && (c.MaxAge == 0 || now.Sub(e.at) < c.MaxAge) {
		return clone(e.v), nil
	}
	v, err := read(ctx, key)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		if len(m) >= maxCached {
			clear(m)
		}
		m[key] = cached[T]{clone(v), now}
	}
	return v, nil
}

// Disable drops everything cached, and has reads go to the database without keeping
// anything until Enable.
func (c *ReadCache) Disable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = true
	c.invalidateLocked()
}

// Enable drops everything cached (what was read while disabled may be old), and has
// reads kept again.
func (c *ReadCache) Enable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = false
	c.invalidateLocked()
}

// Enabled reports whether reads are kept.
func (c *ReadCache) Enabled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.off
}

// TokenUsed sets the last_used_at of the kept token id to at, if it is earlier. A token's
// last use is written about once a minute per token in use (store.DB.TouchToken), too
// often to drop the whole cache each time, on every replica: so that write does not
// mark the cache (Ops.TouchToken), and the driver updates its own entry after the commit
// instead. Other replicas keep the time they read, and write their own touch when it is a
// minute old there.
func (c *ReadCache) TokenUsed(id string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for hash, e := range c.tokens {
		if e.v.ID == id && e.v.LastUsedAt.Before(at) {
			e.v.LastUsedAt = at
			c.tokens[hash] = e
		}
	}
}

// Invalidate drops everything cached and turns away fills begun before it.
func (c *ReadCache) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidateLocked()
}

func (c *ReadCache) invalidateLocked() {
	c.gen++
	clear(c.tokens)
	clear(c.envs)
}

// cloneEnvironment copies the parts of e that a caller could change in place.
func cloneEnvironment(e store.Environment) store.Environment {
	e.Metadata = e.Metadata.Clone()
	e.Config = slices.Clone(e.Config)
	return e
}
