package postgres

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// A transaction's notices reach the other replicas once it has committed: none of a
// transaction that rolled back, none of a turn's function whose savepoint was undone,
// the others' in order.
func TestNoticesFollowTheCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	a, b := openStore(t, url), openStore(t, url)

	var mu sync.Mutex
	var heard []string
	arrived := make(chan struct{}, 100)
	ready := make(chan struct{})
	lctx, stop := context.WithCancel(ctx)
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		var once sync.Once
		b.ListenWork(lctx, func(env string) {
			mu.Lock()
			heard = append(heard, env)
			mu.Unlock()
			arrived <- struct{}{}
		}, func() { once.Do(func() { close(ready) }) })
	}()
	defer func() { stop(); <-listened }()
	<-ready
	waitFor := func(env string) {
		t.Helper()
		for {
			mu.Lock()
			ok := slices.Contains(heard, env)
			mu.Unlock()
			if ok {
				return
			}
			<-arrived
		}
	}

	errRule := errors.New("rule refused")
	// A Write that fails after its notice: nothing is heard of it.
	err := a.d.Write(ctx, func(tx store.Tx) error {
		tx.Notify("env_rolled_back")
		return errRule
	})
	if !errors.Is(err, errRule) {
		t.Fatalf("Write: %v, want the function's error", err)
	}
	// A turn: the function whose savepoint is undone is not heard of; the others are.
	turn, err := a.d.beginInserts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := sqlrows.RunBatch(ctx, turn, nil, []func(*tx) error{
		func(tx *tx) error { tx.Notify("env_first"); return nil },
		func(tx *tx) error { tx.Notify("env_undone"); return errRule },
		func(tx *tx) error { tx.Notify("env_third"); return nil },
	})
	if errs[0] != nil || !errors.Is(errs[1], errRule) || errs[2] != nil {
		t.Fatalf("turn: %v", errs)
	}
	// A last notice, sent after all of those: once it is heard, any of theirs would be.
	if err := a.d.Write(ctx, func(tx store.Tx) error {
		if _, err := tx.LockEnvironment(ctx, "env_none"); !errors.Is(err, store.ErrNotFound) {
			return err
		}
		tx.Notify("env_last")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor("env_last")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"env_first", "env_third", "env_last"}; !slices.Equal(heard, want) {
		t.Errorf("heard %v, want %v", heard, want)
	}
}
