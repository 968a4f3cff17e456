package work

import (
	"time"
)

// Deliverable reports whether a poll at now with the given reclaim window may deliver it:
// the item is queued and was never delivered, or was last delivered at least reclaim ago.
func Deliverable(it Item, now time.Time, reclaim time.Duration) bool {
	if it.State != Queued {
		return false
	}
	return it.DeliveredAt.IsZero() || !now.Before(it.DeliveredAt.Add(reclaim))
}

// Deliver records a delivery by poll to workerID at now. The caller has checked
// Deliverable. The item stays queued.
func Deliver(it Item, workerID string, now time.Time) Item {
	it.DeliveredAt = Timestamp(now)
	it.DeliveredTo = workerID
	it.Deliveries++
	return it
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
//
// changed reports whether the item must be written.
func Ack(it Item, workerID string, now time.Time) (next Item, changed bool, err error) {
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
func Heartbeat(it Item, exp Expectation, ttl int, now time.Time) (Item, error) {
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
// stopped_at and ends the lease. changed reports whether the item must be written.
func Stop(it Item, force bool, now time.Time) (next Item, changed bool) {
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

// ExpireLease stops an item whose lease has expired (API.md §4.9). requeue reports whether
// the item was starting or active, that is, no stop had been asked for, so that its session
// should get a fresh item if RequeueAllowed agrees. ok is false when the lease has not
// expired, and the item is returned unchanged.
func ExpireLease(it Item, now time.Time) (next Item, requeue, ok bool) {
	if !LeaseExpired(it, now) {
		return it, false, false
	}
	requeue = it.State == Starting || it.State == Active
	it.State = Stopped
	it.StoppedAt = Timestamp(now)
	it.LeaseExpiresAt = time.Time{}
	return it, requeue, true
}

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
func Cancel(it Item, now time.Time) (Item, bool) {
	if it.State == Stopping {
		return it, false
	}
	return Stop(it, false, now)
}
