package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/work"
)

// Claims take session locks on the items they pick (tx.ClaimNext), which no transaction's
// end releases on its own: a lock left on a pooled connection would hide its item from
// every later claim, or hold every claim with a short window for good. After claims that
// deliver, that find their pick changed, that wait for a held item, that find nothing and
// that roll back, no advisory lock is left, and no item was delivered twice.
func TestClaimsLeaveNoLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A claim that waits for a lock left behind would wait for good: lock_timeout makes it
	// an error instead.
	s := openStore(t, withParam(pgtest.URL(t), "lock_timeout=20s"))
	now := time.Now()
	env, err := s.CreateEnvironment(ctx, store.Environment{Name: "n", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	const items = 60
	var ids []string
	for range items {
		it := work.New("", "", "", nil, now)
		c, err := s.CreateSession(ctx, store.Session{EnvironmentID: env.ID, Agent: []byte(`{"type":"agent"}`),
			Metadata: work.Metadata{}, CreatedAt: now, UpdatedAt: now}, nil, &it, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Item.ID)
	}

	var mu sync.Mutex
	delivered := map[string]int{}
	var wg sync.WaitGroup
	claim := func(worker string, reclaim time.Duration) {
		defer wg.Done()
		for {
			it, ok, err := s.ClaimWork(ctx, env.ID, work.Claim{WorkerID: worker, Reclaim: reclaim, At: now.Add(time.Second)})
			if err != nil {
				t.Errorf("claim: %v", err)
				return
			}
			if !ok {
				return
			}
			mu.Lock()
			delivered[it.ID]++
			mu.Unlock()
		}
	}
	for i := range 4 {
		wg.Add(2)
		go claim("passes", work.DefaultReclaim)                // passes over held items
		go claim("waits", time.Duration(i+1)*time.Millisecond) // waits for them: under 5 s
	}
	wg.Add(1)
	go func() { // stops change picked items under their claims
		defer wg.Done()
		for i := len(ids) - 1; i >= 0; i -= 3 {
			if _, err := s.UpdateWork(ctx, env.ID, ids[i], work.Stop(true, now.Add(time.Second))); err != nil {
				var we *work.Error
				if !errors.As(err, &we) {
					t.Errorf("stop: %v", err)
				}
			}
		}
	}()
	errRolledBack := errors.New("rolled back")
	for range 4 {
		wg.Add(1)
		go func() { // claims that roll back
			defer wg.Done()
			err := s.d.Write(ctx, func(tx store.Tx) error {
				if _, _, err := tx.ClaimNext(ctx, env.ID, work.Claim{WorkerID: "undone", Reclaim: work.DefaultReclaim, At: now.Add(time.Second)}); err != nil {
					return err
				}
				return errRolledBack
			})
			if !errors.Is(err, errRolledBack) {
				t.Errorf("rolled-back claim: %v", err)
			}
		}()
	}
	wg.Wait()
	for id, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	// The claim locks of this test's items only: the package's other tests run beside it
	// in the same database, claims among them. A lock on a bigint key shows its high 32
	// bits as classid and its low 32 as objid.
	var locks int
	if err := s.d.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN work w
		ON l.classid::bigint = (hashtextextended('claim ' || w.id, 0) >> 32) & 4294967295
		AND l.objid::bigint = hashtextextended('claim ' || w.id, 0) & 4294967295
		WHERE l.locktype = 'advisory' AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks); err != nil {
		t.Fatal(err)
	}
	if locks != 0 {
		t.Errorf("%d advisory locks left after the claims ended", locks)
	}
	t.Logf("%d items delivered, %d left in the queue or stopped", len(delivered), items-len(delivered))
}
