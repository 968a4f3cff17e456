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
)

// TestConformance runs the storage contract's suite on PostgreSQL, each subtest in a
// fresh schema.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		st, err := postgres.Open(context.Background(), pgtest.URL(t))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

// IDs are made in commit order across replicas whatever their clocks say: after a replica
// whose clock runs a day ahead made an ID, another replica's next ID is above it.
func TestIDsStayAboveThoseOfAnotherReplica(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := context.Background()
	a, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
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
