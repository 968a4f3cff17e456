package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// createAndClaim is CreateSession with a claim, answering what the claim delivered.
func (f *fixture) createAndClaim(s store.Session, events []store.Event, it work.Item, worker string, reclaim time.Duration, now time.Time) (work.Item, bool, error) {
	c, err := f.st.CreateSession(f.ctx, s, events, &it, &work.Claim{WorkerID: worker, Reclaim: reclaim, At: now})
	if err != nil || c.Delivered == nil {
		return work.Item{}, false, err
	}
	return *c.Delivered, true, nil
}

// testCreateSessionAndClaim checks CreateSession with a claim: the hand-off of a new item
// to a waiting poll in the create's own transaction.
func testCreateSessionAndClaim(t *testing.T, newStore newStoreFunc) {
	t.Run("DeliversTheNewItem", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := draft(e.ID, work.Queued, base)
		ev := event(s.ID, "user.message", base)
		now := base.Add(time.Millisecond).In(elsewhere)
		got, ok, err := f.createAndClaim(s, []store.Event{ev}, it, "w1", work.DefaultReclaim, now)
		if err != nil || !ok {
			t.Fatalf("CreateSession with a claim = ok %v, err %v; want the new item", ok, err)
		}
		want := deliverTo(it, "w1", now)
		checkEqual(t, "delivered item", got, want)
		checkEqual(t, "stored item", f.getWork(t, it), want)
		f.getSession(t, s.ID)
		if evs := f.listEvents(t, s.ID); len(evs) != 1 || evs[0].ID != ev.ID {
			t.Errorf("events = %v, want the one given", evs)
		}
		if _, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w2", Reclaim: work.DefaultReclaim, At: now}); ok || err != nil {
			t.Errorf("a later claim got an item (ok %v, err %v): the new one was delivered already", ok, err)
		}
	})

	t.Run("DeliversAnOlderDeliverableItemFirst", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, older := f.item(t, e, work.Queued, base)
		s, it := draft(e.ID, work.Queued, base.Add(sec))
		now := base.Add(2 * sec)
		got, ok, err := f.createAndClaim(s, nil, it, "w1", work.DefaultReclaim, now)
		if err != nil || !ok || got.ID != older.ID {
			t.Fatalf("CreateSession with a claim = %s (ok %v, err %v), want the older %s", got.ID, ok, err, older.ID)
		}
		checkEqual(t, "new item, not delivered", f.getWork(t, it), it)
	})

	t.Run("PassesOverAnItemInsideItsReclaimWindow", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, older := f.item(t, e, work.Queued, base)
		const reclaim = 5 * time.Second
		if _, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w0", Reclaim: reclaim, At: base.Add(sec)}); !ok || err != nil {
			t.Fatalf("claim of the older item: ok %v, err %v", ok, err)
		}
		s, it := draft(e.ID, work.Queued, base.Add(2*sec))
		now := base.Add(3 * sec) // the older delivery is 2 s old: inside the window
		got, ok, err := f.createAndClaim(s, nil, it, "w1", reclaim, now)
		if err != nil || !ok || got.ID != it.ID {
			t.Fatalf("CreateSession with a claim = %s (ok %v, err %v), want the new %s, not %s", got.ID, ok, err, it.ID, older.ID)
		}
	})

	t.Run("NothingWithoutTheEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		s, it := draft(id.New(id.Environment), work.Queued, base)
		_, ok, err := f.createAndClaim(s, nil, it, "w1", work.DefaultReclaim, base)
		if !errors.Is(err, store.ErrNotFound) || ok {
			t.Fatalf("CreateSession with a claim in a missing environment = ok %v, err %v; want ErrNotFound", ok, err)
		}
		if _, err := f.st.GetSession(f.ctx, s.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the session exists after a failed create: %v", err)
		}
	})

	t.Run("RaceWithClaims", func(t *testing.T) {
		// Hand-offs and plain claims in one environment: every item is delivered once,
		// and to one claimant only.
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		now := base.Add(time.Minute)
		for range racers {
			f.item(t, e, work.Queued, base)
		}
		var mu sync.Mutex
		deliveries := map[string]int{}
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(2)
			go func() {
				defer wg.Done()
				s, it := draft(e.ID, work.Queued, base)
				got, ok, err := f.createAndClaim(s, nil, it, "h", work.DefaultReclaim, now)
				if err != nil {
					t.Errorf("hand-off %d: %v", i, err)
					return
				}
				if ok {
					mu.Lock()
					deliveries[got.ID]++
					mu.Unlock()
				}
			}()
			go func() {
				defer wg.Done()
				got, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "c", Reclaim: work.DefaultReclaim, At: now})
				if err != nil {
					t.Errorf("claim %d: %v", i, err)
					return
				}
				if ok {
					mu.Lock()
					deliveries[got.ID]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(deliveries) != 2*racers {
			t.Errorf("%d items delivered, want %d (every racer gets one)", len(deliveries), 2*racers)
		}
		for it, n := range deliveries {
			if n != 1 {
				t.Errorf("%s delivered %d times", it, n)
			}
		}
		for _, it := range f.listWork(t, e.ID) {
			if it.Deliveries != 1 {
				t.Errorf("%s has %d deliveries, want 1", it.ID, it.Deliveries)
			}
		}
	})
}
