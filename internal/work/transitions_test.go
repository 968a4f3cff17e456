package work_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// op is one operation of API.md §4's transition table: the transition it makes at an
// instant.
type op func(now time.Time) work.Transition

func ackBy(worker string) op {
	return func(now time.Time) work.Transition { return work.Ack(worker, now) }
}

func heartbeatOp(exp work.Expectation, ttl int) op {
	return func(now time.Time) work.Transition { return work.Heartbeat(exp, ttl, now) }
}

func stopOp(force bool) op {
	return func(now time.Time) work.Transition { return work.Stop(force, now) }
}

// beat applies a heartbeat and drops its changed flag (a heartbeat that succeeds always
// changes the item).
func beat(it work.Item, exp work.Expectation, ttl int, now time.Time) (work.Item, error) {
	next, _, err := work.Heartbeat(exp, ttl, now).Apply(it)
	return next, err
}

// TestTransitionTable checks every cell of API.md §4's table for ack, heartbeat and stop:
// the resulting state, whether the item must be written, the error kind, and the whole
// resulting item (which timestamps are set, lease, and that nothing else moves).
func TestTransitionTable(t *testing.T) {
	t.Parallel()

	// Expected field changes, applied to a copy of the input item.
	acked := func(e *work.Item) {
		e.AcknowledgedAt = wantNow
		e.AckedBy = "w1"
		e.TTLSeconds = work.DefaultTTL
		e.LeaseExpiresAt = wantNow.Add(60 * sec)
	}
	firstBeat := func(e *work.Item) {
		e.StartedAt = wantNow
		e.LatestHeartbeatAt = wantNow
		e.TTLSeconds = 60
		e.LeaseExpiresAt = wantNow.Add(60 * sec)
	}
	laterBeat := func(e *work.Item) { // started_at untouched
		e.LatestHeartbeatAt = wantNow
		e.TTLSeconds = 60
		e.LeaseExpiresAt = wantNow.Add(60 * sec)
	}
	stopRequested := func(e *work.Item) { // lease kept: the worker drains
		e.StopRequestedAt = wantNow
	}
	reachedStopped := func(e *work.Item) { // stop_requested_at untouched
		e.StoppedAt = wantNow
		e.LeaseExpiresAt = time.Time{}
	}

	tests := []struct {
		op        string
		fn        op
		from      work.State
		wantState work.State
		changed   bool
		kind      work.Kind
		want      func(*work.Item) // nil: item unchanged apart from State
	}{
		// ack: queued → starting; starting, active 200 unchanged; stopping, stopped 409.
		{"ack", ackBy("w1"), work.Queued, work.Starting, true, 0, acked},
		{"ack", ackBy("w1"), work.Starting, work.Starting, false, 0, nil},
		{"ack", ackBy("w1"), work.Active, work.Active, false, 0, nil},
		{"ack", ackBy("w1"), work.Stopping, work.Stopping, false, work.Conflict, nil},
		{"ack", ackBy("w1"), work.Stopped, work.Stopped, false, work.Conflict, nil},

		// heartbeat: queued 409; starting → active; active stays; stopping stays (lease
		// extended); stopped 409.
		{"heartbeat", heartbeatOp(work.AnyHeartbeat, 60), work.Queued, work.Queued, false, work.Conflict, nil},
		{"heartbeat", heartbeatOp(work.AnyHeartbeat, 60), work.Starting, work.Active, true, 0, firstBeat},
		{"heartbeat", heartbeatOp(work.AnyHeartbeat, 60), work.Active, work.Active, true, 0, laterBeat},
		{"heartbeat", heartbeatOp(work.AnyHeartbeat, 60), work.Stopping, work.Stopping, true, 0, laterBeat},
		{"heartbeat", heartbeatOp(work.AnyHeartbeat, 60), work.Stopped, work.Stopped, false, work.Conflict, nil},

		// stop force=false: queued → stopped; starting, active → stopping; stopping →
		// stopped; stopped 200 unchanged.
		{"stop force=false", stopOp(false), work.Queued, work.Stopped, true, 0, reachedStopped},
		{"stop force=false", stopOp(false), work.Starting, work.Stopping, true, 0, stopRequested},
		{"stop force=false", stopOp(false), work.Active, work.Stopping, true, 0, stopRequested},
		{"stop force=false", stopOp(false), work.Stopping, work.Stopped, true, 0, reachedStopped},
		{"stop force=false", stopOp(false), work.Stopped, work.Stopped, false, 0, nil},

		// stop force=true: everything live → stopped (no stop_requested_at); stopped 200
		// unchanged.
		{"stop force=true", stopOp(true), work.Queued, work.Stopped, true, 0, reachedStopped},
		{"stop force=true", stopOp(true), work.Starting, work.Stopped, true, 0, reachedStopped},
		{"stop force=true", stopOp(true), work.Active, work.Stopped, true, 0, reachedStopped},
		{"stop force=true", stopOp(true), work.Stopping, work.Stopped, true, 0, reachedStopped},
		{"stop force=true", stopOp(true), work.Stopped, work.Stopped, false, 0, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s", tc.op, tc.from), func(t *testing.T) {
			t.Parallel()
			in := fixture(tc.from)
			before := in.Clone()

			tr := tc.fn(now)
			got, changed, err := tr.Apply(in)
			if tr.Leases() && changed && !work.ChangesLease(in, got) {
				t.Errorf("%s says each of its changes starts or ends the lease, but %s → %s does not", tc.op, tc.from, got.State)
			}

			if k := kindOf(t, err); k != tc.kind {
				t.Fatalf("error = %v (%s), want %s", err, kindName(k), kindName(tc.kind))
			}
			if got.State != tc.wantState {
				t.Errorf("state = %s, want %s", got.State, tc.wantState)
			}
			if changed != tc.changed {
				t.Errorf("changed = %t, want %t", changed, tc.changed)
			}
			want := before.Clone()
			want.State = tc.wantState
			if tc.want != nil {
				tc.want(&want)
			}
			checkItem(t, "result", got, want)
			checkItem(t, "input after the call", in, before)

			// States never move backwards.
			if rank(got.State) < rank(tc.from) {
				t.Errorf("state moved backwards: %s → %s", tc.from, got.State)
			}
			if got.State == work.Stopped {
				if got.StoppedAt.IsZero() {
					t.Errorf("stopped item without stopped_at")
				}
				if !got.LeaseExpiresAt.IsZero() {
					t.Errorf("stopped item still holds a lease until %s", fmtTime(got.LeaseExpiresAt))
				}
			}
		})
	}
}

func rank(s work.State) int {
	for i, st := range work.States {
		if st == s {
			return i
		}
	}
	return -1
}

// TestHeartbeatFirstOnStoppingSetsStartedAt: API.md §4 says "the first successful heartbeat
// sets started_at". An item stopped gracefully while still starting is stopping and has
// never had a heartbeat; its first heartbeat (which the table allows) is the first
// successful heartbeat.
func TestHeartbeatFirstOnStoppingSetsStartedAt(t *testing.T) {
	t.Parallel()
	in := startingItem()
	in.State = work.Stopping
	in.StopRequestedAt = stopReqAt

	got, err := beat(in, work.ExpectNoHeartbeat, 60, now)
	if err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	want := in.Clone()
	want.StartedAt = wantNow
	want.LatestHeartbeatAt = wantNow
	want.TTLSeconds = 60
	want.LeaseExpiresAt = wantNow.Add(60 * sec)
	checkItem(t, "result", got, want)
}

func TestStateHelpers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s                   work.State
		valid, live, leased bool
	}{
		{work.Queued, true, true, false},
		{work.Starting, true, true, true},
		{work.Active, true, true, true},
		{work.Stopping, true, true, true},
		{work.Stopped, true, false, false},
		{"", false, false, false},
		{"running", false, true, false},
		{"QUEUED", false, true, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.s), func(t *testing.T) {
			t.Parallel()
			if got := tc.s.Valid(); got != tc.valid {
				t.Errorf("Valid() = %t, want %t", got, tc.valid)
			}
			if tc.valid {
				if got := tc.s.Live(); got != tc.live {
					t.Errorf("Live() = %t, want %t", got, tc.live)
				}
			}
			if got := tc.s.Leased(); got != tc.leased {
				t.Errorf("Leased() = %t, want %t", got, tc.leased)
			}
		})
	}
	want := []work.State{work.Queued, work.Starting, work.Active, work.Stopping, work.Stopped}
	if len(work.States) != len(want) {
		t.Fatalf("States = %v, want %v", work.States, want)
	}
	for i := range want {
		if work.States[i] != want[i] {
			t.Errorf("States[%d] = %s, want %s (lifecycle order)", i, work.States[i], want[i])
		}
	}
}

// TestAckWorkerID checks the Worker-ID rules of API.md §4.6.
func TestAckWorkerID(t *testing.T) {
	t.Parallel()
	delivered := func(to string) work.Item {
		it := queuedItem()
		it.DeliveredTo = to
		return it
	}
	neverDelivered := func() work.Item {
		it := queuedItem()
		it.DeliveredAt, it.DeliveredTo, it.Deliveries = time.Time{}, "", 0
		return it
	}
	ackedBy := func(s work.State, by string) work.Item {
		it := fixture(s)
		it.AckedBy = by
		return it
	}
	tests := []struct {
		name        string
		in          work.Item
		worker      string
		kind        work.Kind
		changed     bool
		wantAckedBy string
	}{
		{"delivered to A, ack by B", delivered("A"), "B", work.Conflict, false, ""},
		{"delivered to A, ack by A", delivered("A"), "A", 0, true, "A"},
		{"delivered to A, ack without Worker-ID inherits A", delivered("A"), "", 0, true, "A"},
		{"delivered without Worker-ID, ack by B", delivered(""), "B", 0, true, "B"},
		{"delivered without Worker-ID, ack without Worker-ID", delivered(""), "", 0, true, ""},
		{"never delivered, ack by B", neverDelivered(), "B", 0, true, "B"},
		{"never delivered, ack without Worker-ID", neverDelivered(), "", 0, true, ""},
		{"starting acked by A, re-ack by A", ackedBy(work.Starting, "A"), "A", 0, false, "A"},
		{"starting acked by A, re-ack without Worker-ID", ackedBy(work.Starting, "A"), "", 0, false, "A"},
		{"starting acked by A, re-ack by B", ackedBy(work.Starting, "A"), "B", work.Conflict, false, "A"},
		{"active acked by A, re-ack by A", ackedBy(work.Active, "A"), "A", 0, false, "A"},
		{"active acked by A, re-ack without Worker-ID", ackedBy(work.Active, "A"), "", 0, false, "A"},
		{"active acked by A, re-ack by B", ackedBy(work.Active, "A"), "B", work.Conflict, false, "A"},
		{"stopping acked by A, ack by A", ackedBy(work.Stopping, "A"), "A", work.Conflict, false, "A"},
		{"stopped acked by A, ack by A", ackedBy(work.Stopped, "A"), "A", work.Conflict, false, "A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := tc.in.Clone()
			got, changed, err := work.Ack(tc.worker, now).Apply(tc.in)
			if k := kindOf(t, err); k != tc.kind {
				t.Fatalf("error = %v (%s), want %s", err, kindName(k), kindName(tc.kind))
			}
			if changed != tc.changed {
				t.Errorf("changed = %t, want %t", changed, tc.changed)
			}
			if !tc.changed {
				// 200 unchanged and 409 both leave the item exactly as it was; in
				// particular a re-ack does not restart the lease.
				checkItem(t, "result", got, before)
				return
			}
			want := before.Clone()
			want.State = work.Starting
			want.AcknowledgedAt = wantNow
			want.AckedBy = tc.wantAckedBy
			want.TTLSeconds = work.DefaultTTL
			want.LeaseExpiresAt = wantNow.Add(work.DefaultTTL * sec)
			checkItem(t, "result", got, want)
		})
	}
}

// TestAckStartsLease: the ack starts the lease at now + DefaultTTL (60 s), so that a worker
// that dies before its first heartbeat loses the item.
func TestAckStartsLease(t *testing.T) {
	t.Parallel()
	if work.DefaultTTL != 60 {
		t.Fatalf("DefaultTTL = %d, want 60", work.DefaultTTL)
	}
	got, _, err := work.Ack("w1", now).Apply(queuedItem())
	if err != nil {
		t.Fatal(err)
	}
	if want := wantNow.Add(60 * sec); !got.LeaseExpiresAt.Equal(want) {
		t.Errorf("LeaseExpiresAt = %s, want %s", fmtTime(got.LeaseExpiresAt), fmtTime(want))
	}
	if got.TTLSeconds != 60 {
		t.Errorf("TTLSeconds = %d, want 60", got.TTLSeconds)
	}
	if work.LeaseExpired(got, wantNow.Add(60*sec)) {
		t.Errorf("lease expired at exactly now + 60 s")
	}
	if !work.LeaseExpired(got, wantNow.Add(60*sec+us)) {
		t.Errorf("lease not expired at now + 60 s + 1 µs")
	}
}

// TestHeartbeatExpectation checks expected_last_heartbeat (API.md §4.7), parsed as the API
// receives it and applied to the item.
func TestHeartbeatExpectation(t *testing.T) {
	t.Parallel()
	// The active fixture's latest heartbeat is 2026-07-01T08:15:06.120394Z.
	neverBeat := func(s work.State) work.Item {
		it := fixture(s)
		it.StartedAt, it.LatestHeartbeatAt = time.Time{}, time.Time{}
		return it
	}
	tests := []struct {
		name    string
		in      work.Item
		exp     string
		present bool
		kind    work.Kind
	}{
		{"NO_HEARTBEAT on never-heartbeated starting", startingItem(), "NO_HEARTBEAT", true, 0},
		{"NO_HEARTBEAT on heartbeated active", activeItem(), "NO_HEARTBEAT", true, work.Precondition},
		{"NO_HEARTBEAT on heartbeated stopping", stoppingItem(), "NO_HEARTBEAT", true, work.Precondition},
		{"exact, Z", activeItem(), "2026-07-01T08:15:06.120394Z", true, 0},
		{"exact, +00:00", activeItem(), "2026-07-01T08:15:06.120394+00:00", true, 0},
		{"exact, +02:00", activeItem(), "2026-07-01T10:15:06.120394+02:00", true, 0},
		{"exact, -05:30", activeItem(), "2026-07-01T02:45:06.120394-05:30", true, 0},
		{"exact, nine digits", activeItem(), "2026-07-01T08:15:06.120394000Z", true, 0},
		{"exact on stopping", stoppingItem(), "2026-07-01T08:15:06.120394Z", true, 0},
		{"one microsecond later", activeItem(), "2026-07-01T08:15:06.120395Z", true, work.Precondition},
		{"one microsecond earlier", activeItem(), "2026-07-01T08:15:06.120393Z", true, work.Precondition},
		{"one microsecond later, +02:00", activeItem(), "2026-07-01T10:15:06.120395+02:00", true, work.Precondition},
		{"without fraction", activeItem(), "2026-07-01T08:15:06Z", true, work.Precondition},
		{"timestamp on never-heartbeated starting", startingItem(), "2026-07-01T08:15:06.120394Z", true, work.Precondition},
		{"absent on starting", startingItem(), "", false, 0},
		{"absent on active", activeItem(), "", false, 0},
		{"absent on stopping", stoppingItem(), "", false, 0},
		// The state is checked before the expectation.
		{"stopped, stale timestamp", stoppedItem(), "2026-07-01T08:00:00Z", true, work.Conflict},
		{"stopped, matching timestamp", stoppedItem(), "2026-07-01T08:15:06.120394Z", true, work.Conflict},
		{"stopped, stale NO_HEARTBEAT", stoppedItem(), "NO_HEARTBEAT", true, work.Conflict},
		{"stopped never heartbeated, NO_HEARTBEAT", neverBeat(work.Stopped), "NO_HEARTBEAT", true, work.Conflict},
		{"queued, stale timestamp", queuedItem(), "2026-07-01T08:00:00Z", true, work.Conflict},
		{"queued, NO_HEARTBEAT", queuedItem(), "NO_HEARTBEAT", true, work.Conflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exp, err := work.ParseExpectation(tc.exp, tc.present)
			if err != nil {
				t.Fatalf("ParseExpectation(%q): %v", tc.exp, err)
			}
			before := tc.in.Clone()
			got, err := beat(tc.in, exp, 60, now)
			k := kindOf(t, err)
			if k != tc.kind {
				t.Fatalf("error = %v (%s), want %s", err, kindName(k), kindName(tc.kind))
			}
			if k != 0 {
				checkItem(t, "result", got, before)
			}
			switch k {
			case 0:
				if !got.LatestHeartbeatAt.Equal(wantNow) {
					t.Errorf("LatestHeartbeatAt = %s, want %s", fmtTime(got.LatestHeartbeatAt), fmtTime(wantNow))
				}
			case work.Precondition:
				cur := asError(t, err).Current
				if cur == nil {
					t.Fatalf("Precondition error without Current")
				}
				checkItem(t, "Current", *cur, before)
				// Current is a snapshot: changing it does not reach the item.
				cur.Metadata["team"] = "changed"
				if tc.in.Metadata["team"] != "infra" {
					t.Errorf("Current shares its metadata with the item")
				}
			case work.Conflict:
				if asError(t, err).Current != nil {
					t.Errorf("Conflict error carries Current")
				}
			}
		})
	}
}

// TestHeartbeatFencing: each successful heartbeat's latest_heartbeat_at is a unique fencing
// token, strictly greater than the previous one even when the clock has not moved on or has
// gone backwards, so that of two heartbeats with the same expectation exactly one wins.
func TestHeartbeatFencing(t *testing.T) {
	t.Parallel()

	t.Run("same now, chained", func(t *testing.T) {
		t.Parallel()
		it := activeItem()
		at := lastBeat // the clock stands still at the latest heartbeat
		prev := it.LatestHeartbeatAt
		for i := range 5 {
			next, err := beat(it, work.ExpectHeartbeatAt(prev), 60, at)
			if err != nil {
				t.Fatalf("heartbeat %d echoing %s: %v", i, fmtTime(prev), err)
			}
			if !next.LatestHeartbeatAt.After(prev) {
				t.Fatalf("heartbeat %d: LatestHeartbeatAt %s not after %s", i, fmtTime(next.LatestHeartbeatAt), fmtTime(prev))
			}
			if want := next.LatestHeartbeatAt.Add(60 * sec); !next.LeaseExpiresAt.Equal(want) {
				t.Errorf("heartbeat %d: LeaseExpiresAt = %s, want %s", i, fmtTime(next.LeaseExpiresAt), fmtTime(want))
			}
			prev, it = next.LatestHeartbeatAt, next
		}
	})

	t.Run("same now, unconditional", func(t *testing.T) {
		t.Parallel()
		it := startingItem()
		seen := map[time.Time]bool{}
		var prev time.Time
		for i := range 5 {
			next, err := beat(it, work.AnyHeartbeat, 60, now)
			if err != nil {
				t.Fatalf("heartbeat %d: %v", i, err)
			}
			lhb := next.LatestHeartbeatAt
			if i == 0 && !lhb.Equal(wantNow) {
				t.Errorf("first heartbeat: LatestHeartbeatAt = %s, want %s", fmtTime(lhb), fmtTime(wantNow))
			}
			if i > 0 && !lhb.After(prev) {
				t.Errorf("heartbeat %d: LatestHeartbeatAt %s not after %s", i, fmtTime(lhb), fmtTime(prev))
			}
			if seen[lhb] {
				t.Errorf("heartbeat %d: LatestHeartbeatAt %s repeats", i, fmtTime(lhb))
			}
			seen[lhb] = true
			if !next.StartedAt.Equal(wantNow) {
				t.Errorf("heartbeat %d: StartedAt = %s, want the first heartbeat's %s", i, fmtTime(next.StartedAt), fmtTime(wantNow))
			}
			prev, it = lhb, next
		}
	})

	t.Run("clock went backwards", func(t *testing.T) {
		t.Parallel()
		got, err := beat(activeItem(), work.AnyHeartbeat, 60, lastBeat.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if !got.LatestHeartbeatAt.After(lastBeat) {
			t.Errorf("LatestHeartbeatAt = %s, want after %s", fmtTime(got.LatestHeartbeatAt), fmtTime(lastBeat))
		}
	})

	t.Run("same expectation twice", func(t *testing.T) {
		t.Parallel()
		cases := []struct {
			name string
			in   work.Item
			exp  work.Expectation
		}{
			{"NO_HEARTBEAT", startingItem(), work.ExpectNoHeartbeat},
			{"timestamp", activeItem(), work.ExpectHeartbeatAt(lastBeat)},
			{"timestamp, clock at that instant", activeItem(), work.ExpectHeartbeatAt(lastBeat)},
		}
		for i, c := range cases {
			at := now
			if i == 2 {
				at = lastBeat
			}
			first, err := beat(c.in, c.exp, 60, at)
			if err != nil {
				t.Fatalf("%s: first heartbeat: %v", c.name, err)
			}
			second, err := beat(first, c.exp, 60, at)
			if k := kindOf(t, err); k != work.Precondition {
				t.Fatalf("%s: second heartbeat error = %v (%s), want %s", c.name, err, kindName(k), kindName(work.Precondition))
			}
			checkItem(t, c.name+": second result", second, first)
			if cur := asError(t, err).Current; cur == nil {
				t.Errorf("%s: Precondition without Current", c.name)
			} else {
				checkItem(t, c.name+": Current", *cur, first)
			}
		}
	})
}

// TestHeartbeatTTL: a heartbeat extends the lease to the heartbeat + ttl.
func TestHeartbeatTTL(t *testing.T) {
	t.Parallel()
	for _, ttl := range []int{10, 30, 60, 600} {
		for _, s := range []work.State{work.Starting, work.Active, work.Stopping} {
			t.Run(fmt.Sprintf("%s/ttl=%d", s, ttl), func(t *testing.T) {
				t.Parallel()
				got, err := beat(fixture(s), work.AnyHeartbeat, ttl, now)
				if err != nil {
					t.Fatal(err)
				}
				if got.TTLSeconds != ttl {
					t.Errorf("TTLSeconds = %d, want %d", got.TTLSeconds, ttl)
				}
				want := got.LatestHeartbeatAt.Add(time.Duration(ttl) * sec)
				if !got.LeaseExpiresAt.Equal(want) || !want.Equal(wantNow.Add(time.Duration(ttl)*sec)) {
					t.Errorf("LeaseExpiresAt = %s, want %s", fmtTime(got.LeaseExpiresAt), fmtTime(wantNow.Add(time.Duration(ttl)*sec)))
				}
			})
		}
	}
}

// TestDeliverable checks API.md §4.2: deliverable = queued and (never delivered, or last
// delivered at least reclaim_older_than_ms ago).
func TestDeliverable(t *testing.T) {
	t.Parallel()
	pollAt := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	deliveredAgo := func(s work.State, ago time.Duration) work.Item {
		it := fixture(s)
		it.DeliveredAt = pollAt.Add(-ago)
		return it
	}
	neverDelivered := func(s work.State) work.Item {
		it := fixture(s)
		it.DeliveredAt, it.DeliveredTo, it.Deliveries = time.Time{}, "", 0
		return it
	}
	tests := []struct {
		name    string
		in      work.Item
		reclaim time.Duration
		want    bool
	}{
		{"queued never delivered", neverDelivered(work.Queued), work.DefaultReclaim, true},
		{"queued delivered just now", deliveredAgo(work.Queued, 0), work.DefaultReclaim, false},
		{"queued delivered 1µs less than the window ago", deliveredAgo(work.Queued, 5*sec-us), work.DefaultReclaim, false},
		{"queued delivered exactly the window ago", deliveredAgo(work.Queued, 5*sec), work.DefaultReclaim, true},
		{"queued delivered 1µs more than the window ago", deliveredAgo(work.Queued, 5*sec+us), work.DefaultReclaim, true},
		{"queued delivered long ago", deliveredAgo(work.Queued, time.Hour), work.DefaultReclaim, true},
		{"reclaim 0, delivered just now", deliveredAgo(work.Queued, 0), 0, true},
		{"reclaim 100ms, delivered 99ms ago", deliveredAgo(work.Queued, 99*time.Millisecond), 100 * time.Millisecond, false},
		{"reclaim 100ms, delivered 100ms ago", deliveredAgo(work.Queued, 100*time.Millisecond), 100 * time.Millisecond, true},
		{"reclaim 1h, delivered 59m ago", deliveredAgo(work.Queued, 59*time.Minute), time.Hour, false},
		{"starting never delivered", neverDelivered(work.Starting), work.DefaultReclaim, false},
		{"starting delivered long ago", deliveredAgo(work.Starting, time.Hour), work.DefaultReclaim, false},
		{"active delivered long ago", deliveredAgo(work.Active, time.Hour), work.DefaultReclaim, false},
		{"stopping delivered long ago", deliveredAgo(work.Stopping, time.Hour), work.DefaultReclaim, false},
		{"stopped delivered long ago", deliveredAgo(work.Stopped, time.Hour), work.DefaultReclaim, false},
		{"stopped never delivered", neverDelivered(work.Stopped), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := work.Deliverable(tc.in, pollAt, tc.reclaim); got != tc.want {
				t.Errorf("Deliverable = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestDeliver: a delivery records time and Worker-ID, counts, and keeps the item queued.
func TestDeliver(t *testing.T) {
	t.Parallel()
	it := queuedItem()
	it.DeliveredAt, it.DeliveredTo, it.Deliveries = time.Time{}, "", 0
	before := it.Clone()
	if work.Redelivery(it) {
		t.Errorf("Redelivery of a never delivered item = true")
	}

	deliver := func(it work.Item, worker string, at time.Time) work.Item {
		t.Helper()
		next, ok, err := work.Deliver(work.Claim{WorkerID: worker, Reclaim: work.DefaultReclaim, At: at}).Apply(it)
		if !ok || err != nil {
			t.Fatalf("delivery to %q at %s: ok %v err %v", worker, fmtTime(at), ok, err)
		}
		return next
	}
	first := deliver(it, "A", now)
	want := before.Clone()
	want.DeliveredAt = wantNow
	want.DeliveredTo = "A"
	want.Deliveries = 1
	checkItem(t, "first delivery", first, want)
	checkItem(t, "input after Deliver", it, before)
	if !work.Redelivery(first) {
		t.Errorf("Redelivery after one delivery = false")
	}
	if work.Deliverable(first, now, work.DefaultReclaim) {
		t.Errorf("deliverable again at the delivery instant")
	}
	if work.Deliverable(first, wantNow.Add(5*sec-us), work.DefaultReclaim) {
		t.Errorf("deliverable again 1µs before the reclaim window ends")
	}
	if !work.Deliverable(first, wantNow.Add(5*sec), work.DefaultReclaim) {
		t.Errorf("not deliverable once the reclaim window has passed")
	}

	later := wantNow.Add(5 * sec)
	second := deliver(first, "", later)
	want.DeliveredAt = later
	want.DeliveredTo = ""
	want.Deliveries = 2
	checkItem(t, "redelivery without Worker-ID", second, want)

	third := deliver(second, "B", later.Add(6*sec))
	if _, ok, _ := work.Deliver(work.Claim{WorkerID: "C", Reclaim: work.DefaultReclaim, At: later.Add(7 * sec)}).Apply(third); ok {
		t.Errorf("delivered again inside the reclaim window")
	}
	want.DeliveredAt = later.Add(6 * sec)
	want.DeliveredTo = "B"
	want.Deliveries = 3
	checkItem(t, "redelivery to B", third, want)

	if work.DefaultReclaim != 5000*time.Millisecond {
		t.Errorf("DefaultReclaim = %s, want 5s", work.DefaultReclaim)
	}
}

// TestLeaseExpiry checks API.md §4.9: a leased item is stopped once its lease has passed;
// starting and active items are requeued, stopping ones are not.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	expiry := time.Date(2026, 7, 1, 8, 16, 6, 120394000, time.UTC)
	withLease := func(s work.State) work.Item {
		it := fixture(s)
		it.LeaseExpiresAt = expiry
		return it
	}
	tests := []struct {
		name        string
		in          work.Item
		at          time.Time
		wantExpired bool
		wantRequeue bool
	}{
		{"starting 1µs before expiry", withLease(work.Starting), expiry.Add(-us), false, false},
		{"starting at the expiry instant", withLease(work.Starting), expiry, false, false},
		{"starting 1µs after expiry", withLease(work.Starting), expiry.Add(us), true, true},
		{"active at the expiry instant", withLease(work.Active), expiry, false, false},
		{"active 1µs after expiry", withLease(work.Active), expiry.Add(us), true, true},
		{"active 1h after expiry", withLease(work.Active), expiry.Add(time.Hour), true, true},
		{"stopping at the expiry instant", withLease(work.Stopping), expiry, false, false},
		{"stopping 1µs after expiry", withLease(work.Stopping), expiry.Add(us), true, false},
		{"queued 1h after a lease time", withLease(work.Queued), expiry.Add(time.Hour), false, false},
		{"queued without lease", queuedItem(), expiry.Add(time.Hour), false, false},
		{"stopped 1h after a lease time", withLease(work.Stopped), expiry.Add(time.Hour), false, false},
		{"stopped without lease", stoppedItem(), expiry.Add(time.Hour), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := work.LeaseExpired(tc.in, tc.at); got != tc.wantExpired {
				t.Errorf("LeaseExpired = %t, want %t", got, tc.wantExpired)
			}
			before := tc.in.Clone()
			requeue := work.RequeuesAfterExpiry(tc.in) && work.LeaseExpired(tc.in, tc.at)
			got, ok, err := work.ExpireLease(tc.at).Apply(tc.in)
			if err != nil {
				t.Fatalf("ExpireLease: %v", err)
			}
			if ok != tc.wantExpired {
				t.Errorf("ExpireLease ok = %t, want %t", ok, tc.wantExpired)
			}
			if requeue != tc.wantRequeue {
				t.Errorf("ExpireLease requeue = %t, want %t", requeue, tc.wantRequeue)
			}
			want := before.Clone()
			if tc.wantExpired {
				want.State = work.Stopped
				want.StoppedAt = work.Timestamp(tc.at)
				want.LeaseExpiresAt = time.Time{}
			}
			checkItem(t, "result", got, want)
			checkItem(t, "input after the call", tc.in, before)
		})
	}

	t.Run("stopped_at truncated to UTC microseconds", func(t *testing.T) {
		t.Parallel()
		at := expiry.Add(time.Second + 789).In(time.FixedZone("X", -3*3600))
		got, ok, _ := work.ExpireLease(at).Apply(withLease(work.Active))
		if !ok {
			t.Fatal("not expired")
		}
		want := time.Date(2026, 7, 1, 8, 16, 7, 120394000, time.UTC)
		if !got.StoppedAt.Equal(want) || got.StoppedAt.Location() != time.UTC {
			t.Errorf("StoppedAt = %s, want %s", got.StoppedAt.Format(time.RFC3339Nano), fmtTime(want))
		}
	})
}

// TestRequeueAllowed: a fresh item is queued after an expiry only if the session still
// exists, is not archived and has no other live item (API.md §4.9).
func TestRequeueAllowed(t *testing.T) {
	t.Parallel()
	for _, exists := range []bool{false, true} {
		for _, archived := range []bool{false, true} {
			for _, live := range []bool{false, true} {
				s := work.SessionState{Exists: exists, Archived: archived, HasLiveItem: live}
				want := exists && !archived && !live
				t.Run(fmt.Sprintf("exists=%t/archived=%t/live=%t", exists, archived, live), func(t *testing.T) {
					t.Parallel()
					if got := work.RequeueAllowed(s); got != want {
						t.Errorf("RequeueAllowed(%+v) = %t, want %t", s, got, want)
					}
				})
			}
		}
	}
}

// TestWakes: a user.message to a session with no live item in a self_hosted environment
// queues a new item (API.md §3, dormant wake-up), archived or not; no other event does.
func TestWakes(t *testing.T) {
	t.Parallel()
	if work.WakeEvent != "user.message" {
		t.Errorf("WakeEvent = %q, want user.message", work.WakeEvent)
	}
	events := []string{"user.message", "user.interrupt", "user.tool_confirmation", "user.tool_result",
		"user.custom_tool_result", "user.define_outcome", "system.message", "", "USER.MESSAGE"}
	for _, ev := range events {
		for _, selfHosted := range []bool{false, true} {
			for _, exists := range []bool{false, true} {
				for _, archived := range []bool{false, true} {
					for _, live := range []bool{false, true} {
						s := work.SessionState{Exists: exists, Archived: archived, HasLiveItem: live}
						want := ev == "user.message" && selfHosted && exists && !live // archived or not
						name := fmt.Sprintf("%q/self_hosted=%t/exists=%t/archived=%t/live=%t", ev, selfHosted, exists, archived, live)
						t.Run(name, func(t *testing.T) {
							t.Parallel()
							if got := work.Wakes(ev, selfHosted, s); got != want {
								t.Errorf("Wakes = %t, want %t", got, want)
							}
						})
					}
				}
			}
		}
	}
}

// TestNew: a fresh item is queued with a copy of the session's metadata.
func TestNew(t *testing.T) {
	t.Parallel()
	md := work.Metadata{"a": "1"}
	it := work.New("work_1", "env_1", "sess_1", md, now)
	want := work.Item{
		ID: "work_1", EnvironmentID: "env_1", SessionID: "sess_1", State: work.Queued,
		Metadata: work.Metadata{"a": "1"}, CreatedAt: wantNow,
	}
	checkItem(t, "New", it, want)
	md["a"] = "changed"
	if it.Metadata["a"] != "1" {
		t.Errorf("item metadata shares memory with the session's")
	}
	if c := work.New("w", "e", "s", nil, now); c.Metadata == nil {
		t.Errorf("New with nil metadata: Metadata is nil, want {}")
	}
	cl := it.Clone()
	cl.Metadata["a"] = "other"
	if it.Metadata["a"] != "1" {
		t.Errorf("Clone shares metadata")
	}
}

// TestCancel: a session cancel asks a live item to stop gracefully; an item already
// stopping keeps its request, and a stopped one is left alone (API.md §3).
func TestCancel(t *testing.T) {
	t.Parallel()
	for _, s := range work.States {
		in := fixture(s)
		got, changed, err := work.Cancel(now).Apply(in)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		want, wantChanged, _ := work.Stop(false, now).Apply(in)
		if s == work.Stopping {
			want, wantChanged = in, false
		}
		if changed != wantChanged {
			t.Errorf("%s: changed %v, want %v", s, changed, wantChanged)
		}
		checkItem(t, string(s), got, want)
	}
}

// TestUpdateMetadata: the metadata transition merges a patch; an empty one changes
// nothing, and a merge over the limit is refused with the item unchanged.
func TestUpdateMetadata(t *testing.T) {
	t.Parallel()
	in := activeItem()
	if _, changed, err := work.UpdateMetadata(nil).Apply(in); changed || err != nil {
		t.Errorf("empty patch: changed %v, err %v", changed, err)
	}
	v := "yes"
	got, changed, err := work.UpdateMetadata(work.Patch{"done": &v}).Apply(in)
	if !changed || err != nil || got.Metadata["done"] != "yes" {
		t.Errorf("patch: %v %v %v", got.Metadata, changed, err)
	}
	big := work.Patch{}
	for i := range work.MaxWorkMetadataKeys + 1 {
		big[fmt.Sprintf("k%d", i)] = &v
	}
	got, changed, err = work.UpdateMetadata(big).Apply(in)
	if changed || kindOf(t, err) != work.Invalid {
		t.Errorf("patch over the limit: changed %v, err %v", changed, err)
	}
	checkItem(t, "item after a refused patch", got, in)
}

// HeartbeatOrReport (the Anthropic dialect, API.md §8): on a stopping or stopped item it
// compares no expectation and changes nothing; on every other state it is Heartbeat, with
// the same result, refusal and all.
func TestHeartbeatOrReport(t *testing.T) {
	t.Parallel()
	stale := work.ExpectHeartbeatAt(lastBeat.Add(-sec))
	for _, s := range []work.State{work.Stopping, work.Stopped} {
		for _, exp := range []work.Expectation{work.ExpectNoHeartbeat, stale, work.ExpectHeartbeatAt(lastBeat)} {
			in := fixture(s)
			got, changed, err := work.HeartbeatOrReport(exp, 300, now).Apply(in)
			if err != nil || changed {
				t.Errorf("%s: changed %v, err %v; want a report of the item as it is", s, changed, err)
			}
			checkItem(t, string(s), got, in)
		}
	}
	for _, s := range []work.State{work.Queued, work.Starting, work.Active} {
		for _, exp := range []work.Expectation{work.ExpectNoHeartbeat, stale, work.ExpectHeartbeatAt(lastBeat)} {
			in := fixture(s)
			want, wantChanged, wantErr := work.Heartbeat(exp, 300, now).Apply(in.Clone())
			got, changed, err := work.HeartbeatOrReport(exp, 300, now).Apply(in.Clone())
			if changed != wantChanged || (err == nil) != (wantErr == nil) || (err != nil && kindOf(t, err) != kindOf(t, wantErr)) {
				t.Errorf("%s: changed %v err %v; Heartbeat gives changed %v err %v", s, changed, err, wantChanged, wantErr)
			}
			checkItem(t, string(s), got, want)
		}
	}
}
