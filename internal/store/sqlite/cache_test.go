package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
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
