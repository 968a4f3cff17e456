package sqlite_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/work"
)

func openStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A revocation answered by the store holds for every read after it, even while other
// readers keep the token in the cache warm: no read that starts after RevokeToken has
// returned sees the token unrevoked.
func TestCachedTokenRevocationIsImmediate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	for round := range 20 {
		tok := store.Token{ID: id.New(id.Token), Name: "t", Role: "admin", Hash: id.New(id.Token), CreatedAt: time.Now()}
		if _, err := st.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 { // keep the cache warm and racing with the revocation
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := st.TokenByHash(ctx, tok.Hash); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		time.Sleep(time.Millisecond)
		if _, err := st.RevokeToken(ctx, tok.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			got, err := st.TokenByHash(ctx, tok.Hash)
			if err != nil || got.RevokedAt.IsZero() {
				t.Fatalf("round %d: read after the revocation returned: %+v, %v", round, got, err)
			}
		}
		close(stop)
		wg.Wait()
	}
}

// Environment changes through the store are seen at once by reads that had it cached,
// and what a caller does to a returned environment does not reach the cache.
func TestCachedEnvironmentFollowsWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	now := time.Now()
	env := store.Environment{ID: id.New(id.Environment), Name: "e", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), Metadata: work.Metadata{"k": "v"}, CreatedAt: now, UpdatedAt: now}
	if _, err := st.CreateEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetEnvironment(ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Metadata["k"] = "changed by a caller"
	got.Config[0] = 'X'
	again, err := st.GetEnvironment(ctx, env.ID)
	if err != nil || again.Metadata["k"] != "v" || string(again.Config) != `{"type":"self_hosted"}` {
		t.Fatalf("cached environment changed through a returned copy: %+v, %v", again, err)
	}
	if _, err := st.UpdateEnvironment(ctx, env.ID, func(e *store.Environment) error {
		e.ArchivedAt = now
		e.Name = "renamed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if again, err = st.GetEnvironment(ctx, env.ID); err != nil || again.ArchivedAt.IsZero() || again.Name != "renamed" {
		t.Fatalf("after archive and rename: %+v, %v", again, err)
	}
	if err := st.DeleteEnvironment(ctx, env.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetEnvironment(ctx, env.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
}

// A token revoked by another process on the same database (an offline `berth token
// revoke` next to a running server) is refused by the server's store soon after, though
// the server had it cached.
func TestTokenRevokedByAnotherProcessLeavesTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	server := openStore(t, dir)
	tok := store.Token{ID: id.New(id.Token), Name: "t", Role: "admin", Hash: id.New(id.Token), CreatedAt: time.Now()}
	if _, err := server.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, err := server.TokenByHash(ctx, tok.Hash); err != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("before: %+v, %v", got, err)
	}
	offline := openStore(t, dir)
	if _, err := offline.RevokeToken(ctx, tok.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	deadline := revoked.Add(10 * time.Second) // a bound on failure, far above the 50 ms check
	for {
		got, err := server.TokenByHash(ctx, tok.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if !got.RevokedAt.IsZero() {
			t.Logf("seen revoked %v after the other process's commit", time.Since(revoked).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's store still returns the token unrevoked")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
