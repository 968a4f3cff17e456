package store

import (
	"context"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// The seam.
//
// A Driver is one database's side of the storage contract: row-level reads and writes
// (get, get for update, put, insert, claim next, live items of a session, insert events,
// notify) and the transactions that hold them. The operations of Store (create a session
// and queue its item, append events and wake a dormant session, expire leases, delete a
// session, …) are written once, in this package (New), above any Driver, from those rows
// and from internal/work's rules. The SQLite driver runs its writes on one writer
// connection (group commit); the PostgreSQL driver runs them on a pool. One conformance
// suite (storetest) checks the seam per driver and the composed operations once.
//
// For every Driver:
//   - Every method is safe for concurrent use, by any number of goroutines and, for a
//     shared database, by any number of server replicas.
//   - Reads outside a transaction see every write committed before they began.
//   - Missing rows are reported as ErrNotFound (wrapped).
//   - Times are stored to the microsecond, in UTC.
type Driver interface {
	Reads

	// Write runs fn in one transaction and returns once its effect is committed and
	// durable, or rolled back: fn's error rolls every write of fn back and is returned
	// unchanged. fn must not make IDs with Tx.NewID (Insert is for that); it may make
	// events' (Tx.NewEventID). A driver may run fn
	// again when the database aborted its transaction to resolve a conflict, so fn has no
	// effect outside tx.
	Write(ctx context.Context, fn func(Tx) error) error
	// Insert is Write for transactions that make the IDs of new rows (Tx.NewID): IDs are
	// made in commit order. Every row that a list shows gets its ID so, which is what lets
	// readers page with after_id and never miss a row: a row never appears below an ID
	// that a reader already holds. On SQLite the single writer commits in the order it
	// runs; on PostgreSQL the transactions that make IDs take turns on one sequence row,
	// and each replica runs those waiting together in one transaction (group commit).
	Insert(ctx context.Context, fn func(Tx) error) error

	// PutWorkIf writes it if the stored item still has version (work.Item.Version), and
	// reports whether it did: a compare-and-set of one row, atomic and durable by itself.
	// The written row's version is version+1. ErrNotFound if there is no such item.
	PutWorkIf(ctx context.Context, it work.Item, version int64) (bool, error)

	// RecordPoll notes that workerID polled the environment at now, for workers_polling.
	// It is the one write that need not be durable: it feeds a 30-second statistic.
	RecordPoll(ctx context.Context, environmentID, workerID string, now time.Time) error
	// WorkersPolling counts the distinct Worker-IDs that polled the environment at or
	// after since (on every replica).
	WorkersPolling(ctx context.Context, environmentID string, since time.Time) (int, error)
	// PrunePollers forgets the polls made before cutoff, and the pollers of environments
	// that no longer exist, so that the pollers a server remembers stay bounded.
	PrunePollers(ctx context.Context, cutoff time.Time) error

	Ping(ctx context.Context) error
	Close() error
}

// Reads are the row-level reads of the seam, outside a transaction (Driver) or inside
// one (Tx, where they also see the transaction's own writes).
type Reads interface {
	Environment(ctx context.Context, id string) (Environment, error)
	Environments(ctx context.Context, p Page, includeArchived bool) ([]Environment, bool, error)
	// CountSessions counts the sessions of an environment.
	CountSessions(ctx context.Context, environmentID string) (int, error)

	Session(ctx context.Context, id string) (Session, error)
	Sessions(ctx context.Context, p Page, environmentID string, includeArchived bool) ([]Session, bool, error)
	Events(ctx context.Context, sessionID string, p Page) ([]Event, bool, error)
	// Event returns one event of the session; ErrNotFound if the session has none with
	// that ID.
	Event(ctx context.Context, sessionID, id string) (Event, error)

	Work(ctx context.Context, environmentID, id string) (work.Item, error)
	WorkList(ctx context.Context, environmentID string, p Page, states []work.State) ([]work.Item, bool, error)
	// HasDeliverable reports whether the environment has an item that c may deliver
	// (work.Deliverable).
	HasDeliverable(ctx context.Context, environmentID string, c work.Claim) (bool, error)
	// HasLiveWork reports whether the session has a live item (work.State.Live) other
	// than except.
	HasLiveWork(ctx context.Context, sessionID, except string) (bool, error)
	// Queue counts the environment's queued items that are deliverable at now with the
	// default reclaim window (depth) and those delivered within it (pending), and finds
	// the oldest created_at of a queued item (zero: none).
	Queue(ctx context.Context, environmentID string, now time.Time) (depth, pending int, oldest time.Time, err error)
	// NextReclaim returns when the earliest delivered, unacknowledged item of the
	// environment becomes deliverable again with the given reclaim window.
	NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (time.Time, bool, error)
	// ExpiredLeases returns up to limit items whose lease ended at or before now (to the
	// microsecond), in the order of their lease's end and then of their ID, after the
	// given one (the zero LeaseEnd: from the first). It reads the leases that have
	// ended and nothing else, so that the expiry, which asks five times a second, costs
	// what those are and not what the history holds (an ID-ordered scan, filtered,
	// read every item ever made on SQLite).
	ExpiredLeases(ctx context.Context, now time.Time, after LeaseEnd, limit int) ([]LeaseEnd, error)
	// NextLeaseExpiry returns the earliest lease expiry of any leased item.
	NextLeaseExpiry(ctx context.Context) (time.Time, bool, error)
	// CountWork: see Store.CountWork.
	CountWork(ctx context.Context) ([]WorkCount, error)

	// TokenByHash returns the token whose secret hashes to hash (revoked ones too).
	TokenByHash(ctx context.Context, hash string) (Token, error)
	Token(ctx context.Context, id string) (Token, error)
	Tokens(ctx context.Context, p Page) ([]Token, bool, error)
	CountTokens(ctx context.Context) (int, error)

	Idempotency(ctx context.Context, tokenID, key string) (Idempotency, error)

	// Webhook returns a webhook of the environment (ErrNotFound for another's).
	Webhook(ctx context.Context, environmentID, id string) (Webhook, error)
	Webhooks(ctx context.Context, environmentID string, p Page) ([]Webhook, bool, error)
	// WebhookIDs returns the IDs of every webhook of the environment, in ID order.
	WebhookIDs(ctx context.Context, environmentID string) ([]string, error)
	Deliveries(ctx context.Context, webhookID string, p Page) ([]Delivery, bool, error)
	// NextDelivery returns the earliest NextAttemptAt of a pending delivery.
	NextDelivery(ctx context.Context) (time.Time, bool, error)
	// CountPendingDeliveries counts the pending deliveries (Delivery.Pending).
	CountPendingDeliveries(ctx context.Context) (int, error)
}

// WorkKey names a work item.
type WorkKey struct {
	EnvironmentID, ID string
}

// LeaseEnd is an item whose lease has ended (Reads.ExpiredLeases), and when it ended.
type LeaseEnd struct {
	WorkKey
	At time.Time
}

// LeaseRows is what Tx.LockLease reads: whether the item's session exists (it is
// locked; SessionFound is false when the session was deleted: its items stay); the item,
// locked; and whether another item of the session holds a lease, which with the item's
// own state before and after the transition gives the session's status before and after
// it (API.md §3).
type LeaseRows struct {
	SessionFound bool
	Item         work.Item
	OtherLeased  bool
}

// Tx is one transaction of a Driver: its reads see its own writes, and its writes commit
// together or not at all.
//
// The lock methods read a row and keep any other transaction from changing it (or, for
// ClaimNext, from claiming the same item) until this one ends; a driver whose writes never
// overlap (SQLite's single writer) needs no locks for that. Transactions that lock several
// rows lock them in one order (an environment, then a session, then work items), so that
// two of them never wait for each other.
type Tx interface {
	Reads

	LockEnvironment(ctx context.Context, id string) (Environment, error)
	LockSession(ctx context.Context, id string) (Session, error)
	LockWork(ctx context.Context, environmentID, id string) (work.Item, error)
	// LockLease reads and locks what a transition that starts or ends a work item's lease
	// needs (see LeaseRows): the item's session, then the item (ErrNotFound if the
	// environment has no such item). A driver may send the reads together, in one round
	// trip.
	LockLease(ctx context.Context, environmentID, id string) (LeaseRows, error)
	// LockLiveWork returns the session's live items in ID order, locked.
	LockLiveWork(ctx context.Context, sessionID string) ([]work.Item, error)
	// ClaimNext returns the oldest item of the environment that c may deliver, locked, so
	// that no other claim gets it before this transaction ends; ok is false when there is
	// none. It never skips an older deliverable item that another transaction holds: it
	// waits for it.
	ClaimNext(ctx context.Context, environmentID string, c work.Claim) (it work.Item, ok bool, err error)

	// NewID makes the ID of a new row, in commit order. Only in Insert.
	NewID(prefix string) string
	// NewEventID makes the ID of a new event of the session, whose row this transaction
	// holds (LockSession, or InsertSession): above every event the session has, so that a
	// session's events get IDs in the order they commit, since every transaction that
	// writes a session's events holds its row. In Write as well as Insert: an event needs
	// no turn on the IDs of the other lists.
	NewEventID(ctx context.Context, sessionID string) (string, error)

	InsertEnvironment(ctx context.Context, e Environment) error
	PutEnvironment(ctx context.Context, e Environment) error
	// DeleteEnvironment deletes the environment, its work items, and its webhooks with
	// their deliveries.
	DeleteEnvironment(ctx context.Context, id string) error

	InsertSession(ctx context.Context, s Session) error
	PutSession(ctx context.Context, s Session) error
	// DeleteSession deletes the session and its events (its work items stay).
	DeleteSession(ctx context.Context, id string) error
	InsertEvents(ctx context.Context, events []Event) error

	InsertWork(ctx context.Context, it work.Item) error
	// PutWork writes it, whose row this transaction holds, and raises its version.
	PutWork(ctx context.Context, it work.Item) error

	InsertToken(ctx context.Context, t Token) error
	// InsertFirstToken inserts t only if there is no token at all, and reports whether
	// it did. Of concurrent callers (on any replica) at most one inserts.
	InsertFirstToken(ctx context.Context, t Token) (bool, error)
	// RevokeToken sets the token's revoked_at to at unless it is set, and returns the
	// token.
	RevokeToken(ctx context.Context, id string, at time.Time) (Token, error)
	// TouchToken sets the token's last_used_at to at; ErrNotFound if there is no token.
	// Unlike the other writes to tokens, it need not drop what the driver keeps in
	// memory: DB tells a TokenUser of it after the commit.
	TouchToken(ctx context.Context, id string, at time.Time) error

	// InsertIdempotency inserts rec unless a record with its token and key exists, and
	// reports whether it did.
	InsertIdempotency(ctx context.Context, rec Idempotency) (bool, error)
	// CompleteIdempotency stores the answer of a reserved record; ErrNotFound if there is
	// none.
	CompleteIdempotency(ctx context.Context, tokenID, key string, status int, body []byte) error
	// DeleteIdempotency deletes a record that has no answer yet.
	DeleteIdempotency(ctx context.Context, tokenID, key string) error
	// PruneIdempotency deletes the records created before cutoff.
	PruneIdempotency(ctx context.Context, cutoff time.Time) error

	InsertWebhook(ctx context.Context, w Webhook) error
	// DeleteWebhook deletes the webhook and its deliveries.
	DeleteWebhook(ctx context.Context, id string) error
	InsertDeliveries(ctx context.Context, ds []Delivery) error
	// LockDueDeliveries returns up to limit pending deliveries due at or before now, the
	// earliest first, with their webhooks' URL and secret, locked; rows that another
	// transaction holds are skipped (on PostgreSQL FOR UPDATE SKIP LOCKED), so that
	// concurrent claims, on any replica, never get the same delivery.
	LockDueDeliveries(ctx context.Context, now time.Time, limit int) ([]Claimed, error)
	LockDelivery(ctx context.Context, id string) (Delivery, error)
	// PutDelivery writes the mutable fields of d (attempts, last status and error, next
	// attempt, delivered at).
	PutDelivery(ctx context.Context, d Delivery) error

	// Notify tells the other replicas, once this transaction commits, that work became
	// deliverable in the environment (store.Notifier). A single-process driver does
	// nothing.
	Notify(environmentID string)
	// NotifyEvents tells the other replicas, once this transaction commits, that the
	// session has new events or was deleted (store.EventNotifier). A single-process
	// driver does nothing.
	NotifyEvents(sessionID string)
}

// TokenUser is implemented by drivers that keep tokens in memory (sqlrows.ReadCache):
// after a committed TouchToken, DB tells them the token's new last use, which they update
// where they keep it instead of dropping everything they keep.
type TokenUser interface {
	TokenUsed(id string, at time.Time)
}
