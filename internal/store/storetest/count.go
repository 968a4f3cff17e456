package storetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// countKey is one (environment, state) pair of CountWork.
type countKey struct {
	env   string
	state work.State
}

// countWork calls CountWork and returns its counts by pair, failing the test on an error,
// on a pair listed twice or on a count below 1 (the contract lists only pairs with items).
func (f *fixture) countWork(t *testing.T) map[countKey]int {
	t.Helper()
	counts, err := f.st.CountWork(f.ctx)
	if err != nil {
		t.Fatalf("CountWork: %v", err)
	}
	return countsByPair(t, counts)
}

func countsByPair(t *testing.T, counts []store.WorkCount) map[countKey]int {
	t.Helper()
	out := map[countKey]int{}
	for _, c := range counts {
		k := countKey{c.EnvironmentID, c.State}
		if _, dup := out[k]; dup {
			t.Errorf("CountWork lists %s/%s twice", c.EnvironmentID, c.State)
		}
		if c.Count < 1 {
			t.Errorf("CountWork lists %s/%s with count %d; pairs without items must be absent", c.EnvironmentID, c.State, c.Count)
		}
		out[k] = c.Count
	}
	return out
}

// drive stores a new session of env with a queued item and moves the item to state
// through UpdateWork and the rules of internal/work: ack at at, first heartbeat at at+1s,
// graceful stop at at+2s, forced stop at at+3s.
func (f *fixture) drive(t *testing.T, env store.Environment, state work.State, at time.Time) work.Item {
	t.Helper()
	s, it := draft(env.ID, work.Queued, at)
	f.put(t, s, &it)
	return f.driveFrom(t, it, state, at)
}

// driveFrom moves a stored queued (possibly delivered) item to state, as drive does.
func (f *fixture) driveFrom(t *testing.T, it work.Item, state work.State, at time.Time) work.Item {
	t.Helper()
	if state == work.Queued {
		return it
	}
	worker := it.DeliveredTo
	if worker == "" {
		worker = "w-count"
	}
	it = f.update(t, it, ackBy(worker, at))
	if state == work.Starting {
		return it
	}
	it = f.update(t, it, heartbeat(work.AnyHeartbeat, work.DefaultTTL, at.Add(sec)))
	switch state {
	case work.Stopping:
		it = f.update(t, it, stopWith(false, at.Add(2*sec)))
	case work.Stopped:
		it = f.update(t, it, stopWith(true, at.Add(3*sec)))
	}
	if it.State != state {
		t.Fatalf("fixture: item %s is %s, want %s", it.ID, it.State, state)
	}
	return it
}

func testCountWork(t *testing.T, newStore newStoreFunc) {
	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		if got := f.countWork(t); len(got) != 0 {
			t.Errorf("CountWork of an empty store = %v, want nothing", got)
		}
		// Environments and sessions without items count nothing either.
		e := f.env(t, selfHosted)
		f.env(t, cloud)
		f.put(t, draftSession(e.ID, base), nil)
		if got := f.countWork(t); len(got) != 0 {
			t.Errorf("CountWork of a store without work items = %v, want nothing", got)
		}
	})

	t.Run("ByEnvironmentAndState", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e1, e2, e3, e4 := f.env(t, selfHosted), f.env(t, selfHosted), f.env(t, cloud), f.env(t, selfHosted)

		// e2, at base: an item acknowledged and left to expire, which stops it and queues a
		// fresh item for its session.
		f.drive(t, e2, work.Starting, base)
		exps, err := f.st.ExpireLeases(f.ctx, base.Add(61*sec))
		if err != nil || len(exps) != 1 || exps[0].Requeue == nil {
			t.Fatalf("fixture: ExpireLeases = %d expiries, err %v; want one, requeued", len(exps), err)
		}

		// An hour later, every other item; none of their leases has ended.
		at := base.Add(time.Hour)
		// e1: one item claimed and acknowledged by its claimer, one claimed and not yet
		// acknowledged (still queued), then the rest through UpdateWork.
		claim := func(want work.Item) work.Item {
			t.Helper()
			got, ok, err := f.st.ClaimWork(f.ctx, e1.ID, work.Claim{WorkerID: "w-claim", Reclaim: work.DefaultReclaim, At: at})
			if err != nil || !ok || got.ID != want.ID {
				t.Fatalf("fixture: ClaimWork = %s, ok %v, err %v; want %s", got.ID, ok, err, want.ID)
			}
			return got
		}
		f.driveFrom(t, claim(f.drive(t, e1, work.Queued, at)), work.Starting, at)
		claim(f.drive(t, e1, work.Queued, at))
		for _, state := range []work.State{work.Queued, work.Queued, work.Starting, work.Active,
			work.Stopping, work.Stopping, work.Stopped} {
			f.drive(t, e1, state, at)
		}
		f.drive(t, e2, work.Active, at)
		// e3: a stopping item, and an active one whose session is deleted (the item is
		// force-stopped and kept); then e3 is archived.
		f.drive(t, e3, work.Stopping, at)
		deleted := f.drive(t, e3, work.Active, at)
		if _, err := f.st.DeleteSession(f.ctx, deleted.SessionID, at.Add(5*sec)); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		if _, err := f.st.UpdateEnvironment(f.ctx, e3.ID, func(e *store.Environment) error {
			e.ArchivedAt = at.Add(6 * sec)
			return nil
		}); err != nil {
			t.Fatalf("UpdateEnvironment: %v", err)
		}
		// e4: a session without an item.
		f.put(t, draftSession(e4.ID, at), nil)

		before := map[string][]work.Item{}
		for _, e := range []store.Environment{e1, e2, e3, e4} {
			before[e.ID] = f.listWork(t, e.ID)
		}
		got := f.countWork(t)
		want := map[countKey]int{
			{e1.ID, work.Queued}:   3,
			{e1.ID, work.Starting}: 2,
			{e1.ID, work.Active}:   1,
			{e1.ID, work.Stopping}: 2,
			{e1.ID, work.Stopped}:  1,
			{e2.ID, work.Queued}:   1,
			{e2.ID, work.Active}:   1,
			{e2.ID, work.Stopped}:  1,
			{e3.ID, work.Stopping}: 1,
			{e3.ID, work.Stopped}:  1,
		}
		if !maps.Equal(got, want) {
			t.Errorf("CountWork = %s\nwant %s", fmtCounts(got), fmtCounts(want))
		}
		// The counts agree with the items as ListWork reads them, and counting changed none.
		listed := map[countKey]int{}
		for _, e := range []store.Environment{e1, e2, e3, e4} {
			after := f.listWork(t, e.ID)
			if len(after) != len(before[e.ID]) {
				t.Fatalf("environment %s: %d items after CountWork, %d before", e.ID, len(after), len(before[e.ID]))
			}
			for i, it := range after {
				checkEqual(t, "item after CountWork", it, before[e.ID][i])
				listed[countKey{e.ID, it.State}]++
			}
		}
		if !maps.Equal(got, listed) {
			t.Errorf("CountWork = %s\nbut ListWork has %s", fmtCounts(got), fmtCounts(listed))
		}
	})

	t.Run("ConsistentSnapshotDuringTransitions", func(t *testing.T) {
		t.Parallel()
		// Items move from queued to starting while CountWork runs: every count sees each
		// item exactly once, so the states always add up to the number of items.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const n = 4 * racers
		items := make([]work.Item, n)
		for i := range items {
			items[i] = f.drive(t, e, work.Queued, base)
		}
		var acked atomic.Int64
		var snapshots [][]store.WorkCount
		var countErr error
		ackErrs := make([]error, n)
		race(racers+1, func(i int) {
			if i == racers {
				// Count at least once, and on until the last ack.
				for {
					var c []store.WorkCount
					c, countErr = f.st.CountWork(f.ctx)
					snapshots = append(snapshots, c)
					if countErr != nil || acked.Load() == n {
						return
					}
				}
			}
			for j := i; j < n; j += racers {
				_, ackErrs[j] = f.st.UpdateWork(f.ctx, e.ID, items[j].ID, ackBy("w1", base.Add(sec)))
				acked.Add(1)
			}
		})
		for j, err := range ackErrs {
			if err != nil {
				t.Fatalf("ack %s: %v", items[j].ID, err)
			}
		}
		if countErr != nil {
			t.Fatalf("CountWork: %v", countErr)
		}
		for _, c := range snapshots {
			got := countsByPair(t, c)
			total := 0
			for k, v := range got {
				if k.env != e.ID || (k.state != work.Queued && k.state != work.Starting) {
					t.Errorf("CountWork lists %s/%s; only %s's queued and starting items exist", k.env, k.state, e.ID)
				}
				total += v
			}
			if total != n {
				t.Errorf("CountWork during the acks = %s: %d items, want %d", fmtCounts(got), total, n)
			}
		}
		if got := f.countWork(t); got[countKey{e.ID, work.Starting}] != n || len(got) != 1 {
			t.Errorf("CountWork after every ack = %s, want %d starting", fmtCounts(got), n)
		}
	})
}

// fmtCounts shows counts sorted by environment, then states in lifecycle order.
func fmtCounts(m map[countKey]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b countKey) int {
		if c := strings.Compare(a.env, b.env); c != 0 {
			return c
		}
		return stateRank(a.state) - stateRank(b.state)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s/%s=%d", k.env, k.state, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// stateRank is a state's position in work.States (unknown states after them).
func stateRank(s work.State) int {
	if i := slices.Index(work.States, s); i >= 0 {
		return i
	}
	return len(work.States)
}
