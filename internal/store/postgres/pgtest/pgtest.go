// Package pgtest gives tests a PostgreSQL database of their own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the server the tests use; `make test` (scripts/with-postgres) sets it.
const EnvVar = "BERTH_TEST_DATABASE_URL"

// URL returns a database URL whose search_path is a fresh, empty schema that is dropped
// when the test ends. Tests sharing one server never see each other's tables. Without
// BERTH_TEST_DATABASE_URL the test is skipped, except under CI (CI=true), where that is a
// failure: CI must test both stores.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvVar)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: run the tests with `make test`", EnvVar)
		}
		t.Skipf("%s is not set; `make test` starts a PostgreSQL server for these tests", EnvVar)
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvVar, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvVar, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
