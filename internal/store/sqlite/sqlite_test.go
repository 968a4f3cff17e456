package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/store/storetest"
)

// TestConformance runs the storage contract's suite on SQLite, each subtest on a fresh
// database in its own temporary directory.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		st, err := sqlite.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return st
	})
}

// IDs the store makes are above every ID in the file, also one that another process wrote
// with a clock far ahead (an offline `berth token create` next to a running server).
func TestIDsStayAboveThoseOfAnotherProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ahead := "env_" + fmt.Sprintf("%012x", time.Now().Add(24*time.Hour).UnixMilli()) + "7000800000000000000a"
	other, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `INSERT INTO environments (id, name, description, config_type, config, metadata, created_at, updated_at)
		VALUES (?, 'other', '', 'cloud', '{"type":"cloud"}', '{}', 1, 1)`, ahead); err != nil {
		t.Fatal(err)
	}
	e, err := st.CreateEnvironment(ctx, store.Environment{Name: "mine", ConfigType: "cloud", Config: []byte(`{"type":"cloud"}`),
		CreatedAt: time.Now(), UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if e.ID <= ahead {
		t.Fatalf("ID %s made after another process wrote %s is below it", e.ID, ahead)
	}
}
