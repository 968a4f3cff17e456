package sqlite

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// One batch of group commit holds functions that succeed, fail before writing, fail after
// writing, and panic after writing: only the successful ones leave rows, each caller gets
// its own outcome, and the transaction stays usable for the functions after a failure.
func TestBatchFailuresUndoOnlyTheirOwnWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	insert := func(tx *tx, id string) error {
		_, err := tx.C.Exec(ctx, `INSERT INTO environments
			(id, name, description, config_type, config, metadata, created_at, updated_at)
			VALUES (?, ?, '', 'self_hosted', '{}', '{}', 1, 1)`, id, id)
		return err
	}
	count := func(tx *tx) (n int, err error) {
		rows, err := tx.C.Query(ctx, `SELECT count(*) FROM environments`)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		rows.Next()
		err = rows.Scan(&n)
		return n, err
	}
	errRule := errors.New("rule refused")
	type step struct {
		name string
		fn   func(*tx) error
		ok   bool // whether its row must exist afterwards
	}
	steps := []step{
		{"ok-1", func(tx *tx) error { return insert(tx, "env_ok1") }, true},
		{"read-then-fail", func(tx *tx) error {
			if _, err := count(tx); err != nil {
				return err
			}
			return errRule
		}, false},
		{"write-then-fail", func(tx *tx) error {
			if err := insert(tx, "env_fail1"); err != nil {
				return err
			}
			if err := insert(tx, "env_fail2"); err != nil {
				return err
			}
			return errRule
		}, false},
		{"ok-2", func(tx *tx) error { return insert(tx, "env_ok2") }, true},
		{"write-then-panic", func(tx *tx) error {
			if err := insert(tx, "env_panic"); err != nil {
				return err
			}
			panic("boom")
		}, false},
		{"duplicate", func(tx *tx) error { return insert(tx, "env_ok1") }, false},
		{"ok-3", func(tx *tx) error {
			// Sees the successful writes before it in the batch, none of the failed ones.
			n, err := count(tx)
			if err != nil {
				return err
			}
			if n != 2 {
				return fmt.Errorf("ok-3 sees %d rows, want 2", n)
			}
			return insert(tx, "env_ok3")
		}, true},
	}
	fns := make([]func(*tx) error, len(steps))
	for i, st := range steps {
		fns[i] = st.fn
	}
	b, err := s.d.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := sqlrows.RunBatch(ctx, b, nil, fns)
	for i, st := range steps {
		err := errs[i]
		if (err == nil) != st.ok {
			t.Errorf("%s: err %v, want success %v", st.name, err, st.ok)
		}
	}
	rows, err := s.d.r.QueryContext(ctx, `SELECT id FROM environments ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		got = append(got, id)
	}
	if fmt.Sprint(got) != "[env_ok1 env_ok2 env_ok3]" {
		t.Errorf("rows after the batch: %v, want [env_ok1 env_ok2 env_ok3]", got)
	}
}
