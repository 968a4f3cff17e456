package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

func workID(it work.Item) string { return it.ID }

func testClaimWork(t *testing.T, newStore newStoreFunc) {
	t.Run("DeliversOldestDeliverable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		// IDs ascend in draft order; the items are stored out of that order so that a
		// store delivering in insertion order is caught.
		_, elsewhereItem := draft(other.ID, work.Queued, base)
		_, acked := draft(e.ID, work.Starting, base)
		s1, first := draft(e.ID, work.Queued, base)
		s2, second := draft(e.ID, work.Queued, base)
		s3, third := draft(e.ID, work.Queued, base)
		f.put(t, s3, &third)
		f.insertItem(t, elsewhereItem)
		f.put(t, s2, &second)
		f.insertItem(t, acked)
		f.put(t, s1, &first)

		now := base.Add(time.Minute).In(elsewhere)
		got, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: work.DefaultReclaim, At: now})
		if err != nil || !ok {
			t.Fatalf("ClaimWork = ok %v, err %v; want an item", ok, err)
		}
		want := deliverTo(first, "w1", now)
		checkEqual(t, "claimed item", got, want)
		checkEqual(t, "stored claimed item", f.getWork(t, first), want)
		for _, it := range []work.Item{second, third, acked, elsewhereItem} {
			checkEqual(t, "item not claimed", f.getWork(t, it), it)
		}
		got, ok, err = f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: work.DefaultReclaim, At: now})
		if err != nil || !ok || got.ID != second.ID {
			t.Errorf("second ClaimWork = %s, ok %v, err %v; want %s", got.ID, ok, err, second.ID)
		}
	})

	t.Run("RespectsReclaimWindow", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, first := f.item(t, e, work.Queued, base)
		_, second := f.item(t, e, work.Queued, base)
		const reclaim = 5 * time.Second
		t0 := base.Add(time.Minute)
		claim := func(worker string, now time.Time) (work.Item, bool) {
			t.Helper()
			it, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: worker, Reclaim: reclaim, At: now})
			if err != nil {
				t.Fatalf("ClaimWork at %s: %v", now, err)
			}
			return it, ok
		}
		if it, ok := claim("w1", t0); !ok || it.ID != first.ID {
			t.Fatalf("first claim = %s (ok %v), want %s", it.ID, ok, first.ID)
		}
		// Inside the window the delivered item is passed over for the next one.
		if it, ok := claim("w2", t0.Add(reclaim-us)); !ok || it.ID != second.ID {
			t.Fatalf("claim inside the window = %s (ok %v), want %s", it.ID, ok, second.ID)
		}
		if it, ok := claim("w3", t0.Add(reclaim-us)); ok {
			t.Errorf("claim with both items inside their windows delivered %s", it.ID)
		}
		// At exactly the window's end the first item is deliverable again.
		it, ok := claim("w3", t0.Add(reclaim))
		if !ok || it.ID != first.ID {
			t.Fatalf("claim at the window's end = %s (ok %v), want %s again", it.ID, ok, first.ID)
		}
		want := deliverTo(deliverTo(first, "w1", t0), "w3", t0.Add(reclaim))
		if want.Deliveries != 2 {
			t.Fatalf("fixture: Deliveries = %d", want.Deliveries)
		}
		checkEqual(t, "reclaimed item", it, want)
		checkEqual(t, "stored reclaimed item", f.getWork(t, first), want)
		checkEqual(t, "stored second item", f.getWork(t, second), deliverTo(second, "w2", t0.Add(reclaim-us)))
	})

	t.Run("ZeroReclaimRedelivers", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		for i := range 3 {
			got, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "", Reclaim: 0, At: base.Add(sec)})
			if err != nil || !ok || got.ID != it.ID || got.Deliveries != i+1 || got.DeliveredTo != "" {
				t.Errorf("claim %d with a zero window = %s deliveries %d to %q (ok %v, err %v), want %s delivery %d to \"\"",
					i, got.ID, got.Deliveries, got.DeliveredTo, ok, err, it.ID, i+1)
			}
		}
	})

	t.Run("NothingDeliverable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		now := base.Add(time.Hour)
		if it, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: work.DefaultReclaim, At: now}); ok || err != nil {
			t.Errorf("ClaimWork on an empty queue = %s, ok %v, err %v; want ok false", it.ID, ok, err)
		}
		var items []work.Item
		for _, state := range []work.State{work.Starting, work.Active, work.Stopping, work.Stopped} {
			_, it := f.item(t, e, state, base)
			items = append(items, it)
		}
		_, foreign := f.item(t, other, work.Queued, base)
		items = append(items, foreign)
		if it, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: work.DefaultReclaim, At: now}); ok || err != nil {
			t.Errorf("ClaimWork with no queued item = %s, ok %v, err %v; want ok false", it.ID, ok, err)
		}
		for _, it := range items {
			checkEqual(t, "item after an empty claim", f.getWork(t, it), it)
		}
	})

	t.Run("ConcurrentClaimsDeliverEachItemOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const items = 3 * racers
		want := map[string]bool{}
		for range items {
			_, it := f.item(t, e, work.Queued, base)
			want[it.ID] = true
		}
		now := base.Add(time.Minute)
		got := make([][]string, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			// More claims than items means some item came back inside its window: stop
			// there rather than loop on a store that never records deliveries.
			for range items + 1 {
				it, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: fmt.Sprintf("w%d", i), Reclaim: time.Hour, At: now})
				if err != nil {
					errs[i] = err
					return
				}
				if !ok {
					return
				}
				got[i] = append(got[i], it.ID)
			}
		})
		seen := map[string]int{}
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("claimer %d: %v", i, errs[i])
			}
			for _, wid := range got[i] {
				seen[wid]++
			}
		}
		for wid, n := range seen {
			if n != 1 {
				t.Errorf("item %s delivered %d times inside the reclaim window", wid, n)
			}
			if !want[wid] {
				t.Errorf("unknown item %s delivered", wid)
			}
		}
		if len(seen) != items {
			t.Errorf("%d of %d items delivered", len(seen), items)
		}
		for _, it := range f.listWork(t, e.ID) {
			if it.Deliveries != 1 || it.DeliveredAt.IsZero() || !strings.HasPrefix(it.DeliveredTo, "w") {
				t.Errorf("stored item %s: Deliveries %d, DeliveredAt %s, DeliveredTo %q; want one recorded delivery",
					it.ID, it.Deliveries, fmtTime(it.DeliveredAt), it.DeliveredTo)
			}
		}
	})
}

func testNextReclaim(t *testing.T, newStore newStoreFunc) {
	t.Run("EarliestUnacknowledgedDelivery", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		const reclaim = 5 * time.Second
		next := func() (time.Time, bool) {
			t.Helper()
			at, ok, err := f.st.NextReclaim(f.ctx, e.ID, reclaim)
			if err != nil {
				t.Fatalf("NextReclaim: %v", err)
			}
			return at, ok
		}
		if at, ok := next(); ok {
			t.Errorf("NextReclaim of an empty queue = %s, want ok false", at)
		}
		_, first := f.item(t, e, work.Queued, base)
		_, second := f.item(t, e, work.Queued, base)
		if at, ok := next(); ok {
			t.Errorf("NextReclaim with nothing delivered = %s, want ok false", at)
		}
		// Another environment's earlier delivery does not count.
		f.item(t, other, work.Queued, base)
		if _, ok, err := f.st.ClaimWork(f.ctx, other.ID, work.Claim{WorkerID: "w9", Reclaim: reclaim, At: base.Add(time.Second)}); !ok || err != nil {
			t.Fatalf("ClaimWork in the other environment: ok %v, err %v", ok, err)
		}
		t1, t2 := base.Add(time.Minute), base.Add(time.Minute+3*sec)
		for _, now := range []time.Time{t1, t2} {
			if _, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: reclaim, At: now}); !ok || err != nil {
				t.Fatalf("ClaimWork at %s: ok %v, err %v", now, ok, err)
			}
		}
		if at, ok := next(); !ok || !at.Equal(t1.Add(reclaim)) {
			t.Errorf("NextReclaim = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(t1.Add(reclaim)))
		}
		f.update(t, first, ackBy("w1", t2))
		if at, ok := next(); !ok || !at.Equal(t2.Add(reclaim)) {
			t.Errorf("NextReclaim after the earliest was acknowledged = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(t2.Add(reclaim)))
		}
		f.update(t, second, stopWith(false, t2))
		if at, ok := next(); ok {
			t.Errorf("NextReclaim with no delivered queued item = %s, want ok false", at)
		}
	})
}

func testGetWork(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		// Between them the two items have every field set.
		s, stopping := draft(e.ID, work.Queued, base)
		stopping.Metadata = work.Metadata{"team": "infra", "attempt": "2"}
		stopping = deliverTo(deliverTo(stopping, "w1", base.Add(us)), "w2", base.Add(sec+us))
		stopping = advance(stopping, work.Stopping, base.Add(2*sec))
		stopping, err := beatItem(stopping, work.AnyHeartbeat, 120, base.Add(4*sec+7*us))
		if err != nil {
			t.Fatal(err)
		}
		given := inZone(stopping, elsewhere)
		f.put(t, s, &given)
		checkEqual(t, "GetWork of a stopping item", f.getWork(t, stopping), stopping)
		_, stopped := draft(e.ID, work.Stopped, base.Add(time.Minute))
		givenStopped := inZone(stopped, elsewhere)
		f.insertItem(t, givenStopped)
		checkEqual(t, "GetWork of a stopped item", f.getWork(t, stopped), stopped)
		list := byID(f.listWork(t, e.ID))
		checkEqual(t, "ListWork's stopping item", list[stopping.ID], stopping)
		checkEqual(t, "ListWork's stopped item", list[stopped.ID], stopped)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, err := f.st.GetWork(f.ctx, e.ID, id.New(id.Work))
		wantNotFound(t, "GetWork", err)
	})

	t.Run("WrongEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		_, err := f.st.GetWork(f.ctx, other.ID, it.ID)
		wantNotFound(t, "GetWork through another environment", err)
	})
}

func testListWork(t *testing.T, newStore newStoreFunc) {
	t.Run("PaginationAndStateFilter", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		type row struct {
			id    string
			state work.State
		}
		var rows []row
		var foreign []string
		for i := range 2 {
			for _, state := range work.States {
				_, it := f.item(t, e, state, base)
				rows = append(rows, row{it.ID, state})
				if i == 0 {
					_, x := f.item(t, other, state, base)
					foreign = append(foreign, x.ID)
				}
			}
		}
		for _, states := range [][]work.State{
			nil,
			{work.Queued},
			{work.Stopping, work.Starting},
			{work.Stopped, work.Active, work.Stopped},
			work.States,
		} {
			t.Run(fmt.Sprint(states), func(t *testing.T) {
				var want []string
				hidden := slices.Clone(foreign)
				for _, r := range rows {
					if len(states) == 0 || slices.Contains(states, r.state) {
						want = append(want, r.id)
					} else {
						hidden = append(hidden, r.id)
					}
				}
				checkPages(t, id.Work, listOf(func(p store.Page) ([]work.Item, bool, error) {
					return f.st.ListWork(f.ctx, e.ID, p, states)
				}, workID), want, hidden...)
			})
		}
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		var initial []string
		for range 9 {
			_, it := f.item(t, e, work.Queued, base)
			initial = append(initial, it.ID)
		}
		fence := id.New(id.Work)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]work.Item, bool, error) {
			return f.st.ListWork(f.ctx, e.ID, p, []work.State{work.Queued})
		}, workID), initial, fence, func() (string, error) {
			s, it := draft(e.ID, work.Queued, base)
			_, err := f.st.CreateSession(f.ctx, s, nil, &it, nil)
			return it.ID, err
		})
	})
}

func testUpdateWork(t *testing.T, newStore newStoreFunc) {
	t.Run("AppliesFnToStoredItem", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		claimed, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: work.DefaultReclaim, At: base.Add(sec)})
		if err != nil || !ok {
			t.Fatalf("ClaimWork: ok %v, err %v", ok, err)
		}
		now := base.Add(2 * sec)
		want, _, err := work.Ack("w1", now).Apply(claimed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
			checkEqual(t, "fn's item (the stored row)", cur, claimed)
			return work.Ack("w1", now).Apply(cur)
		}))
		if err != nil {
			t.Fatalf("UpdateWork: %v", err)
		}
		checkEqual(t, "UpdateWork's item before", got.Before, claimed)
		checkEqual(t, "UpdateWork's item after", got.After, want)
		if !got.Changed {
			t.Errorf("UpdateWork reports no change")
		}
		checkEqual(t, "stored item", f.getWork(t, it), want)
	})

	t.Run("RestsOnTheRowAfterAnotherProcessWrote", func(t *testing.T) {
		// A store keeps the version of each leased item it last read or wrote and tries
		// its next transition from it (store/recent.go). Another process's writes (here a
		// second DB over the same driver) make that version old; what the store then
		// answers and writes rests on the row as stored, not on the version it kept.
		t.Parallel()
		f := setup(t, newStore)
		d, _ := driverOf(t, f.st)
		other := store.New(d)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		if _, ok, err := f.st.ClaimWork(f.ctx, e.ID, work.Claim{WorkerID: "w1", Reclaim: work.DefaultReclaim, At: base.Add(sec)}); err != nil || !ok {
			t.Fatalf("ClaimWork: ok %v, err %v", ok, err)
		}
		if _, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, ackBy("w1", base.Add(2*sec))); err != nil {
			t.Fatalf("ack: %v", err)
		}
		// Refused on the kept version (no heartbeat yet), allowed on the row.
		theirs, err := other.UpdateWork(f.ctx, e.ID, it.ID, heartbeat(work.AnyHeartbeat, work.DefaultTTL, base.Add(3*sec)))
		if err != nil {
			t.Fatalf("the other process's heartbeat: %v", err)
		}
		ours, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, heartbeat(work.ExpectHeartbeatAt(theirs.After.LatestHeartbeatAt), work.DefaultTTL, base.Add(4*sec)))
		if err != nil {
			t.Fatalf("heartbeat expecting the other process's: %v", err)
		}
		if !ours.After.LatestHeartbeatAt.Equal(base.Add(4 * sec)) {
			t.Errorf("heartbeat left last_heartbeat %v, want %v", ours.After.LatestHeartbeatAt, base.Add(4*sec))
		}
		// Allowed on both, but written from the kept version it would drop the other
		// process's key.
		a, b := "1", "2"
		if _, err := other.UpdateWork(f.ctx, e.ID, it.ID, work.UpdateMetadata(work.Patch{"a": &a})); err != nil {
			t.Fatalf("the other process's metadata: %v", err)
		}
		if _, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, work.UpdateMetadata(work.Patch{"b": &b})); err != nil {
			t.Fatalf("metadata: %v", err)
		}
		got := f.getWork(t, it)
		if got.Metadata["a"] != "1" || got.Metadata["b"] != "2" {
			t.Errorf("stored metadata %v, want both a=1 and b=2", got.Metadata)
		}
		// Allowed on the kept version (active), refused on the row (stopped elsewhere).
		if _, err := other.UpdateWork(f.ctx, e.ID, it.ID, stopWith(true, base.Add(5*sec))); err != nil {
			t.Fatalf("the other process's stop: %v", err)
		}
		stopped := f.getWork(t, it)
		_, err = f.st.UpdateWork(f.ctx, e.ID, it.ID, heartbeat(work.AnyHeartbeat, work.DefaultTTL, base.Add(6*sec)))
		wantKind(t, "heartbeat of an item another process stopped", err, work.Conflict)
		checkEqual(t, "stored item after the refused heartbeat", f.getWork(t, it), stopped)
	})

	t.Run("UnchangedWritesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		if _, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
			cur.State = work.Stopped
			cur.Metadata = work.Metadata{"edited": "but not written"}
			cur.StoppedAt = base.Add(time.Hour)
			return cur, false, nil
		})); err != nil {
			t.Fatalf("UpdateWork: %v", err)
		}
		checkEqual(t, "item after fn reported no change", f.getWork(t, it), it)
	})

	t.Run("FnErrorReturnedUnchanged", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Stopping, base)
		var fnErr error
		_, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
			next, _, err := work.Ack("w1", base.Add(time.Hour)).Apply(cur)
			fnErr = err
			next.Metadata = work.Metadata{"edited": "but not written"}
			next.State = work.Stopped
			return next, true, err
		}))
		if fnErr == nil {
			t.Fatalf("fixture: ack of a stopping item succeeded")
		}
		if err != fnErr {
			t.Errorf("UpdateWork: err = %v (%T), want fn's *work.Error unchanged", err, err)
		}
		wantKind(t, "UpdateWork", err, work.Conflict)
		checkEqual(t, "item after fn failed", f.getWork(t, it), it)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		for _, tc := range []struct{ name, env, id string }{
			{"MissingItem", e.ID, id.New(id.Work)},
			{"WrongEnvironment", other.ID, it.ID},
		} {
			called := false
			_, err := f.st.UpdateWork(f.ctx, tc.env, tc.id, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
				called = true
				return stopWith(true, base.Add(time.Hour)).Apply(cur)
			}))
			wantNotFound(t, "UpdateWork "+tc.name, err)
			if called {
				t.Errorf("UpdateWork %s: fn called", tc.name)
			}
		}
		checkEqual(t, "item", f.getWork(t, it), it)
	})

	t.Run("ConcurrentHeartbeatsOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Starting, base)
		now := base.Add(10 * sec) // every heartbeat at the same instant
		exp := work.ExpectNoHeartbeat
		var winner work.Item
		for round := range 3 {
			results := make([]work.Item, racers)
			errs := make([]error, racers)
			fnErrs := make([]error, racers)
			race(racers, func(i int) {
				results[i], errs[i] = after(f.st.UpdateWork(f.ctx, e.ID, it.ID, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
					next, err := beatItem(cur, exp, work.DefaultTTL, now)
					fnErrs[i] = err
					return next, err == nil, err
				})))
			})
			wins := 0
			for i := range racers {
				if errs[i] == nil {
					wins++
					winner = results[i]
					continue
				}
				wantKind(t, fmt.Sprintf("round %d heartbeat %d", round, i), errs[i], work.Precondition)
				if errs[i] != fnErrs[i] {
					t.Errorf("round %d heartbeat %d: err = %v, want fn's *work.Error unchanged", round, i, errs[i])
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d of %d heartbeats with the same expectation succeeded, want exactly 1", round, wins, racers)
			}
			stored := f.getWork(t, it)
			checkEqual(t, fmt.Sprintf("round %d stored item", round), stored, winner)
			if stored.State != work.Active {
				t.Errorf("round %d: state %s, want active", round, stored.State)
			}
			exp = work.ExpectHeartbeatAt(winner.LatestHeartbeatAt)
		}
	})

	t.Run("ConcurrentAcksOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		now := base.Add(sec)
		changed := make([]bool, racers)
		results := make([]work.Item, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			results[i], errs[i] = after(f.st.UpdateWork(f.ctx, e.ID, it.ID, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
				next, ch, err := work.Ack(fmt.Sprintf("w%d", i), now).Apply(cur)
				changed[i] = ch
				return next, ch, err
			})))
		})
		winners := 0
		var winner work.Item
		for i := range racers {
			switch {
			case errs[i] == nil && changed[i]:
				winners++
				winner = results[i]
			case errs[i] == nil:
				t.Errorf("ack %d by w%d: succeeded without a change after another worker acknowledged", i, i)
			default:
				wantKind(t, fmt.Sprintf("ack %d", i), errs[i], work.Conflict)
			}
		}
		if winners != 1 {
			t.Fatalf("%d of %d acks by different workers changed the item, want exactly 1", winners, racers)
		}
		stored := f.getWork(t, it)
		checkEqual(t, "stored item", stored, winner)
		if stored.State != work.Starting || stored.AckedBy != winner.AckedBy {
			t.Errorf("stored item: state %s acked by %q, want starting acked by %q", stored.State, stored.AckedBy, winner.AckedBy)
		}
	})

	t.Run("ConcurrentStopsFollowTheTable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		// next is API.md §4's stop table.
		next := func(from work.State, force bool) work.State {
			switch {
			case from == work.Stopped:
				return work.Stopped
			case !force && (from == work.Starting || from == work.Active):
				return work.Stopping
			default:
				return work.Stopped
			}
		}
		type call struct {
			force     bool
			from, to  work.State
			changed   bool
			err       error
			committed work.Item
		}
		const perItem = 4
		var items []work.Item
		for range 2 {
			for _, state := range []work.State{work.Queued, work.Starting, work.Active, work.Stopping} {
				_, it := f.item(t, e, state, base)
				items = append(items, it)
			}
		}
		calls := make([][]call, len(items))
		for i := range calls {
			calls[i] = make([]call, perItem)
		}
		now := base.Add(time.Minute)
		race(len(items)*perItem, func(k int) {
			i, j := k/perItem, k%perItem
			c := &calls[i][j]
			c.force = j%2 == 1
			c.committed, c.err = after(f.st.UpdateWork(f.ctx, e.ID, items[i].ID, work.Func("test", func(cur work.Item) (work.Item, bool, error) {
				n, ch := stopItem(cur, c.force, now)
				c.from, c.to, c.changed = cur.State, n.State, ch
				return n, ch, nil
			})))
		})
		for i, it := range items {
			stored := f.getWork(t, it)
			if stored.State != work.Stopped || stored.StoppedAt.IsZero() || !stored.LeaseExpiresAt.IsZero() {
				t.Errorf("item %s (from %s): state %s, stopped_at %s, lease %s after a forced stop; want stopped, no lease",
					it.ID, it.State, stored.State, fmtTime(stored.StoppedAt), fmtTime(stored.LeaseExpiresAt))
			}
			// The writes must chain: each changed stop starts from the state the previous
			// one left, beginning at the item's state, so no stop ran on a stale row.
			steps := map[work.State]call{}
			for _, c := range calls[i] {
				if c.err != nil {
					t.Errorf("item %s: stop: %v", it.ID, c.err)
					continue
				}
				if c.to != next(c.from, c.force) {
					t.Errorf("item %s: stop force=%v took %s to %s, the table says %s", it.ID, c.force, c.from, c.to, next(c.from, c.force))
				}
				if !c.changed {
					if c.from != work.Stopped {
						t.Errorf("item %s: stop force=%v on %s changed nothing", it.ID, c.force, c.from)
					}
					continue
				}
				if prev, dup := steps[c.from]; dup {
					t.Errorf("item %s: two stops were applied to the same %s row (force=%v and force=%v): one overwrote the other",
						it.ID, c.from, prev.force, c.force)
				}
				steps[c.from] = c
			}
			state, used := it.State, 0
			for state != work.Stopped {
				c, ok := steps[state]
				if !ok {
					t.Errorf("item %s: no committed stop from %s; steps %v", it.ID, state, steps)
					break
				}
				state = c.to
				used++
			}
			if used != len(steps) {
				t.Errorf("item %s: %d committed stops, but only %d chain from %s to stopped", it.ID, len(steps), used, it.State)
			}
			wantRequested := it.State == work.Stopping
			if c, ok := steps[it.State]; ok && c.to == work.Stopping {
				wantRequested = true
			}
			if got := !stored.StopRequestedAt.IsZero(); got != wantRequested {
				t.Errorf("item %s (from %s): stop_requested_at set = %v, want %v", it.ID, it.State, got, wantRequested)
			}
		}
	})
}

func testWorkStats(t *testing.T, newStore newStoreFunc) {
	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		st, err := f.st.WorkStats(f.ctx, e.ID, base)
		if err != nil {
			t.Fatalf("WorkStats: %v", err)
		}
		checkEqual(t, "WorkStats of an empty queue", st, store.Stats{})
	})

	t.Run("DepthPendingOldest", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		now := base.Add(time.Hour)
		put := func(envID string, state work.State, created time.Time, deliveredAt time.Time) {
			_, it := draft(envID, state, created)
			if !deliveredAt.IsZero() {
				it = deliverTo(it, "w1", deliveredAt)
			}
			f.insertItem(t, it)
		}
		put(e.ID, work.Queued, base.Add(sec), time.Time{})                                   // depth: never delivered
		put(e.ID, work.Queued, base, now.Add(-sec))                                          // pending, and the oldest queued
		put(e.ID, work.Queued, base.Add(2*sec), now.Add(-work.DefaultReclaim))               // depth: window just ended
		put(e.ID, work.Queued, base.Add(3*sec), now.Add(-work.DefaultReclaim+us))            // pending: window ends in 1µs
		put(e.ID, work.Starting, base.Add(-time.Hour), time.Time{})                          // not queued
		put(e.ID, work.Stopped, base.Add(-2*time.Hour), time.Time{})                         // not queued
		put(other.ID, work.Queued, base.Add(-3*time.Hour), time.Time{})                      // another queue
		put(other.ID, work.Queued, base.Add(-3*time.Hour), now.Add(-work.DefaultReclaim+us)) // another queue
		st, err := f.st.WorkStats(f.ctx, e.ID, now)
		if err != nil {
			t.Fatalf("WorkStats: %v", err)
		}
		checkEqual(t, "WorkStats", st, store.Stats{Depth: 2, Pending: 2, OldestQueuedAt: base})
	})

	t.Run("WorkersPolling", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		now := base.Add(time.Hour)
		polls := []struct {
			env, worker string
			at          time.Time
		}{
			{e.ID, "w1", now.Add(-40 * sec)},
			{e.ID, "w2", now.Add(-sec)},
			{e.ID, "w1", now.Add(-2 * sec)},                // again: its latest poll counts, once
			{e.ID, "w3", now.Add(-work.PollerWindow - us)}, // too long ago
			{other.ID, "w4", now},                          // another environment
		}
		for _, p := range polls {
			if err := f.st.RecordPoll(f.ctx, p.env, p.worker, p.at); err != nil {
				t.Fatalf("RecordPoll: %v", err)
			}
		}
		stats := func(at time.Time) int {
			t.Helper()
			st, err := f.st.WorkStats(f.ctx, e.ID, at)
			if err != nil {
				t.Fatalf("WorkStats: %v", err)
			}
			return st.WorkersPolling
		}
		if n := stats(now); n != 2 {
			t.Errorf("workers_polling = %d, want 2 (w1, w2)", n)
		}
		// 29 s later w1's latest poll (now-2s) is 31 s old; w2's (now-1s) is 30 s old.
		if n := stats(now.Add(29*sec - us)); n != 1 {
			t.Errorf("workers_polling 29s later = %d, want 1 (w2)", n)
		}
		if n := stats(now.Add(time.Minute)); n != 0 {
			t.Errorf("workers_polling a minute later = %d, want 0", n)
		}
		st, err := f.st.WorkStats(f.ctx, other.ID, now)
		if err != nil || st.WorkersPolling != 1 {
			t.Errorf("other environment's workers_polling = %d (err %v), want 1", st.WorkersPolling, err)
		}
	})
}

func testRecordPoll(t *testing.T, newStore newStoreFunc) {
	t.Run("ConcurrentPollsCountDistinctWorkers", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		now := base.Add(time.Hour)
		errs := make([]error, 4*racers)
		race(4*racers, func(i int) {
			errs[i] = f.st.RecordPoll(f.ctx, e.ID, fmt.Sprintf("w%d", i%racers), now.Add(-time.Duration(i)*us))
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("RecordPoll %d: %v", i, err)
			}
		}
		st, err := f.st.WorkStats(f.ctx, e.ID, now)
		if err != nil || st.WorkersPolling != racers {
			t.Errorf("workers_polling = %d (err %v), want %d", st.WorkersPolling, err, racers)
		}
	})
}
