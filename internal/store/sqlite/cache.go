package sqlite

import (
	"slices"
	"sync"

	"github.com/berth-sh/berth/internal/store"
)

// Read cache of tokens and environments.
//
// Every API request reads its token, and every work request its environment too: in a
// lifecycle run those two reads were 70% of the request handlers' CPU. Both rows change
// rarely, so the store keeps them in memory once read, and drops the whole cache:
//   - before answering any write that touched the tokens or environments tables, once it
//     is committed (the writes to those tables mark their batch: writer.go), so a
//     revocation or an archive through this store holds for every request after it has
//     been answered;
//   - when another process has committed to the database: after each batch and at least
//     every externalCheck the writer compares PRAGMA data_version, which on the writer
//     connection changes only through other connections (this store's readers never
//     write). That is the offline `berth token revoke` run next to a server: the server
//     refuses the token within externalCheck of the revocation's commit.
//
// A read that raced with an invalidation does not refill the cache: fills carry the
// generation they started under and are dropped if it has moved on.
type readCache struct {
	mu     sync.Mutex
	gen    uint64
	tokens map[string]store.Token       // by hash
	envs   map[string]store.Environment // by ID
}

// maxCached bounds each map; past it the map starts over. Tokens and environments number
// in the tens or hundreds in practice.
const maxCached = 10_000

func newReadCache() *readCache {
	return &readCache{tokens: map[string]store.Token{}, envs: map[string]store.Environment{}}
}

// generation returns the generation to pass to a fill of what is read next.
func (c *readCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *readCache) token(hash string) (store.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tokens[hash]
	return t, ok
}

func (c *readCache) putToken(gen uint64, t store.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.tokens) >= maxCached {
		clear(c.tokens)
	}
	c.tokens[t.Hash] = t
}

func (c *readCache) environment(id string) (store.Environment, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.envs[id]
	return cloneEnvironment(e), ok
}

func (c *readCache) putEnvironment(gen uint64, e store.Environment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.envs) >= maxCached {
		clear(c.envs)
	}
	c.envs[e.ID] = cloneEnvironment(e)
}

// invalidate drops everything cached and turns away fills begun before it.
func (c *readCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
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
