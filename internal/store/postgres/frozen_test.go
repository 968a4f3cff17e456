package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/work"
)

// withParam adds a connection parameter to a database URL.
func withParam(url, kv string) string {
	if strings.Contains(url, "?") {
		return url + "&" + kv
	}
	return url + "?" + kv
}

// A replica that stops in the middle of a transaction (here, a function that holds an
// item's row and waits) keeps the row locked only until PostgreSQL ends the transaction
// for waiting on its client (idle_in_transaction_session_timeout): another replica's
// claim of the item then goes on and delivers it. The replica that stopped learns, when
// it goes on, that its transaction did not commit, and its store keeps working.
func TestFrozenTransactionLetsGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := pgtest.URL(t)
	// The replica that freezes ends its transactions after 1 s instead of the default
	// 30 s; the one that claims would wait for a lock that stays for good until its
	// lock_timeout, which fails the test instead of hanging it.
	frozen := openStore(t, withParam(base, idleTxParam+"=1s"))
	other := openStore(t, withParam(base, "lock_timeout=20s"))
	for _, c := range []struct {
		s    *Store
		want string
	}{{frozen, "1s"}, {other, idleTxTimeout}} {
		var got string
		if err := c.s.d.pool.QueryRow(ctx, "SHOW "+idleTxParam).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s = %q on a store's connection, want %q", idleTxParam, got, c.want)
		}
	}

	now := time.Now()
	env, err := other.CreateEnvironment(ctx, store.Environment{Name: "n", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	it := work.New("", "", "", nil, now)
	created, err := other.CreateSession(ctx, store.Session{EnvironmentID: env.ID, Agent: []byte(`{"type":"agent"}`),
		Metadata: work.Metadata{}, CreatedAt: now, UpdatedAt: now}, nil, &it, nil)
	if err != nil {
		t.Fatal(err)
	}
	itemID := created.Item.ID

	locked, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	var once sync.Once
	unfreeze := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unfreeze) // before the stores close, should the test fail first
	go func() {
		done <- frozen.d.Write(ctx, func(tx store.Tx) error {
			if _, err := tx.LockWork(ctx, env.ID, itemID); err != nil {
				return err
			}
			close(locked)
			<-release // frozen, holding the row
			return nil
		})
	}()
	select {
	case <-locked:
	case err := <-done:
		t.Fatalf("the freezing transaction failed before it held the row: %v", err)
	}
	got, ok, err := other.ClaimWork(ctx, env.ID, work.Claim{WorkerID: "w", Reclaim: work.DefaultReclaim, At: now.Add(time.Second)})
	if err != nil || !ok || got.ID != itemID {
		t.Fatalf("claim while a frozen transaction held the item: %s, %v, %v; want %s delivered", got.ID, ok, err, itemID)
	}
	unfreeze()
	if err := <-done; err == nil {
		t.Fatal("the frozen transaction committed after PostgreSQL ended it")
	}
	after, err := frozen.GetWork(ctx, env.ID, itemID)
	if err != nil || after.State != work.Queued || after.Deliveries != 1 {
		t.Fatalf("after the frozen replica went on, it reads %+v, %v; want the item delivered once", after, err)
	}
}
