package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-sh/berth/internal/store/sqlite"
)

// A data directory whose name holds characters that mean something in a URI must hold
// the database itself, not some other file.
func TestOpenDirectoryWithURICharacters(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a dir?with=query#and%20fragment")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err != nil {
		t.Fatalf("database not in the data directory: %v", err)
	}
}
