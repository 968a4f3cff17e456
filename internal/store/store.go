// Package store states the storage contract that every berth store (the embedded SQLite
// store, PostgreSQL) implements, and the records it stores. One conformance suite,
// internal/store/storetest, checks every implementation against this contract.
//
// The contract, for every method:
//   - Safe for concurrent use by any number of goroutines (and, for a shared database,
//     by any number of server replicas).
//   - Atomic: a method that writes either commits all of its effect or none of it.
//   - Durable: once a write method returns nil, its effect survives a crash of the process
//     or of the machine.
//   - Rule-faithful: every change to a work item is made by a function of internal/work,
//     applied to the row as it is inside the method's transaction; no method overwrites a
//     row that changed after it was read.
//   - Missing rows are reported as ErrNotFound (wrapped), rule violations as the
//     *work.Error the rule returned, unchanged.
//
// Times are passed in (now); stores never read the clock, so tests drive time.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// Sentinel errors. Stores wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound: the row does not exist (or, for work, belongs to another environment).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write conflicts with other rows (an environment still referenced by
	// sessions; an Idempotency-Key already in use).
	ErrConflict = errors.New("conflict")
)

// Environment is an environment record (API.md §2). Config is the normalised config JSON
// object as served.
type Environment struct {
	ID          string
	Name        string
	Description string
	ConfigType  string // "cloud" or "self_hosted"
	Config      json.RawMessage
	Metadata    work.Metadata
	ArchivedAt  time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// SelfHosted reports whether work endpoints are open in this environment.
func (e Environment) SelfHosted() bool { return e.ConfigType == "self_hosted" }

// Session is a session record (API.md §3). Agent is the agent JSON object as served.
// Running is derived by the store when it reads: true while one of the session's work
// items is starting, active or stopping.
type Session struct {
	ID            string
	EnvironmentID string
	Agent         json.RawMessage
	Title         string
	Metadata      work.Metadata
	ArchivedAt    time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Running       bool
}

// Event is a session event. Body is the event's JSON object as served (id, type, the
// client's fields, created_at).
type Event struct {
	ID        string
	SessionID string
	Type      string
	Body      json.RawMessage
	CreatedAt time.Time
}

// Token is an API token record. Only the hash of its secret is stored.
type Token struct {
	ID            string
	Name          string
	Role          string // admin, member or worker
	EnvironmentID string // set for worker tokens
	Hash          string
	CreatedAt     time.Time
	LastUsedAt    time.Time
	RevokedAt     time.Time
}

// Page selects one page of a list in ascending ID order. At most one of AfterID and
// BeforeID is set. Limit is at least 1.
type Page struct {
	Limit    int
	AfterID  string
	BeforeID string
}

// TrimPage finishes a keyset page that was read with Limit+1 rows (descending for a
// BeforeID page): it drops the extra row, which only tells whether there are more, and
// puts the rows in ascending order. Stores share it so that every list pages alike.
func TrimPage[T any](rows []T, p Page) (page []T, hasMore bool) {
	hasMore = len(rows) > p.Limit
	if hasMore {
		rows = rows[:p.Limit]
	}
	if p.BeforeID != "" {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	return rows, hasMore
}

// Stats are a work queue's statistics (API.md §4.3).
type Stats struct {
	Depth          int
	Pending        int
	OldestQueuedAt time.Time
	WorkersPolling int
}

// WorkCount is how many work items of one environment are in one state (CountWork).
type WorkCount struct {
	EnvironmentID string
	State         work.State
	Count         int
}

// Idempotency is a stored response to a request that carried an Idempotency-Key.
type Idempotency struct {
	TokenID     string
	Key         string
	Fingerprint string // hash of method, path and body
	Status      int    // 0 while the first request is still being answered
	Body        []byte
	CreatedAt   time.Time
}

// Change is a work item before and after a transition, and whether the transition changed
// it (and wrote it).
type Change struct {
	Before, After work.Item
	Changed       bool
}

// Expiry is one lease expiry done by ExpireLeases: the item as stopped and, when its
// session got a fresh item, that item.
type Expiry struct {
	Item    work.Item
	Requeue *work.Item
}

// Store is the storage contract. See the package comment for what holds for every method.
type Store interface {
	// Ping reports whether the storage is reachable.
	Ping(ctx context.Context) error
	// Close releases the store; in-flight calls finish first.
	Close() error

	CreateEnvironment(ctx context.Context, env Environment) error
	GetEnvironment(ctx context.Context, id string) (Environment, error)
	// ListEnvironments lists one page; archived ones only when includeArchived.
	// hasMore tells whether more rows lie in the direction of travel.
	ListEnvironments(ctx context.Context, p Page, includeArchived bool) (envs []Environment, hasMore bool, err error)
	// UpdateEnvironment reads the environment, applies fn to it and writes the result,
	// atomically, returning it. fn may change any field but ID and CreatedAt. An error
	// from fn is returned unchanged and nothing is written.
	UpdateEnvironment(ctx context.Context, id string, fn func(*Environment) error) (Environment, error)
	// DeleteEnvironment deletes an environment and its work items; ErrConflict while any
	// session references it.
	DeleteEnvironment(ctx context.Context, id string) error

	// CreateSession stores a session with its initial events and, when item is not nil,
	// its first work item. ErrNotFound if the environment does not exist.
	CreateSession(ctx context.Context, s Session, events []Event, item *work.Item) error
	// CreateSessionAndClaim is CreateSession with its first work item, followed in the
	// same transaction by ClaimWork(ctx, s.EnvironmentID, workerID, reclaim, now) for a
	// parked poller: both happen or neither. It returns what that claim delivered: the
	// oldest deliverable item of the environment, which is item unless an older one was
	// deliverable too. It lets a new item reach a waiting poller with one commit instead
	// of two.
	CreateSessionAndClaim(ctx context.Context, s Session, events []Event, item work.Item, workerID string, reclaim time.Duration, now time.Time) (delivered work.Item, ok bool, err error)
	GetSession(ctx context.Context, id string) (Session, error)
	// ListSessions lists one page; environmentID filters when not empty.
	ListSessions(ctx context.Context, p Page, environmentID string, includeArchived bool) (sessions []Session, hasMore bool, err error)
	// UpdateSession reads the session, applies fn and writes the result, atomically,
	// returning it. fn may change Agent, Title, Metadata, ArchivedAt and UpdatedAt; the
	// other fields are the store's (Running is derived).
	UpdateSession(ctx context.Context, id string, fn func(*Session) error) (Session, error)
	// UpdateSessionWork applies fn to every live work item of the session, writing those
	// for which fn reports a change, atomically, and returns the live items as fn left them
	// (empty when the session had none).
	UpdateSessionWork(ctx context.Context, id string, fn func(work.Item) (work.Item, bool)) ([]work.Item, error)
	// DeleteSession force-stops the session's live work items (they stay readable) and
	// deletes the session and its events, atomically. It returns the items it stopped.
	DeleteSession(ctx context.Context, id string, now time.Time) ([]work.Item, error)
	// AppendEvents stores events in order. When the first event for which work.Wakes holds
	// arrives, it queues newItem (its ID, environment, session and metadata already set;
	// nil: never) and returns it. ErrNotFound if the session does not exist.
	AppendEvents(ctx context.Context, sessionID string, events []Event, newItem func(Session) work.Item) (queued *work.Item, err error)
	ListEvents(ctx context.Context, sessionID string, p Page) (events []Event, hasMore bool, err error)

	// ClaimWork delivers the oldest item of the environment that c may deliver
	// (c.Deliverable), recording the delivery (work.Deliver(c)), atomically: two concurrent
	// claims never get the same item. ok is false when nothing is deliverable.
	ClaimWork(ctx context.Context, environmentID string, c work.Claim) (item work.Item, ok bool, err error)
	// NextReclaim returns when the earliest delivered, unacknowledged item of the
	// environment becomes deliverable again with the given reclaim window; ok is false when
	// there is none.
	NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (at time.Time, ok bool, err error)
	GetWork(ctx context.Context, environmentID, id string) (work.Item, error)
	// ListWork lists one page of the environment's items; states filters when not empty.
	ListWork(ctx context.Context, environmentID string, p Page, states []work.State) (items []work.Item, hasMore bool, err error)
	// UpdateWork applies t to the item as it is and, when t reports a change, writes the
	// result, atomically; it returns the item before and after. An error of t is returned
	// unchanged and nothing is written.
	UpdateWork(ctx context.Context, environmentID, id string, t work.Transition) (Change, error)
	// WorkStats computes the queue statistics at now (API.md §4.3).
	WorkStats(ctx context.Context, environmentID string, now time.Time) (Stats, error)
	// CountWork counts every work item in the store by environment and state: one
	// WorkCount per (environment, state) pair that has at least one item, so Count is
	// always at least 1, in no particular order; nothing (an empty slice) when the store
	// holds no items. Every item counts: stopped ones (they are kept), those of archived
	// environments and those of deleted sessions. The counts are one consistent snapshot:
	// an item that changes state during the call is counted once, in one of its states,
	// and the total is the number of items at one instant. It only reads, but it may scan
	// every item, so it is for periodic use (the berth_work_items gauge, which caches
	// it), not for use per request.
	CountWork(ctx context.Context) ([]WorkCount, error)
	// RecordPoll notes that workerID polled the environment at now, for workers_polling.
	// It is the one write that need not be durable: it feeds a 30-second statistic, and a
	// store may keep it in memory when one process is its only user.
	RecordPoll(ctx context.Context, environmentID, workerID string, now time.Time) error
	// ExpireLeases stops every item whose lease expired before now (work.ExpireLease) and
	// queues a fresh item for its session where work.RequeueAllowed, each item in its own
	// transaction, re-checking the row so that an item is never expired twice.
	ExpireLeases(ctx context.Context, now time.Time, newID func() string) ([]Expiry, error)
	// NextLeaseExpiry returns the earliest lease expiry of any leased item.
	NextLeaseExpiry(ctx context.Context) (at time.Time, ok bool, err error)

	CreateToken(ctx context.Context, t Token) error
	// CreateFirstToken stores t only if the store holds no token at all, and reports
	// whether it did. Of concurrent callers (on any replica) at most one stores its token.
	CreateFirstToken(ctx context.Context, t Token) (created bool, err error)
	// TokenByHash returns the token whose secret hashes to hash (revoked ones too).
	TokenByHash(ctx context.Context, hash string) (Token, error)
	ListTokens(ctx context.Context, p Page) (tokens []Token, hasMore bool, err error)
	// RevokeToken sets revoked_at if it is not set yet and returns the token.
	RevokeToken(ctx context.Context, id string, now time.Time) (Token, error)
	// TouchToken sets last_used_at to now.
	TouchToken(ctx context.Context, id string, now time.Time) error
	// CountTokens counts the tokens, revoked ones included.
	CountTokens(ctx context.Context) (int, error)

	// ReserveIdempotencyKey records that a request with this token, key and fingerprint
	// is being answered. If a record exists it is returned with existed = true and nothing
	// is written.
	ReserveIdempotencyKey(ctx context.Context, rec Idempotency) (existing Idempotency, existed bool, err error)
	// CompleteIdempotencyKey stores the response of a reserved request.
	CompleteIdempotencyKey(ctx context.Context, tokenID, key string, status int, body []byte) error
	// ReleaseIdempotencyKey forgets a reservation whose request failed unexpectedly, so
	// that a retry runs it again.
	ReleaseIdempotencyKey(ctx context.Context, tokenID, key string) error
	// PruneIdempotencyKeys deletes records created before cutoff.
	PruneIdempotencyKeys(ctx context.Context, cutoff time.Time) error
}

// Notifier is implemented by stores that several server replicas share. ListenWork calls
// fn with an environment's ID whenever another replica queues a deliverable item there
// (a new session, a dormant wake-up, a requeue after lease expiry), so that this
// replica's parked pollers wake too, until ctx ends. Notices are not durable: those sent
// while the listener is not listening (before it starts, while it reconnects) are lost,
// so it calls resync each time it has begun listening, after which the caller must look
// for work it may have missed. A store with one replica (SQLite) does not implement it:
// the server wakes its own pollers.
type Notifier interface {
	ListenWork(ctx context.Context, fn func(environmentID string), resync func()) error
}
