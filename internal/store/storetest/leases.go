package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

func expiredIDs(exps []store.Expiry) []string {
	out := make([]string, len(exps))
	for i, x := range exps {
		out[i] = x.Item.ID
	}
	slices.Sort(out)
	return out
}

func testExpireLeases(t *testing.T, newStore newStoreFunc) {
	t.Run("StopsAndRequeues", func(t *testing.T) {
		t.Parallel()
		for _, state := range []work.State{work.Starting, work.Active} {
			t.Run(string(state), func(t *testing.T) {
				t.Parallel()
				f := setup(t, newStore)
				e := f.env(t, selfHosted)
				s, it := draft(e.ID, state, base)
				it.Metadata = work.Metadata{"team": "infra", "attempt": "1"} // the item's own, not the session's
				f.put(t, s, &it)
				_, later := f.item(t, e, state, base.Add(time.Hour))
				lease := it.LeaseExpiresAt

				// At its expiry instant the lease has not yet passed.
				exps, err := f.st.ExpireLeases(f.ctx, lease)
				if err != nil || len(exps) != 0 {
					t.Fatalf("ExpireLeases at the expiry instant = %d expiries, err %v; want none", len(exps), err)
				}
				checkEqual(t, "item at its expiry instant", f.getWork(t, it), it)

				now := lease.Add(us)
				exps, err = f.st.ExpireLeases(f.ctx, now)
				if err != nil {
					t.Fatalf("ExpireLeases: %v", err)
				}
				if len(exps) != 1 || exps[0].Item.ID != it.ID {
					t.Fatalf("ExpireLeases = %v, want exactly %s", expiredIDs(exps), it.ID)
				}
				wantStopped, requeue, ok := expireItem(it, now)
				if !ok || !requeue {
					t.Fatalf("fixture: ExpireLease = ok %v requeue %v", ok, requeue)
				}
				checkEqual(t, "expired item", exps[0].Item, wantStopped)
				checkEqual(t, "stored expired item", f.getWork(t, it), wantStopped)
				fresh := exps[0].Requeue
				if fresh == nil {
					t.Fatalf("no item was requeued for session %s", s.ID)
				}
				if !id.Valid(id.Work, fresh.ID) || fresh.ID <= later.ID {
					t.Errorf("requeued item's ID %s is not a new work ID, made after the items before it", fresh.ID)
				}
				want := work.New(fresh.ID, e.ID, s.ID, it.Metadata, now)
				checkEqual(t, "requeued item", *fresh, want)
				checkEqual(t, "stored requeued item", f.getWork(t, *fresh), want)
				checkEqual(t, "item whose lease runs on", f.getWork(t, later), later)
				if f.getSession(t, s.ID).Running {
					t.Errorf("session still running after its item expired")
				}
			})
		}
	})

	t.Run("RequeuePerRule", func(t *testing.T) {
		t.Parallel()
		// Whether an expired item's session gets a fresh item is what work.ExpireLease and
		// work.RequeueAllowed say for the session as it is at expiry.
		for _, tc := range []struct {
			name  string
			state work.State
			sess  work.SessionState
			setup func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item)
		}{
			{name: "StoppingItem", state: work.Stopping, sess: work.SessionState{Exists: true}},
			{name: "ArchivedSession", state: work.Active, sess: work.SessionState{Exists: true, Archived: true},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					s.ArchivedAt = base.Add(sec)
				}},
			{name: "DeletedSession", state: work.Active, sess: work.SessionState{},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					it.SessionID = id.New(id.Session) // never stored
				}},
			{name: "SessionHasAnotherLiveItem", state: work.Starting, sess: work.SessionState{Exists: true, HasLiveItem: true},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					_, other := draft(env.ID, work.Queued, base.Add(time.Hour))
					other.SessionID = s.ID
					f.insertItem(t, other)
				}},
			{name: "SessionHasAnotherStoppedItem", state: work.Starting, sess: work.SessionState{Exists: true},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					_, other := draft(env.ID, work.Stopped, base.Add(-time.Hour))
					other.SessionID = s.ID
					f.insertItem(t, other)
				}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := setup(t, newStore)
				e := f.env(t, selfHosted)
				s, it := draft(e.ID, tc.state, base)
				if tc.setup != nil {
					tc.setup(t, f, e, &s, &it)
				}
				if it.SessionID == s.ID {
					f.put(t, s, &it)
				} else {
					f.insertItem(t, it)
				}
				before := f.listWork(t, e.ID)
				now := it.LeaseExpiresAt.Add(time.Second)
				wantStopped, requeue, ok := expireItem(it, now)
				if !ok {
					t.Fatalf("fixture: lease not expired")
				}
				wantRequeue := requeue && work.RequeueAllowed(tc.sess)
				exps, err := f.st.ExpireLeases(f.ctx, now)
				if err != nil {
					t.Fatalf("ExpireLeases: %v", err)
				}
				if len(exps) != 1 || exps[0].Item.ID != it.ID {
					t.Fatalf("ExpireLeases = %v, want exactly %s", expiredIDs(exps), it.ID)
				}
				checkEqual(t, "expired item", exps[0].Item, wantStopped)
				checkEqual(t, "stored expired item", f.getWork(t, it), wantStopped)
				after := f.listWork(t, e.ID)
				switch fresh := exps[0].Requeue; {
				case wantRequeue && fresh == nil:
					t.Errorf("nothing requeued; work.RequeueAllowed holds")
				case wantRequeue:
					checkEqual(t, "requeued item", *fresh, work.New(fresh.ID, e.ID, it.SessionID, it.Metadata, now))
					if len(after) != len(before)+1 {
						t.Errorf("ListWork after expiry: %d items, want %d", len(after), len(before)+1)
					}
				case fresh != nil:
					t.Errorf("ExpireLeases requeued %s; the rules say no requeue", fresh.ID)
				default:
					if len(after) != len(before) {
						t.Errorf("ListWork after expiry: %v, want the same %d items as before", itemIDs(after), len(before))
					}
				}
			})
		}
	})

	t.Run("LeaseNotYetExpired", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		var items []work.Item
		for _, state := range work.States {
			_, it := f.item(t, e, state, base)
			items = append(items, it)
		}
		// The latest lease fixture: active, heartbeat at base+1s, lease until base+61s.
		exps, err := f.st.ExpireLeases(f.ctx, base.Add(61*sec))
		if err != nil {
			t.Fatalf("ExpireLeases: %v", err)
		}
		var wantIDs []string
		for _, it := range items {
			if it.State == work.Starting {
				wantIDs = append(wantIDs, it.ID) // its lease ended at base+60s
			}
		}
		if got := expiredIDs(exps); !slices.Equal(got, wantIDs) {
			t.Errorf("ExpireLeases = %v, want only the starting item %v", got, wantIDs)
		}
		for _, it := range items {
			if it.State != work.Starting {
				checkEqual(t, "item "+string(it.State), f.getWork(t, it), it)
			}
		}
	})

	t.Run("SecondCallDoesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		for range 3 {
			f.item(t, e, work.Active, base)
		}
		now := base.Add(time.Hour)
		exps, err := f.st.ExpireLeases(f.ctx, now)
		if err != nil || len(exps) != 3 {
			t.Fatalf("ExpireLeases = %d expiries, err %v; want 3", len(exps), err)
		}
		before := f.listWork(t, e.ID)
		exps, err = f.st.ExpireLeases(f.ctx, now)
		if err != nil || len(exps) != 0 {
			t.Errorf("second ExpireLeases at the same time = %v, err %v; want nothing", expiredIDs(exps), err)
		}
		after := f.listWork(t, e.ID)
		if len(after) != len(before) {
			t.Fatalf("second ExpireLeases changed the item count from %d to %d", len(before), len(after))
		}
		for i := range before {
			checkEqual(t, "item after the second call", after[i], before[i])
		}
	})

	t.Run("SubMicrosecondNow", func(t *testing.T) {
		t.Parallel()
		// The contract's clock is the caller's: a now one nanosecond after the lease's
		// expiry is after it (work.LeaseExpired), even though stored times are microseconds.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		now := it.LeaseExpiresAt.Add(time.Nanosecond)
		if !work.LeaseExpired(it, now) {
			t.Fatalf("fixture: lease not expired at %s", now)
		}
		exps, err := f.st.ExpireLeases(f.ctx, now)
		if err != nil {
			t.Fatalf("ExpireLeases: %v", err)
		}
		if len(exps) != 1 || exps[0].Item.ID != it.ID {
			t.Errorf("ExpireLeases 1ns after the lease's expiry = %v, want %s", expiredIDs(exps), it.ID)
		}
	})

	t.Run("EveryExpiredItem", func(t *testing.T) {
		t.Parallel()
		// More expired leases than any one batch a store might scan for.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		if testing.Short() {
			t.Skip("creates 1001 items; skipped with -short")
		}
		const n = 1001
		for range n {
			f.item(t, e, work.Starting, base)
		}
		exps, err := f.st.ExpireLeases(f.ctx, base.Add(time.Hour))
		if err != nil {
			t.Fatalf("ExpireLeases: %v", err)
		}
		if len(exps) != n {
			t.Errorf("ExpireLeases stopped %d of %d expired leases", len(exps), n)
		}
		if left := f.listWork(t, e.ID, work.Starting); len(left) != 0 {
			t.Errorf("%d items with expired leases are still starting", len(left))
		}
	})

	t.Run("ConcurrentCallsExpireEachItemOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const n = 2 * racers
		sessions := map[string]string{} // item → session
		for range n {
			s, it := f.item(t, e, work.Active, base)
			sessions[it.ID] = s.ID
		}
		now := base.Add(time.Hour)
		results := make([][]store.Expiry, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			results[i], errs[i] = f.st.ExpireLeases(f.ctx, now)
		})
		expired := map[string]int{}
		requeued := map[string]int{} // session → fresh items
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("ExpireLeases %d: %v", i, errs[i])
			}
			for _, x := range results[i] {
				expired[x.Item.ID]++
				if x.Requeue != nil {
					requeued[x.Requeue.SessionID]++
				}
			}
		}
		for wid, sid := range sessions {
			if expired[wid] != 1 {
				t.Errorf("item %s expired %d times, want once", wid, expired[wid])
			}
			if requeued[sid] != 1 {
				t.Errorf("session %s requeued %d times, want once", sid, requeued[sid])
			}
		}
		queued := f.listWork(t, e.ID, work.Queued)
		perSession := map[string]int{}
		for _, it := range queued {
			perSession[it.SessionID]++
		}
		for sid, k := range perSession {
			if k != 1 {
				t.Errorf("session %s has %d queued items, want 1", sid, k)
			}
		}
		if len(queued) != n {
			t.Errorf("%d queued items after expiry, want %d", len(queued), n)
		}
	})

	t.Run("NeverExpiresExtendedLease", func(t *testing.T) {
		t.Parallel()
		// Heartbeats race one ExpireLeases call: an item whose lease a heartbeat extended
		// must not be expired, whether the heartbeat landed before or after the scan.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const n = 2 * racers
		var items []work.Item
		for range n {
			_, it := f.item(t, e, work.Starting, base)
			items = append(items, it)
		}
		now := base.Add(61 * sec) // every lease ended at base+60s
		var exps []store.Expiry
		var expErr error
		beats := make([]work.Item, n)
		beatErrs := make([]error, n)
		race(n+1, func(i int) {
			if i == n {
				exps, expErr = f.st.ExpireLeases(f.ctx, now)
				return
			}
			beats[i], beatErrs[i] = after(f.st.UpdateWork(f.ctx, e.ID, items[i].ID, heartbeat(work.AnyHeartbeat, work.DefaultTTL, now)))
		})
		if expErr != nil {
			t.Fatalf("ExpireLeases: %v", expErr)
		}
		expired := map[string]int{}
		for _, x := range exps {
			expired[x.Item.ID]++
		}
		for i, it := range items {
			stored := f.getWork(t, it)
			switch {
			case beatErrs[i] == nil:
				if expired[it.ID] != 0 {
					t.Errorf("item %s: expired although a heartbeat had extended its lease to %s",
						it.ID, fmtTime(beats[i].LeaseExpiresAt))
				}
				checkEqual(t, "heartbeated item", stored, beats[i])
			default:
				wantKind(t, "heartbeat after expiry", beatErrs[i], work.Conflict)
				if expired[it.ID] != 1 {
					t.Errorf("item %s: heartbeat refused (%v) but expired %d times", it.ID, beatErrs[i], expired[it.ID])
				}
				if stored.State != work.Stopped {
					t.Errorf("item %s: heartbeat refused but state %s", it.ID, stored.State)
				}
			}
		}
	})
}

func testNextLeaseExpiry(t *testing.T, newStore newStoreFunc) {
	t.Run("EarliestLease", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		next := func() (time.Time, bool) {
			t.Helper()
			at, ok, err := f.st.NextLeaseExpiry(f.ctx)
			if err != nil {
				t.Fatalf("NextLeaseExpiry: %v", err)
			}
			return at, ok
		}
		if at, ok := next(); ok {
			t.Errorf("NextLeaseExpiry with no items = %s, want ok false", at)
		}
		f.item(t, e, work.Queued, base)
		f.item(t, e, work.Stopped, base)
		if at, ok := next(); ok {
			t.Errorf("NextLeaseExpiry with no leased item = %s, want ok false", at)
		}
		_, a := f.item(t, e, work.Starting, base)                // lease until base+60s
		_, b := f.item(t, other, work.Active, base.Add(-10*sec)) // lease until base+51s
		_, c := f.item(t, e, work.Stopping, base.Add(-5*sec))    // lease until base+56s
		if at, ok := next(); !ok || !at.Equal(b.LeaseExpiresAt) {
			t.Errorf("NextLeaseExpiry = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(b.LeaseExpiresAt))
		}
		b = f.update(t, b, heartbeat(work.AnyHeartbeat, work.MaxTTL, base))
		if at, ok := next(); !ok || !at.Equal(c.LeaseExpiresAt) {
			t.Errorf("NextLeaseExpiry after extending the earliest = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(c.LeaseExpiresAt))
		}
		f.update(t, c, stopWith(false, base))
		if at, ok := next(); !ok || !at.Equal(a.LeaseExpiresAt) {
			t.Errorf("NextLeaseExpiry after stopping = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(a.LeaseExpiresAt))
		}
		f.update(t, a, stopWith(true, base))
		f.update(t, b, stopWith(true, base))
		if at, ok := next(); ok {
			t.Errorf("NextLeaseExpiry after every lease ended = %s, want ok false", at)
		}
	})
}
