package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/store/storetest"
	"github.com/berth-sh/berth/internal/testserver"
)

// TestConformance runs the storage contract's suite on PostgreSQL, each subtest in a
// fresh schema, with the store listening as a server's does (so keeping the tokens and
// environments it reads).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		st, err := postgres.Open(context.Background(), pgtest.URL(t))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		ctx, stop := context.WithCancel(context.Background())
		listened := make(chan struct{})
		go func() { defer close(listened); st.ListenCache(ctx) }()
		t.Cleanup(func() { stop(); <-listened; st.Close() })
		testserver.WaitFor(t, "the store listens", func() bool { return postgres.CacheInUse(st) })
		return st
	})
}

// IDs are made in commit order across replicas whatever their clocks say: after a replica
// whose clock runs a day ahead made an ID, another replica's next ID is above it.
func TestIDsStayAboveThoseOfAnotherReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, rs := openReplicas(t, 2)
	a, b := rs[0], rs[1]
	env := func(st *postgres.Store) string {
		t.Helper()
		e, err := st.CreateEnvironment(ctx, store.Environment{Name: "n", ConfigType: "cloud", Config: []byte(`{"type":"cloud"}`),
			CreatedAt: time.Now(), UpdatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	first := env(a)
	// What a replica a day ahead leaves in the sequence when it makes an ID.
	ahead := "env_" + fmt.Sprintf("%012x", time.Now().Add(24*time.Hour).UnixMilli()) + "7000800000000000000a"
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE id_sequence SET last_id = $1", ahead); err != nil {
		t.Fatal(err)
	}
	if second := env(b); second <= ahead || second <= first {
		t.Fatalf("replica B made %s after %s and the sequence's %s", second, first, ahead)
	}
	if third := env(a); third <= ahead {
		t.Fatalf("replica A made %s after the sequence's %s", third, ahead)
	}
}

// A replica keeps the tokens and environments it read while it listens; another
// replica's revocation or archive reaches it through the notice sent with that write's
// commit.
func TestAnotherReplicasWritesLeaveTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, rs := openReplicas(t, 2)
	a, b := rs[0], rs[1]
	if postgres.CacheInUse(b) {
		t.Fatal("B keeps what it reads before it listens")
	}
	lctx, stop := context.WithCancel(ctx)
	listened := make(chan struct{})
	go func() { defer close(listened); b.ListenCache(lctx) }()
	defer func() { stop(); <-listened }()
	testserver.WaitFor(t, "B listens", func() bool { return postgres.CacheInUse(b) })
	now := time.Now()
	tok := store.Token{Name: "t", Role: "admin", Hash: "hash-" + fmt.Sprint(now.UnixNano()), CreatedAt: now}
	tok, err := a.CreateToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	env, err := a.CreateEnvironment(ctx, store.Environment{Name: "n", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	// B reads both, and keeps them.
	if got, err := b.TokenByHash(ctx, tok.Hash); err != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("B before: %+v, %v", got, err)
	}
	if got, err := b.GetEnvironment(ctx, env.ID); err != nil || !got.ArchivedAt.IsZero() {
		t.Fatalf("B before: %+v, %v", got, err)
	}
	if _, err := a.RevokeToken(ctx, tok.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateEnvironment(ctx, env.ID, func(e *store.Environment) error { e.ArchivedAt = now; return nil }); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	testserver.WaitFor(t, "B sees the revocation", func() bool {
		got, err := b.TokenByHash(ctx, tok.Hash)
		if err != nil {
			t.Fatal(err)
		}
		return !got.RevokedAt.IsZero()
	})
	testserver.WaitFor(t, "B sees the archive", func() bool {
		got, err := b.GetEnvironment(ctx, env.ID)
		if err != nil {
			t.Fatal(err)
		}
		return !got.ArchivedAt.IsZero()
	})
	t.Logf("B saw both %v after A's answers", time.Since(done).Round(time.Microsecond))
}

// Without its listener a replica keeps nothing: another replica's revocation holds on its
// next read.
func TestWithoutItsListenerAReplicaReadsEveryTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, rs := openReplicas(t, 2)
	a, b := rs[0], rs[1]
	now := time.Now()
	tok, err := a.CreateToken(ctx, store.Token{Name: "t", Role: "admin", Hash: "hash-" + fmt.Sprint(now.UnixNano()), CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TokenByHash(ctx, tok.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeToken(ctx, tok.ID, now); err != nil {
		t.Fatal(err)
	}
	if got, err := b.TokenByHash(ctx, tok.Hash); err != nil || got.RevokedAt.IsZero() {
		t.Fatalf("B after A's revocation: %+v, %v; want it revoked", got, err)
	}
}

// openReplicas opens n stores on one fresh database, as n replicas would, and returns the
// database's URL with them; the test closes them.
func openReplicas(t *testing.T, n int) (url string, _ []*postgres.Store) {
	t.Helper()
	url = pgtest.URL(t)
	out := make([]*postgres.Store, n)
	for i := range out {
		st, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out[i] = st
	}
	return url, out
}
