package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
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
	s := openStore(t, pgtest.URL(t))
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

// A turn holds the row of each environment it locked until its commit, so only its first
// create in an environment waits for the lock and reads the row; after a function whose
// savepoint is undone (and with it the locks it took), the next one reads again.
func TestTurnLocksAnEnvironmentOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, pgtest.URL(t))
	now := time.Now()
	env, err := s.CreateEnvironment(ctx, store.Environment{Name: "n", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.d.beginInserts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var trips []int
	lock := func(fail error) func(*tx) error {
		return func(tx *tx) error {
			before := tx.c.sends
			got, err := tx.LockEnvironment(ctx, env.ID)
			if err != nil {
				return err
			}
			if got.ID != env.ID || got.Name != "n" {
				return fmt.Errorf("LockEnvironment: %+v", got)
			}
			trips = append(trips, tx.c.sends-before)
			return fail
		}
	}
	errRule := errors.New("rule refused")
	errs := sqlrows.RunBatch(ctx, b, nil, []func(*tx) error{lock(nil), lock(nil), lock(errRule), lock(nil), lock(nil)})
	for i, err := range errs {
		if (i == 2) != (err != nil) {
			t.Errorf("function %d: %v", i, err)
		}
	}
	if want := []int{1, 0, 0, 1, 0}; !slices.Equal(trips, want) {
		t.Errorf("round trips of each lock: %v, want %v", trips, want)
	}
}

// openStore opens a store on url, closed when t ends.
func openStore(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
