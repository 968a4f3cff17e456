package work

import (
	"time"
)

// A Transition is one change that a request makes to a work item. Apply returns the item
// after it and whether anything changed (and must be written), or the *Error that refuses
// it, leaving the item as it was. Transitions are values: the API makes one from a
// request (Ack(worker, now)), a store applies it to the row as it is in its transaction,
// and tests apply it to any item, so the rule exists once.
type Transition struct {
	// Name says what the transition is, for logs and errors: "ack", "heartbeat", …
	Name  string
	apply func(Item) (Item, bool, error)
	// leases: every change t makes starts or ends the item's lease (ChangesLease).
	leases bool
}

// Apply applies t to it.
func (t Transition) Apply(it Item) (next Item, changed bool, err error) { return t.apply(it) }

// Leases reports whether every change t makes starts or ends the item's lease
// (ChangesLease), whatever the item: a store need not read the item first to know how
// to write it.
func (t Transition) Leases() bool { return t.leases }

// A Claim is a poll's request for the oldest deliverable item: who polls (WorkerID,
// possibly empty), with which reclaim window, and when.
type Claim struct {
	WorkerID string
	Reclaim  time.Duration
	At       time.Time
}

// Deliverable reports whether the claim may deliver it (see the function Deliverable).
func (c Claim) Deliverable(it Item) bool { return Deliverable(it, c.At, c.Reclaim) }

// Deliver is the delivery of an item to the claim: it records when and to whom, and the
// item stays queued. An item the claim may not deliver is left unchanged.
func Deliver(c Claim) Transition {
	return Transition{Name: "deliver", apply: func(it Item) (Item, bool, error) {
		if !c.Deliverable(it) {
			return it, false, nil
		}
		it.DeliveredAt = Timestamp(c.At)
		it.DeliveredTo = c.WorkerID
		it.Deliveries++
		return it, true, nil
	}}
}

// UpdateMetadata merges p into the item's metadata (API.md §4.5), up to a work item's own
// limit (MergeWork); an empty patch changes nothing.
func UpdateMetadata(p Patch) Transition {
	return Transition{Name: "update", apply: func(it Item) (Item, bool, error) {
		if len(p) == 0 {
			return it, false, nil
		}
		m, err := MergeWork(it.Metadata, p, "metadata")
		if err != nil {
			return it, false, err
		}
		it.Metadata = m
		return it, true, nil
	}}
}

// Deliverable reports whether a poll at now with the given reclaim window may deliver it:
// the item is queued and was never delivered, or was last delivered at least reclaim ago.
func Deliverable(it Item, now time.Time, reclaim time.Duration) bool {
	if it.State != Queued {
		return false
	}
	return it.DeliveredAt.IsZero() || !now.Before(it.DeliveredAt.Add(reclaim))
}

// Redelivery reports whether delivering it now reclaims an earlier, unacknowledged
// delivery.
func Redelivery(it Item) bool { return it.Deliveries > 0 }

// Ack applies an acknowledgement by workerID ("" when the request carried no Worker-ID).
//
//   - queued → starting, acknowledged_at = now, and the lease starts with DefaultTTL so
//     that a worker that dies before its first heartbeat is recovered. If the item was
//     delivered to a Worker-ID and the ack names a different one → Conflict.
//   - starting, active: unchanged, unless the ack names a Worker-ID other than the one
//     that acknowledged it → Conflict.
//   - stopping, stopped → Conflict.
func Ack(workerID string, now time.Time) Transition {
	return Transition{Name: "ack", leases: true, apply: func(it Item) (Item, bool, error) { return ack(it, workerID, now) }}
}

func ack(it Item, workerID string, now time.Time) (Item, bool, error) {
	switch it.State {
	case Queued:
		if workerID != "" && it.DeliveredTo != "" && workerID != it.DeliveredTo {
			return it, false, conflict("Work item %s was delivered to another worker.", it.ID)
		}
		now = Timestamp(now)
		it.State = Starting
		it.AcknowledgedAt = now
		it.AckedBy = workerID
		if it.AckedBy == "" {
			it.AckedBy = it.DeliveredTo
		}
		it.TTLSeconds = DefaultTTL
		it.LeaseExpiresAt = now.Add(DefaultTTL * time.Second)
		return it, true, nil
	case Starting, Active:
		if workerID != "" && it.AckedBy != "" && workerID != it.AckedBy {
			return it, false, conflict("Work item %s was acknowledged by another worker.", it.ID)
		}
		return it, false, nil
	default:
		return it, false, conflict("Work item %s is %s and cannot be acknowledged.", it.ID, it.State)
	}
}

// Heartbeat applies a heartbeat that expects exp and asks for a lease of ttl seconds
// (already validated and clamped by ParseTTL).
//
//   - queued, stopped → Conflict. The state is checked before the expectation, so that a
//     worker whose lease expired learns that the item is stopped.
//   - a mismatching expectation → Precondition, carrying the current item.
//   - starting → active; active and stopping stay as they are. The first success sets
//     started_at.
//
// Every success sets latest_heartbeat_at to a value strictly greater than the previous
// one (now, or the previous value plus one microsecond when the clock has not moved on),
// so that each heartbeat's last_heartbeat is a unique fencing token: of two heartbeats
// with the same expectation exactly one can match.
func Heartbeat(exp Expectation, ttl int, now time.Time) Transition {
	return Transition{Name: "heartbeat", apply: func(it Item) (Item, bool, error) {
		next, err := heartbeat(it, exp, ttl, now)
		return next, err == nil, err
	}}
}

// HeartbeatOrReport is Heartbeat as the Anthropic dialect applies it (API.md §8): on a
// stopping or stopped item it compares no expectation and changes nothing, so that the
// answer reports the item's state (and the worker, told that its lease was not extended,
// winds down) rather than refusing with 409 or extending the lease of an item whose stop
// was asked for. Every other state is Heartbeat's.
func HeartbeatOrReport(exp Expectation, ttl int, now time.Time) Transition {
	return Transition{Name: "heartbeat", apply: func(it Item) (Item, bool, error) {
		if it.State == Stopping || it.State == Stopped {
			return it, false, nil
		}
		next, err := heartbeat(it, exp, ttl, now)
		return next, err == nil, err
	}}
}

func heartbeat(it Item, exp Expectation, ttl int, now time.Time) (Item, error) {
	switch it.State {
	case Queued:
		return it, conflict("Work item %s has not been acknowledged.", it.ID)
	case Stopped:
		return it, conflict("Work item %s is stopped.", it.ID)
	}
	if !exp.Matches(it.LatestHeartbeatAt) {
		cur := it.Clone()
		return it, &Error{
			Kind:    Precondition,
			Param:   "expected_last_heartbeat",
			Message: "expected_last_heartbeat does not match the work item's latest heartbeat.",
			Current: &cur,
		}
	}
	beat := Timestamp(now)
	if !it.LatestHeartbeatAt.IsZero() && !beat.After(it.LatestHeartbeatAt) {
		beat = it.LatestHeartbeatAt.Add(time.Microsecond)
	}
	if it.State == Starting {
		it.State = Active
	}
	if it.StartedAt.IsZero() {
		it.StartedAt = beat // the first successful heartbeat, even on a stopping item
	}
	it.LatestHeartbeatAt = beat
	it.TTLSeconds = ttl
	it.LeaseExpiresAt = beat.Add(time.Duration(ttl) * time.Second)
	return it, nil
}

// Stop applies a stop request (graceful unless force), following API.md §4's table:
//
//	            queued   starting  active    stopping  stopped
//	graceful    stopped  stopping  stopping  stopped   unchanged
//	force       stopped  stopped   stopped   stopped   unchanged
//
// A graceful request from starting or active sets stop_requested_at; reaching stopped sets
// stopped_at and ends the lease.
func Stop(force bool, now time.Time) Transition {
	return Transition{Name: "stop", apply: func(it Item) (Item, bool, error) {
		next, changed := stop(it, force, now)
		return next, changed, nil
	}}
}

func stop(it Item, force bool, now time.Time) (Item, bool) {
	now = Timestamp(now)
	switch {
	case it.State == Stopped:
		return it, false
	case !force && (it.State == Starting || it.State == Active):
		it.State = Stopping
		it.StopRequestedAt = now
		return it, true
	default:
		it.State = Stopped
		it.StoppedAt = now
		it.LeaseExpiresAt = time.Time{}
		return it, true
	}
}

// LeaseExpired reports whether it holds a lease that has passed its expiry at now.
func LeaseExpired(it Item, now time.Time) bool {
	return it.State.Leased() && !it.LeaseExpiresAt.IsZero() && now.After(it.LeaseExpiresAt)
}

// ExpireLease stops an item whose lease has expired at now (API.md §4.9); an item whose
// lease has not expired is left unchanged.
func ExpireLease(now time.Time) Transition {
	return Transition{Name: "expire", apply: func(it Item) (Item, bool, error) {
		if !LeaseExpired(it, now) {
			return it, false, nil
		}
		it.State = Stopped
		it.StoppedAt = Timestamp(now)
		it.LeaseExpiresAt = time.Time{}
		return it, true, nil
	}}
}

// RequeuesAfterExpiry reports whether an item whose lease expires as it is (before
// ExpireLease) was starting or active, that is, no stop had been asked for, so that its
// session should get a fresh item if RequeueAllowed agrees.
func RequeuesAfterExpiry(it Item) bool { return it.State == Starting || it.State == Active }

// SessionState is what the requeue and wake-up rules need to know of a session.
type SessionState struct {
	Exists   bool
	Archived bool
	// HasLiveItem reports whether the session has a live work item (other than the one
	// that is being stopped).
	HasLiveItem bool
}

// RequeueAllowed reports whether an expired item's session gets a fresh item: it still
// exists, is not archived, and has no other live item.
func RequeueAllowed(s SessionState) bool {
	return s.Exists && !s.Archived && !s.HasLiveItem
}

// The session status event types (API.md §3), written by berth alone.
const (
	StatusRunningEvent = "session.status_running"
	StatusIdleEvent    = "session.status_idle"
	DeletedEvent       = "session.deleted"
)

// ChangesLease reports whether a change of an item from before to after starts or ends
// its lease, the changes that can turn its session's status (API.md §3: running while one
// of its items is starting, active or stopping) from idle to running or back.
func ChangesLease(before, after Item) bool { return before.State.Leased() != after.State.Leased() }

// LeaseChangedAt is when the change that started or ended after's lease happened: its
// acknowledgement, or its stop.
func LeaseChangedAt(after Item) time.Time {
	if after.State.Leased() {
		return after.AcknowledgedAt
	}
	return after.StoppedAt
}

// WakeEvent is the event type that wakes a dormant session.
const WakeEvent = "user.message"

// Wakes reports whether appending an event of eventType to a session in an environment
// (selfHosted tells its type) queues a new work item: a user.message to a session with no
// live item in a self_hosted environment (dormant wake-up). API.md makes no exception for
// archived sessions here (unlike lease-expiry requeue): a message is an explicit request
// for work, and archiving leaves a session's work alone.
func Wakes(eventType string, selfHosted bool, s SessionState) bool {
	return eventType == WakeEvent && selfHosted && s.Exists && !s.HasLiveItem
}

// Cancel applies a session cancel (interrupt) to one of its live items: a graceful stop is
// requested. An item already stopping keeps its pending request: a cancel asks for a stop,
// it never confirms one (only the worker's own stop does that).
func Cancel(now time.Time) Transition {
	return Transition{Name: "cancel", apply: func(it Item) (Item, bool, error) {
		if it.State == Stopping {
			return it, false, nil
		}
		next, changed := stop(it, false, now)
		return next, changed, nil
	}}
}

// Func makes a transition of fn, for callers that compose one of their own (tests that
// record what a store hands them, for one).
func Func(name string, fn func(Item) (Item, bool, error)) Transition {
	return Transition{Name: name, apply: fn}
}
