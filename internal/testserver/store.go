package testserver

import (
	"context"
	"os"
	"testing"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/store/sqlite"
)

// StoreEnvVar selects the store of the tests that run on either: sqlite (the default) or
// postgres (a fresh schema on the server of BERTH_TEST_DATABASE_URL). `make test` runs the
// API suite once with each.
const StoreEnvVar = "BERTH_TEST_API_STORE"

// StoreName is the store the tests run on: "sqlite" or "postgres".
func StoreName(t testing.TB) string {
	switch v := os.Getenv(StoreEnvVar); v {
	case "", "sqlite":
		return "sqlite"
	case "postgres":
		return "postgres"
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", StoreEnvVar, v)
		return ""
	}
}

// OpenStore opens a fresh, empty store of the kind StoreName names. The test closes it
// (Server does), so that a test under testing/synctest can close it inside its bubble.
func OpenStore(t testing.TB) store.Store {
	t.Helper()
	var st store.Store
	var err error
	if StoreName(t) == "postgres" {
		st, err = postgres.Open(context.Background(), pgtest.URL(t))
	} else {
		st, err = sqlite.Open(context.Background(), t.TempDir())
	}
	if err != nil {
		t.Fatalf("open %s store: %v", StoreName(t), err)
	}
	return st
}
