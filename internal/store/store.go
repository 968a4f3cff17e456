// Package store states the storage contract of berth (Store), the records it stores, and
// the seam under it (Driver, driver.go): the SQLite and PostgreSQL drivers implement the
// seam's row-level reads and writes, and the contract's operations are written once, above
// any driver (DB, compose.go), from those rows and from internal/work's rules. One
// conformance suite, internal/store/storetest, checks each driver's seam and the
// operations over it.
//
// The contract, for every method:
//   - Safe for concurrent use by any number of goroutines (and, for a shared database,
//     by any number of server replicas).
//   - Atomic: a method that writes either commits all of its effect or none of it, and
//     reports an effect (an expiry, a queued item) only once it is committed.
//   - Durable: once a write method returns nil, its effect survives a crash of the process
//     or of the machine.
//   - Rule-faithful: every change to a work item is made by a transition of internal/work,
//     applied to the row as it is; no method overwrites a row that changed after it was
//     read (a transition is a compare-and-set on the item's version, or runs on a row its
//     transaction holds). A transition may first be tried on the version of the item
//     that the process last read or wrote (recent.go), and is written from it only if
//     that is still the row's version.
//   - Ordered: the IDs of the rows that lists show (environments, sessions, events, work
//     items, tokens), when the store makes them (a record given with an empty ID), are
//     made in commit order, across processes and replicas: a row never appears below an
//     ID that a reader already holds, so a reader that follows a list with after_id, or
//     next_page, sees every row exactly once (API.md §1, §3). Records given with an ID
//     (tests, imports) keep it, and carry no such promise. How each driver does it:
//     store.Driver.Insert.
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
// client's fields, created_at). An event whose ID the store is to make has an empty ID
// and a Body that begins with "id":"" (`{"id":"","type":…`); the store puts the ID there.
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

// Webhook is a webhook record (API.md §9): a URL that the environment's queued work is
// announced to. Secret signs the deliveries, so it is kept as it is (unlike a token's).
type Webhook struct {
	ID            string
	EnvironmentID string
	URL           string
	Description   string
	Secret        string
	CreatedAt     time.Time
}

// Delivery is one webhook's announcement of one queued work item (API.md §9), in the
// outbox until it is delivered or given up. It is written in the transaction that queues
// the item (one per webhook of the environment), due at once.
type Delivery struct {
	ID            string
	WebhookID     string
	EnvironmentID string
	WorkID        string
	SessionID     string
	// Attempts counts the attempts begun (ClaimDeliveries), the one under way included.
	Attempts int
	// LastStatus is the HTTP status of the last finished attempt (0: none arrived or no
	// attempt yet); LastError says why it failed ("" for none).
	LastStatus int
	LastError  string
	// NextAttemptAt is when the delivery is due (zero once it is delivered or given up).
	// While an attempt is under way it is where that attempt's claim ends.
	NextAttemptAt time.Time
	DeliveredAt   time.Time
	CreatedAt     time.Time
}

// Pending reports whether the delivery is still to be made: neither delivered nor given
// up.
func (d Delivery) Pending() bool { return !d.NextAttemptAt.IsZero() }

// Claimed is a delivery claimed for one attempt (ClaimDeliveries), with what the attempt
// needs of its webhook. Its Attempts is the number of this attempt.
type Claimed struct {
	Delivery
	URL    string
	Secret string
}

// Attempt is the outcome of one attempt of a delivery, as RecordAttempt stores it.
type Attempt struct {
	DeliveryID string
	// Number is the attempt's number (Claimed.Attempts): an outcome is stored only while
	// it is still the delivery's latest attempt.
	Number int
	Status int    // the HTTP status; 0 when no answer arrived
	Error  string // why the attempt failed; "" when it delivered
	// DeliveredAt is set when the attempt delivered; NextAttemptAt when another attempt
	// is due. Both zero: the delivery is given up.
	DeliveredAt   time.Time
	NextAttemptAt time.Time
}

// Page selects one page of a list in ascending ID order, or descending with Desc. At most
// one of AfterID and BeforeID is set. Limit is at least 1. The cursors follow the list's
// order: with Desc, AfterID selects the rows below the cursor (the next page of a
// descending list) and BeforeID those above it.
type Page struct {
	Limit    int
	AfterID  string
	BeforeID string
	Desc     bool
}

// TrimPage finishes a keyset page that was read with Limit+1 rows (in the reverse of the
// list's order for a BeforeID page): it drops the extra row, which only tells whether
// there are more, and puts the rows in the list's order. Stores share it so that every list pages alike.
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
	// Deliveries counts the webhook deliveries queued with Requeue.
	Deliveries int
}

// Store is the storage contract. See the package comment for what holds for every
// method; DB (New) implements it once above any Driver, and its methods' comments state
// each one's contract.
type Store interface {
	Ping(ctx context.Context) error
	// Close releases the store; in-flight calls finish first.
	Close() error

	CreateEnvironment(ctx context.Context, env Environment) (Environment, error)
	GetEnvironment(ctx context.Context, id string) (Environment, error)
	ListEnvironments(ctx context.Context, p Page, includeArchived bool) (envs []Environment, hasMore bool, err error)
	UpdateEnvironment(ctx context.Context, id string, fn func(*Environment) error) (Environment, error)
	DeleteEnvironment(ctx context.Context, id string) error

	CreateSession(ctx context.Context, s Session, events []Event, item *work.Item, claim *work.Claim) (Created, error)
	GetSession(ctx context.Context, id string) (Session, error)
	ListSessions(ctx context.Context, p Page, environmentID string, includeArchived bool) (sessions []Session, hasMore bool, err error)
	UpdateSession(ctx context.Context, id string, fn func(*Session) error) (Session, error)
	UpdateSessionWork(ctx context.Context, id string, t work.Transition) ([]Change, error)
	DeleteSession(ctx context.Context, id string, now time.Time) ([]work.Item, error)
	AppendEvents(ctx context.Context, sessionID string, events []Event, now time.Time) (Appended, error)
	ListEvents(ctx context.Context, sessionID string, p Page) (events []Event, hasMore bool, err error)
	GetEvent(ctx context.Context, sessionID, id string) (Event, error)
	// OnEvents: see DB.OnEvents.
	OnEvents(fn func(sessionID string))

	ClaimWork(ctx context.Context, environmentID string, c work.Claim) (item work.Item, ok bool, err error)
	NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (at time.Time, ok bool, err error)
	GetWork(ctx context.Context, environmentID, id string) (work.Item, error)
	ListWork(ctx context.Context, environmentID string, p Page, states []work.State) (items []work.Item, hasMore bool, err error)
	UpdateWork(ctx context.Context, environmentID, id string, t work.Transition) (Change, error)
	WorkStats(ctx context.Context, environmentID string, now time.Time) (Stats, error)
	CountWork(ctx context.Context) ([]WorkCount, error)
	RecordPoll(ctx context.Context, environmentID, workerID string, now time.Time) error
	PrunePollers(ctx context.Context, now time.Time) error
	ExpireLeases(ctx context.Context, now time.Time) ([]Expiry, error)
	NextLeaseExpiry(ctx context.Context) (at time.Time, ok bool, err error)

	CreateToken(ctx context.Context, t Token) (Token, error)
	CreateFirstToken(ctx context.Context, t Token) (Token, bool, error)
	TokenByHash(ctx context.Context, hash string) (Token, error)
	ListTokens(ctx context.Context, p Page) (tokens []Token, hasMore bool, err error)
	RevokeToken(ctx context.Context, id string, now time.Time) (Token, error)
	TouchToken(ctx context.Context, id string, now time.Time) error
	CountTokens(ctx context.Context) (int, error)

	CreateWebhook(ctx context.Context, w Webhook) (Webhook, error)
	GetWebhook(ctx context.Context, environmentID, id string) (Webhook, error)
	ListWebhooks(ctx context.Context, environmentID string, p Page) (webhooks []Webhook, hasMore bool, err error)
	DeleteWebhook(ctx context.Context, environmentID, id string) error
	ListDeliveries(ctx context.Context, webhookID string, p Page) (deliveries []Delivery, hasMore bool, err error)
	ClaimDeliveries(ctx context.Context, now time.Time, hold time.Duration, limit int) ([]Claimed, error)
	RecordAttempt(ctx context.Context, a Attempt) (bool, error)
	NextDelivery(ctx context.Context) (at time.Time, ok bool, err error)
	CountPendingDeliveries(ctx context.Context) (int, error)

	ReserveIdempotencyKey(ctx context.Context, rec Idempotency) (existing Idempotency, existed bool, err error)
	CompleteIdempotencyKey(ctx context.Context, tokenID, key string, status int, body []byte) error
	ReleaseIdempotencyKey(ctx context.Context, tokenID, key string) error
	PruneIdempotencyKeys(ctx context.Context, cutoff time.Time) error
}

var _ Store = (*DB)(nil)

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

// EventNotifier is implemented by stores that several server replicas share.
// ListenEvents calls fn with a session's ID whenever another replica commits events of
// that session or deletes it, until ctx ends. Notices are not durable, as with
// ListenWork: resync is called each time the listener has begun listening, after which
// the caller must look again at every session it follows.
type EventNotifier interface {
	ListenEvents(ctx context.Context, fn func(sessionID string), resync func()) error
}

// CacheListener is implemented by stores that several server replicas share and whose
// replicas keep the tokens and environments they read in memory. ListenCache hears the
// other replicas' writes to them until ctx ends, and the store keeps what it reads only
// while it listens: a store whose ListenCache is not running (a command-line tool, a test)
// reads them from the database every time.
type CacheListener interface {
	ListenCache(ctx context.Context) error
}
