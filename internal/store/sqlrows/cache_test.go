package sqlrows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// The cache keeps what it read, until an invalidation or, with MaxAge, until the entry is
// that old; a read that began before an invalidation does not fill it.
func TestReadCache(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	reads := 0
	version := "v1"
	read := func(_ context.Context, hash string) (store.Token, error) {
		reads++
		if hash == "unknown" {
			return store.Token{}, store.ErrNotFound
		}
		return store.Token{ID: "tok_1", Hash: hash, Name: version}, nil
	}
	get := func(c *sqlrows.ReadCache, want string, wantReads int) {
		t.Helper()
		tok, err := c.TokenByHash(ctx, "h", read)
		if err != nil || tok.Name != want || reads != wantReads {
			t.Fatalf("TokenByHash = %q, %v after %d reads; want %q after %d", tok.Name, err, reads, want, wantReads)
		}
	}

	c := sqlrows.NewReadCache(time.Second)
	c.Now = func() time.Time { return now }
	get(c, "v1", 1)
	version = "v2"
	get(c, "v1", 1) // cached
	now = now.Add(999 * time.Millisecond)
	get(c, "v1", 1) // still trusted
	now = now.Add(time.Millisecond)
	get(c, "v2", 2) // as old as MaxAge: read again
	version = "v3"
	c.Invalidate()
	get(c, "v3", 3)
	if _, err := c.TokenByHash(ctx, "unknown", read); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}
	if _, err := c.TokenByHash(ctx, "unknown", read); err == nil || reads != 5 {
		t.Fatalf("an unknown hash is read every time: %d reads", reads)
	}

	// Without MaxAge, only an invalidation ends an entry.
	forever := sqlrows.NewReadCache(0)
	reads = 0
	get(forever, "v3", 1)
	version = "v4"
	now = now.Add(time.Hour)
	get(forever, "v3", 1)
	forever.Invalidate()
	get(forever, "v4", 2)

	// A read that an invalidation overtakes returns what it read but keeps nothing.
	reads = 0
	racing := sqlrows.NewReadCache(0)
	version = "old"
	tok, err := racing.TokenByHash(ctx, "h", func(ctx context.Context, hash string) (store.Token, error) {
		racing.Invalidate() // a write committed while this read ran
		return read(ctx, hash)
	})
	if err != nil || tok.Name != "old" {
		t.Fatalf("racing read = %+v, %v", tok, err)
	}
	version = "new"
	get(racing, "new", 2)
}

// A token's last use updates its entry in place: the cache keeps it, and the next read
// sees the new time without reading the database.
func TestReadCacheTokenUsed(t *testing.T) {
	ctx := context.Background()
	reads := 0
	read := func(_ context.Context, hash string) (store.Token, error) {
		reads++
		return store.Token{ID: "tok_1", Hash: hash}, nil
	}
	c := sqlrows.NewReadCache(0)
	if _, err := c.TokenByHash(ctx, "h", read); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0)
	c.TokenUsed("tok_1", at)
	c.TokenUsed("tok_1", at.Add(-time.Minute)) // an earlier touch does not go back
	c.TokenUsed("tok_2", at.Add(time.Hour))    // nor does another token's
	tok, err := c.TokenByHash(ctx, "h", read)
	if err != nil || !tok.LastUsedAt.Equal(at) || reads != 1 {
		t.Fatalf("after TokenUsed: last used %v, %v, %d reads; want %v from the cache (1 read)", tok.LastUsedAt, err, reads, at)
	}
}
