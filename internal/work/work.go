// Package work holds berth's rules for work items as pure functions: states, the
// transition table of API.md §4 (ack, heartbeat, stop), deliverability, lease expiry,
// metadata merge and the validation of the work endpoints' parameters.
//
// Nothing here does I/O or reads the clock. A transition is a value (a Transition, made
// from a request and the time: Ack(worker, now), Heartbeat(exp, ttl, now), Stop, Cancel,
// Deliver, ExpireLease, UpdateMetadata) that applies to an item; the stores apply it to the
// row as it is inside one transaction so that it is atomic, and every store obeys the same
// rules because there is only this one copy.
package work

import (
	"time"
)

// State is a work item's lifecycle state. States never move backwards.
type State string

// The states, in lifecycle order.
const (
	Queued   State = "queued"   // pollable, or delivered but not yet acknowledged
	Starting State = "starting" // acknowledged by a worker
	Active   State = "active"   // the worker has sent its first heartbeat
	Stopping State = "stopping" // a graceful stop was requested; the worker drains
	Stopped  State = "stopped"  // terminal
)

// States lists every state in lifecycle order.
var States = []State{Queued, Starting, Active, Stopping, Stopped}

// Valid reports whether s is one of the five states.
func (s State) Valid() bool {
	switch s {
	case Queued, Starting, Active, Stopping, Stopped:
		return true
	}
	return false
}

// Live reports whether an item in this state is live: anything but stopped.
func (s State) Live() bool { return s != Stopped && s != "" }

// Leased reports whether an item in this state holds a lease that can expire:
// acknowledged and not yet stopped.
func (s State) Leased() bool { return s == Starting || s == Active || s == Stopping }

// Lease and delivery defaults.
const (
	// DefaultTTL is the lease an ack starts and a heartbeat without desired_ttl_seconds
	// extends (API.md §4.6, §4.7).
	DefaultTTL = 60
	// MinTTL and MaxTTL clamp desired_ttl_seconds: below ten seconds a lease would lapse
	// on one slow round trip; above ten minutes a crashed worker's session waits too long.
	MinTTL = 10
	MaxTTL = 600
	// DefaultReclaim is how long a delivered but unacknowledged item stays with the worker
	// it was delivered to before a poll may deliver it again (reclaim_older_than_ms).
	DefaultReclaim = 5000 * time.Millisecond
	// PollerWindow is how far back stats look for distinct polling Worker-IDs.
	PollerWindow = 30 * time.Second
)

// Item is one work item: the public fields of API.md §4 plus the bookkeeping the rules
// need. A zero time.Time stands for a null timestamp.
type Item struct {
	ID            string
	EnvironmentID string
	SessionID     string // data.id; data.type is always "session"
	State         State
	Metadata      Metadata

	CreatedAt         time.Time
	AcknowledgedAt    time.Time
	StartedAt         time.Time
	LatestHeartbeatAt time.Time
	StopRequestedAt   time.Time
	StoppedAt         time.Time

	// DeliveredAt and DeliveredTo record the latest delivery by poll (DeliveredTo is the
	// poller's Worker-ID, possibly empty). Deliveries counts them.
	DeliveredAt time.Time
	DeliveredTo string
	Deliveries  int
	// AckedBy is the Worker-ID that acknowledged the item ("" when unknown).
	AckedBy string
	// LeaseExpiresAt is when a leased item is stopped by lease expiry unless a heartbeat
	// extends it; TTLSeconds is the lease length last granted.
	LeaseExpiresAt time.Time
	TTLSeconds     int

	// Version counts the writes of the item's row; a store that writes an item it read
	// earlier checks that it is still at the version read (compare-and-set).
	Version int64
}

// Clone returns a copy of it that shares no memory with it.
func (it Item) Clone() Item {
	it.Metadata = it.Metadata.Clone()
	return it
}

// Timestamp rounds t to what berth stores and shows: UTC, microsecond precision.
func Timestamp(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// TimeLayout is how every timestamp is written: RFC 3339 in UTC with Z, microsecond
// precision, trailing zeros dropped.
const TimeLayout = "2006-01-02T15:04:05.999999Z07:00"

// New returns a fresh queued item for a session, its metadata a copy of the session's.
func New(workID, environmentID, sessionID string, metadata Metadata, now time.Time) Item {
	return Item{
		ID:            workID,
		EnvironmentID: environmentID,
		SessionID:     sessionID,
		State:         Queued,
		Metadata:      metadata.Clone(),
		CreatedAt:     Timestamp(now),
	}
}
