package postgres_test

import (
	"context"
	"testing"

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
