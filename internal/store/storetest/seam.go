package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The seam (store.Driver): what each driver must do on its own, under the composed
// operations. Every store under test is a *store.DB over its driver.

// composed is what the stores under test are: the contract's operations over a driver.
type composed interface {
	Driver() store.Driver
	SeedWork(ctx context.Context, items []work.Item) error
}

func driverOf(t *testing.T, st store.Store) (store.Driver, composed) {
	t.Helper()
	c, ok := st.(composed)
	if !ok {
		t.Fatalf("%T is not the contract over a store.Driver", st)
	}
	return c.Driver(), c
}

// soak says whether the long versions run (make soak).
var soak = os.Getenv("BERTH_SOAK") == "1"

// randomItem is an item of env in a random state with random delivery and lease times
// around at, as the rules could have left it.
func randomItem(rng *rand.Rand, envID, sessionID string, at time.Time) work.Item {
	it := work.New(id.New(id.Work), envID, sessionID, nil, at.Add(-time.Hour))
	it.State = work.States[rng.IntN(len(work.States))]
	offset := func() time.Time {
		return at.Add(time.Duration(rng.IntN(20_000_000)-10_000_000) * us) // ±10 s
	}
	if rng.IntN(3) > 0 {
		it.DeliveredAt, it.Deliveries, it.DeliveredTo = offset(), 1+rng.IntN(3), "w"
	}
	if it.State.Leased() && rng.IntN(4) > 0 {
		it.LeaseExpiresAt = offset()
	}
	return it
}

func testFiltersMatchTheRules(t *testing.T, newStore newStoreFunc) {
	t.Run("Deliverable", func(t *testing.T) {
		// HasDeliverable and ClaimNext (the SQL filter Deliverable) agree with
		// work.Deliverable on random items, windows and instants, to the microsecond.
		t.Parallel()
		f := setup(t, newStore)
		d, c := driverOf(t, f.st)
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range 12 {
			e := f.env(t, selfHosted)
			var items []work.Item
			for range 1 + rng.IntN(6) {
				items = append(items, randomItem(rng, e.ID, id.New(id.Session), base))
			}
			if err := c.SeedWork(f.ctx, items); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				claim := work.Claim{Reclaim: time.Duration(rng.IntN(10_000_000)) * us,
					At: base.Add(time.Duration(rng.IntN(20_000_000)-10_000_000) * us)}
				var want *work.Item
				for i := range items {
					if claim.Deliverable(items[i]) {
						want = &items[i]
						break
					}
				}
				got, err := d.HasDeliverable(f.ctx, e.ID, claim)
				if err != nil {
					t.Fatal(err)
				}
				if got != (want != nil) {
					t.Fatalf("round %d: HasDeliverable = %v at %s window %v; work.Deliverable says %v", round, got, fmtTime(claim.At), claim.Reclaim, want != nil)
				}
				var next work.Item
				var ok bool
				err = d.Write(f.ctx, func(tx store.Tx) error {
					next, ok, err = tx.ClaimNext(f.ctx, e.ID, claim)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if ok != (want != nil) || ok && next.ID != want.ID {
					t.Fatalf("round %d: ClaimNext = %s (ok %v); the oldest deliverable item by work.Deliverable is %v", round, next.ID, ok, want)
				}
			}
		}
	})

	t.Run("LiveLeasedAndLeaseEnded", func(t *testing.T) {
		// HasLiveWork (Live), a session's Running (Leased) and ExpiredLeases (LeaseEnded)
		// agree with work.State.Live, work.State.Leased and work.LeaseExpired.
		t.Parallel()
		f := setup(t, newStore)
		d, c := driverOf(t, f.st)
		rng := rand.New(rand.NewPCG(3, 4))
		e := f.env(t, selfHosted)
		var items []work.Item
		for range 40 {
			s := draftSession(e.ID, base)
			if _, err := f.st.CreateSession(f.ctx, s, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			it := randomItem(rng, e.ID, s.ID, base)
			items = append(items, it)
			if err := c.SeedWork(f.ctx, []work.Item{it}); err != nil {
				t.Fatal(err)
			}
			live, err := d.HasLiveWork(f.ctx, s.ID, "")
			if err != nil || live != it.State.Live() {
				t.Fatalf("HasLiveWork of a %s item = %v (%v); State.Live says %v", it.State, live, err, it.State.Live())
			}
			if other, err := d.HasLiveWork(f.ctx, s.ID, it.ID); err != nil || other {
				t.Fatalf("HasLiveWork except its only item = %v (%v), want false", other, err)
			}
			got, err := d.Session(f.ctx, s.ID)
			if err != nil || got.Running != it.State.Leased() {
				t.Fatalf("Running of a session whose item is %s = %v (%v); State.Leased says %v", it.State, got.Running, err, it.State.Leased())
			}
		}
		// Some leases end at the same instant, so that the order's second key counts.
		for range 6 {
			s := draftSession(e.ID, base)
			if _, err := f.st.CreateSession(f.ctx, s, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			it := randomItem(rng, e.ID, s.ID, base)
			it.State, it.LeaseExpiresAt = work.Active, base.Add(time.Duration(rng.IntN(2))*time.Second)
			items = append(items, it)
			if err := c.SeedWork(f.ctx, []work.Item{it}); err != nil {
				t.Fatal(err)
			}
		}
		for range 30 {
			now := base.Add(time.Duration(rng.IntN(20_000_000_000)-10_000_000_000) * time.Nanosecond)
			ends, err := d.ExpiredLeases(f.ctx, now, store.LeaseEnd{}, 1000)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for i, e := range ends {
				got[e.ID] = true
				if i > 0 && (e.At.Before(ends[i-1].At) || e.At.Equal(ends[i-1].At) && e.ID <= ends[i-1].ID) {
					t.Fatalf("ExpiredLeases out of order: %s (%s) after %s (%s)", e.ID, fmtTime(e.At), ends[i-1].ID, fmtTime(ends[i-1].At))
				}
			}
			// Page by page, from each page's last, it answers the same, in the same order.
			var paged []store.LeaseEnd
			for after := (store.LeaseEnd{}); ; {
				page, err := d.ExpiredLeases(f.ctx, now, after, 2)
				if err != nil {
					t.Fatal(err)
				}
				paged = append(paged, page...)
				if len(page) < 2 || len(paged) > len(ends) {
					break
				}
				after = page[len(page)-1]
			}
			if !slices.Equal(paged, ends) {
				t.Fatalf("ExpiredLeases by pages of 2: %v; in one: %v", paged, ends)
			}
			for _, it := range items {
				if got[it.ID] {
					e := ends[slices.IndexFunc(ends, func(e store.LeaseEnd) bool { return e.ID == it.ID })]
					if !e.At.Equal(it.LeaseExpiresAt.Truncate(us)) || e.EnvironmentID != it.EnvironmentID {
						t.Fatalf("ExpiredLeases has %s in %s ending %s; it is in %s and ends %s", it.ID, e.EnvironmentID, fmtTime(e.At), it.EnvironmentID, fmtTime(it.LeaseExpiresAt))
					}
				}
			}
			for _, it := range items {
				ended := !it.LeaseExpiresAt.IsZero() && !it.LeaseExpiresAt.After(now.Truncate(us))
				if got[it.ID] != ended {
					t.Fatalf("ExpiredLeases at %s has %s = %v; its lease ends %s", now.Format(time.RFC3339Nano), it.ID, got[it.ID], fmtTime(it.LeaseExpiresAt))
				}
				if work.LeaseExpired(it, now) && !got[it.ID] {
					t.Fatalf("work.LeaseExpired holds for %s at %s but ExpiredLeases missed it", it.ID, now.Format(time.RFC3339Nano))
				}
			}
		}
	})
}

func testPutWorkIf(t *testing.T, newStore newStoreFunc) {
	t.Run("CompareAndSet", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		d, _ := driverOf(t, f.st)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		stored := f.getWork(t, it)
		next, _, err := work.Ack("w1", base.Add(sec)).Apply(stored)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := d.PutWorkIf(f.ctx, next, stored.Version+1); ok || err != nil {
			t.Fatalf("PutWorkIf at a version the row is not at = %v, %v; want false", ok, err)
		}
		checkEqual(t, "item after a refused compare-and-set", f.getWork(t, it), stored)
		if ok, err := d.PutWorkIf(f.ctx, next, stored.Version); !ok || err != nil {
			t.Fatalf("PutWorkIf at the row's version = %v, %v; want true", ok, err)
		}
		after := f.getWork(t, it)
		checkEqual(t, "item after the compare-and-set", after, next)
		if after.Version != stored.Version+1 {
			t.Errorf("version after a write = %d, want %d", after.Version, stored.Version+1)
		}
		if ok, err := d.PutWorkIf(f.ctx, next, stored.Version); ok || err != nil {
			t.Errorf("a second PutWorkIf at the old version = %v, %v; want false", ok, err)
		}
		missing := next
		missing.ID = id.New(id.Work)
		_, err = d.PutWorkIf(f.ctx, missing, 0)
		wantNotFound(t, "PutWorkIf of a missing item", err)
	})

	t.Run("RacingWritersOneWinsPerVersion", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		d, _ := driverOf(t, f.st)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		stored := f.getWork(t, it)
		wins := make([]bool, racers)
		race(racers, func(i int) {
			next := stored
			next.Metadata = work.Metadata{"writer": fmt.Sprint(i)}
			ok, err := d.PutWorkIf(f.ctx, next, stored.Version)
			if err != nil {
				t.Errorf("PutWorkIf %d: %v", i, err)
			}
			wins[i] = ok
		})
		winners := 0
		for i, w := range wins {
			if w {
				winners++
				if got := f.getWork(t, it).Metadata["writer"]; got != fmt.Sprint(i) {
					t.Errorf("writer %d won, but the row holds writer %s's", i, got)
				}
			}
		}
		if winners != 1 {
			t.Errorf("%d of %d compare-and-sets at one version won, want exactly 1", winners, racers)
		}
	})
}

// testFollowers checks that IDs are made in commit order (store.Driver.Insert): a reader
// following a list with AfterID while several writers add to it sees every row exactly
// once. In make soak it follows over a million rows per store.
func testFollowers(t *testing.T, newStore newStoreFunc) {
	const writers = 6
	// writes is each writer's number of writes to a list, normally and in the soak;
	// eventsPerWrite the events of one write to a session (the soak's million rows are
	// mostly events, many to a write, so that it takes minutes under -race).
	writes, soakWrites, eventsPerWrite := 40, 10_000, 2
	if soak {
		eventsPerWrite = 50
	}
	type list struct {
		name string
		// setup makes what the writers write into and returns the list and one write.
		setup func(t *testing.T, f *fixture) (func(store.Page) ([]string, bool, error), func() error)
		// soakWrites is each writer's number of writes in the soak.
		soakWrites int
	}
	lists := []list{
		{"EventsOfASession", func(t *testing.T, f *fixture) (func(store.Page) ([]string, bool, error), func() error) {
			e := f.env(t, cloud)
			c, err := f.st.CreateSession(f.ctx, newSession(e.ID), nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			sid := c.Session.ID
			return func(p store.Page) ([]string, bool, error) {
					evs, more, err := f.st.ListEvents(f.ctx, sid, p)
					return listIDs(evs, eventID), more, err
				}, func() error {
					events := make([]store.Event, eventsPerWrite)
					for i := range events {
						events[i] = newEvent("system.message")
					}
					_, err := f.st.AppendEvents(f.ctx, sid, events, base)
					return err
				}
		}, 3000},
		{"WorkOfAnEnvironment", func(t *testing.T, f *fixture) (func(store.Page) ([]string, bool, error), func() error) {
			e := f.env(t, selfHosted)
			return func(p store.Page) ([]string, bool, error) {
					items, more, err := f.st.ListWork(f.ctx, e.ID, p, nil)
					return itemIDs(items), more, err
				}, func() error {
					it := work.New("", "", "", nil, base)
					_, err := f.st.CreateSession(f.ctx, newSession(e.ID), nil, &it, nil)
					return err
				}
		}, soakWrites},
		{"Sessions", func(t *testing.T, f *fixture) (func(store.Page) ([]string, bool, error), func() error) {
			e := f.env(t, cloud)
			return func(p store.Page) ([]string, bool, error) {
					ss, more, err := f.st.ListSessions(f.ctx, p, "", false)
					return listIDs(ss, sessID), more, err
				}, func() error {
					_, err := f.st.CreateSession(f.ctx, newSession(e.ID), nil, nil, nil)
					return err
				}
		}, soakWrites},
		{"Environments", func(t *testing.T, f *fixture) (func(store.Page) ([]string, bool, error), func() error) {
			return func(p store.Page) ([]string, bool, error) {
					es, more, err := f.st.ListEnvironments(f.ctx, p, false)
					return listIDs(es, envID), more, err
				}, func() error {
					_, err := f.st.CreateEnvironment(f.ctx, store.Environment{Name: "n", ConfigType: cloud,
						Config: []byte(`{"type":"cloud"}`), CreatedAt: base, UpdatedAt: base})
					return err
				}
		}, 2000},
		{"Tokens", func(t *testing.T, f *fixture) (func(store.Page) ([]string, bool, error), func() error) {
			return func(p store.Page) ([]string, bool, error) {
					ts, more, err := f.st.ListTokens(f.ctx, p)
					return listIDs(ts, tokenID), more, err
				}, func() error {
					tok := draftToken("")
					tok.ID = ""
					_, err := f.st.CreateToken(f.ctx, tok)
					return err
				}
		}, 2000},
	}
	for _, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			n := writes
			if soak {
				n = l.soakWrites
			}
			f := setup(t, newStore)
			read, write := l.setup(t, f)
			done := make(chan struct{})
			var wg sync.WaitGroup
			var failed error
			var mu sync.Mutex
			for range writers {
				wg.Go(func() {
					for range n {
						if err := write(); err != nil {
							mu.Lock()
							failed = err
							mu.Unlock()
							return
						}
					}
				})
			}
			go func() { wg.Wait(); close(done) }()
			var seen []string
			p := store.Page{Limit: 500}
			for finished := false; ; {
				select {
				case <-done:
					finished = true
				default:
				}
				ids, _, err := read(p)
				if err != nil {
					t.Fatalf("follow: %v", err)
				}
				seen = append(seen, ids...)
				if len(ids) > 0 {
					p.AfterID = ids[len(ids)-1]
				}
				if len(ids) == 0 && finished {
					break
				}
			}
			if failed != nil {
				t.Fatalf("write: %v", failed)
			}
			var all []string
			for p := (store.Page{Limit: 1000}); ; {
				ids, more, err := read(p)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, ids...)
				if !more {
					break
				}
				p.AfterID = ids[len(ids)-1]
			}
			if !slices.Equal(seen, all) {
				missed := 0
				in := map[string]bool{}
				for _, s := range seen {
					in[s] = true
				}
				for _, a := range all {
					if !in[a] {
						missed++
					}
				}
				t.Fatalf("the follower saw %d rows, the list holds %d: %d rows appeared below its cursor", len(seen), len(all), missed)
			}
			t.Logf("%d writers added %d rows; the follower saw each once", writers, len(all))
		})
	}
}

// newEvent is an event whose ID the store makes (its body's "id" is blank).
func newEvent(typ string) store.Event {
	return store.Event{Type: typ, Body: []byte(`{"id":"","type":"` + typ + `"}`), CreatedAt: base}
}

// failingCommit is a driver whose Inserts run and are then rolled back, as when a commit
// fails: the operations above it must not report what did not commit.
type failingCommit struct{ store.Driver }

var errCommit = errors.New("commit failed")

func (d failingCommit) Insert(ctx context.Context, fn func(store.Tx) error) error {
	return d.Driver.Insert(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errCommit
	})
}

func testReportsOnlyWhatCommitted(t *testing.T, newStore newStoreFunc) {
	t.Run("ExpireLeases", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		d, _ := driverOf(t, f.st)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		failing := store.New(failingCommit{d})
		now := it.LeaseExpiresAt.Add(time.Second)
		exps, err := failing.ExpireLeases(f.ctx, now)
		if !errors.Is(err, errCommit) || len(exps) != 0 {
			t.Fatalf("ExpireLeases whose commit failed = %v, %v; want no expiry and the commit's error", expiredIDs(exps), err)
		}
		checkEqual(t, "item whose expiry did not commit", f.getWork(t, it), it)
		if items := f.listWork(t, e.ID); len(items) != 1 {
			t.Errorf("items after an expiry that did not commit: %v", itemIDs(items))
		}
	})
}

// testLockLease: what a transition that starts or ends a lease reads under its locks.
func testLockLease(t *testing.T, newStore newStoreFunc) {
	lockLease := func(t *testing.T, f *fixture, it work.Item) (store.LeaseRows, error) {
		t.Helper()
		d, _ := driverOf(t, f.st)
		var out store.LeaseRows
		err := d.Write(f.ctx, func(tx store.Tx) (err error) {
			out, err = tx.LockLease(f.ctx, it.EnvironmentID, it.ID)
			return err
		})
		return out, err
	}
	t.Run("SessionItemAndOtherLeases", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Active, base)
		r, err := lockLease(t, f, it)
		if err != nil {
			t.Fatal(err)
		}
		if !r.SessionFound || r.OtherLeased {
			t.Errorf("LockLease = session found %v, other leased %v; want true, false", r.SessionFound, r.OtherLeased)
		}
		checkEqual(t, "LockLease's item", r.Item, f.getWork(t, it))

		// A second item of the session, queued and then leased.
		other := work.New(id.New(id.Work), e.ID, s.ID, nil, base)
		f.insertItem(t, other)
		if r, err = lockLease(t, f, it); err != nil || r.OtherLeased {
			t.Errorf("LockLease with a queued other item: other leased %v (%v), want false", r.OtherLeased, err)
		}
		f.update(t, other, work.Ack("w-2", base))
		if r, err = lockLease(t, f, it); err != nil || !r.OtherLeased {
			t.Errorf("LockLease with an active other item: other leased %v (%v), want true", r.OtherLeased, err)
		}
		if r, err = lockLease(t, f, other); err != nil || !r.OtherLeased {
			t.Errorf("LockLease of the other item: other leased %v (%v), want true", r.OtherLeased, err)
		}
	})
	t.Run("DeletedSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Stopped, base)
		if _, err := f.st.DeleteSession(f.ctx, s.ID, base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		r, err := lockLease(t, f, it)
		if err != nil || r.SessionFound || r.Item.ID != it.ID {
			t.Errorf("LockLease of a deleted session's item = found %v, item %q (%v); want false, %s", r.SessionFound, r.Item.ID, err, it.ID)
		}
	})
	t.Run("UnknownItem", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, elsewhere := f.env(t, selfHosted), f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		it.EnvironmentID = elsewhere.ID
		_, err := lockLease(t, f, it)
		wantNotFound(t, "LockLease of an item of another environment", err)
	})
}

func testPrunePollers(t *testing.T, newStore newStoreFunc) {
	t.Run("ForgetsOldPolls", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		for i := range 5 {
			if err := f.st.RecordPoll(f.ctx, e.ID, fmt.Sprint("old-", i), base); err != nil {
				t.Fatal(err)
			}
		}
		later := base.Add(20 * sec)
		if err := f.st.RecordPoll(f.ctx, e.ID, "new", later); err != nil {
			t.Fatal(err)
		}
		now := base.Add(40 * sec) // the old polls are 40 s old, the new one 20 s
		if err := f.st.PrunePollers(f.ctx, now); err != nil {
			t.Fatal(err)
		}
		// A stats window reaching back before the pruned polls still counts only the new.
		d, _ := driverOf(t, f.st)
		if n, err := d.WorkersPolling(f.ctx, e.ID, base.Add(-time.Hour)); err != nil || n != 1 {
			t.Errorf("pollers after the prune = %d (%v), want 1", n, err)
		}
	})

	t.Run("ForgetsDeletedEnvironments", func(t *testing.T) {
		// A deleted environment's pollers go, however recent their polls: after the
		// prune, none is counted, and a new environment's are.
		t.Parallel()
		f := setup(t, newStore)
		gone, kept := f.env(t, selfHosted), f.env(t, selfHosted)
		for _, e := range []store.Environment{gone, kept} {
			if err := f.st.RecordPoll(f.ctx, e.ID, "w", base); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.st.DeleteEnvironment(f.ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.st.PrunePollers(f.ctx, base.Add(sec)); err != nil {
			t.Fatal(err)
		}
		d, _ := driverOf(t, f.st)
		if n, err := d.WorkersPolling(f.ctx, gone.ID, base.Add(-time.Hour)); err != nil || n != 0 {
			t.Errorf("pollers of the deleted environment after the prune = %d (%v), want 0", n, err)
		}
		if n, err := d.WorkersPolling(f.ctx, kept.ID, base.Add(-time.Hour)); err != nil || n != 1 {
			t.Errorf("pollers of the other environment after the prune = %d (%v), want 1", n, err)
		}
	})
}

// newSession is a session of envID whose ID the store makes.
func newSession(envID string) store.Session {
	return store.Session{EnvironmentID: envID, Agent: []byte(`{"id":"a"}`), Metadata: work.Metadata{},
		CreatedAt: base, UpdatedAt: base}
}
