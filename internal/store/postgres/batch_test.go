package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// A turn's functions each run in a savepoint whose deferred writes go with the next
// function's first statement: an error of a function's own undoes it alone; a deferred
// write that fails in the next function's round trip fails the whole turn, and nothing of
// it commits.
func TestTurnDefersWritesAndFailsWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	insert := func(tx *tx, id string) error { // deferred: nobody waits for it
		return tx.C.Send(ctx, `INSERT INTO environments (id, name, description, config_type, config, metadata, created_at, updated_at)
			VALUES ($1, $1, '', 'self_hosted', '{}', '{}', 1, 1)`, id)
	}
	count := func(tx *tx) (n int, err error) {
		rows, err := tx.C.Query(ctx, `SELECT count(*) FROM environments`)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		rows.Next()
		return n, rows.Scan(&n)
	}
	ids := func() []string {
		rows, err := s.d.pool.Query(ctx, `SELECT id FROM environments ORDER BY id`)
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
		return got
	}
	errRule := errors.New("rule refused")
	type step struct {
		name string
		fn   func(*tx) error
		ok   bool
	}
	run := func(steps []step) []error {
		t.Helper()
		b, err := s.d.beginInserts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fns := make([]func(*tx) error, len(steps))
		for i, st := range steps {
			fns[i] = st.fn
		}
		errs := sqlrows.RunBatch(ctx, b, nil, fns)
		for i, st := range steps {
			if (errs[i] == nil) != st.ok {
				t.Errorf("%s: err %v, want success %v", st.name, errs[i], st.ok)
			}
		}
		return errs
	}

	run([]step{
		{"ok-1", func(tx *tx) error { return insert(tx, "env_ok1") }, true},
		{"read-then-fail", func(tx *tx) error {
			if _, err := count(tx); err != nil { // carries ok-1's writes
				return err
			}
			return errRule
		}, false},
		{"write-then-fail", func(tx *tx) error {
			if err := insert(tx, "env_fail1"); err != nil {
				return err
			}
			if _, err := count(tx); err != nil { // sends its write
				return err
			}
			return errRule
		}, false},
		{"fail-before-sending", func(tx *tx) error {
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
			if _, err := count(tx); err != nil {
				return err
			}
			panic("boom")
		}, false},
		{"ok-3", func(tx *tx) error {
			// Sees the writes before it that succeeded, none of those undone.
			n, err := count(tx)
			if err != nil {
				return err
			}
			if n != 2 {
				return fmt.Errorf("ok-3 sees %d rows, want 2", n)
			}
			return insert(tx, "env_ok3")
		}, true},
	})
	if got := ids(); !slices.Equal(got, []string{"env_ok1", "env_ok2", "env_ok3"}) {
		t.Fatalf("rows after the first turn: %v, want [env_ok1 env_ok2 env_ok3]", got)
	}

	errs := run([]step{
		{"ok-a", func(tx *tx) error { return insert(tx, "env_a") }, false},
		{"duplicate", func(tx *tx) error { return insert(tx, "env_ok1") }, false},
		{"read", func(tx *tx) error { // its round trip carries the failing insert
			_, err := count(tx)
			return err
		}, false},
		{"ok-b", func(tx *tx) error { return insert(tx, "env_b") }, false},
	})
	if got := ids(); !slices.Equal(got, []string{"env_ok1", "env_ok2", "env_ok3"}) {
		t.Fatalf("rows after the failed turn: %v, want the first turn's only", got)
	}
	t.Logf("errors of the failed turn: %v", errs)
}
