package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/work"
)

// DB is the storage contract's operations written once above a Driver. Create it with
// New.
type DB struct {
	d Driver

	mu       sync.Mutex
	onEvents []func(sessionID string)

	recent recentWork // recent.go
}

// New returns the operations of the contract over d.
func New(d Driver) *DB { return &DB{d: d} }

// OnEvents registers fn, which is then called, after every commit made through db that
// added events to a session or deleted it, with the session's ID: the streams of this
// process learn of new events so (those of other replicas through EventNotifier). fn
// must not block.
func (db *DB) OnEvents(fn func(sessionID string)) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.onEvents = append(db.onEvents, fn)
}

// committed calls the OnEvents functions for each session that a commit gave events.
func (db *DB) committed(sessionIDs ...string) {
	db.mu.Lock()
	fns := db.onEvents
	db.mu.Unlock()
	for _, sid := range sessionIDs {
		for _, fn := range fns {
			fn(sid)
		}
	}
}

// Driver returns the driver under db.
func (db *DB) Driver() Driver { return db.d }

// ErrArchived: the environment is archived and takes no new sessions.
var ErrArchived = errors.New("archived")

// maxCASRetries bounds how often a compare-and-set write is tried again after another
// write changed the row in between. Each failure means that another write succeeded, so
// the bound is only reached under a storm of writes to one item.
const maxCASRetries = 100

// Ping reports whether the storage is reachable.
func (db *DB) Ping(ctx context.Context) error { return db.d.Ping(ctx) }

// Close closes the driver.
func (db *DB) Close() error { return db.d.Close() }

// ---- Environments

// CreateEnvironment stores e, with an ID made in commit order when e.ID is empty, and
// returns it.
func (db *DB) CreateEnvironment(ctx context.Context, e Environment) (Environment, error) {
	err := db.d.Insert(ctx, func(tx Tx) error {
		if e.ID == "" {
			e.ID = tx.NewID(id.Environment)
		}
		return tx.InsertEnvironment(ctx, e)
	})
	return e, err
}

// GetEnvironment returns an environment.
func (db *DB) GetEnvironment(ctx context.Context, id string) (Environment, error) {
	return db.d.Environment(ctx, id)
}

// ListEnvironments lists one page; archived ones only when includeArchived.
func (db *DB) ListEnvironments(ctx context.Context, p Page, includeArchived bool) ([]Environment, bool, error) {
	return db.d.Environments(ctx, p, includeArchived)
}

// UpdateEnvironment reads the environment, applies fn and writes the result, atomically.
// fn may change any field but ID and CreatedAt; an error from fn is returned unchanged
// and nothing is written.
func (db *DB) UpdateEnvironment(ctx context.Context, id string, fn func(*Environment) error) (Environment, error) {
	var out Environment
	err := db.d.Write(ctx, func(tx Tx) error {
		e, err := tx.LockEnvironment(ctx, id)
		if err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		e.ID = id
		out = e
		return tx.PutEnvironment(ctx, e)
	})
	return out, err
}

// DeleteEnvironment deletes an environment, its work items and its webhooks (with their
// deliveries); ErrConflict while any session references it.
func (db *DB) DeleteEnvironment(ctx context.Context, id string) error {
	return db.d.Write(ctx, func(tx Tx) error {
		if _, err := tx.LockEnvironment(ctx, id); err != nil {
			return err
		}
		n, err := tx.CountSessions(ctx, id)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("environment %s is referenced by %d sessions: %w", id, n, ErrConflict)
		}
		return tx.DeleteEnvironment(ctx, id)
	})
}

// ---- Sessions and events

// Created is what CreateSession stored.
type Created struct {
	Session Session
	Events  []Event
	// Item is the session's first work item (in a self_hosted environment), as queued.
	Item *work.Item
	// Delivered is what the claim made in the same transaction delivered, if anything:
	// the oldest deliverable item of the environment, which is Item unless an older one
	// was deliverable too.
	Delivered *work.Item
	// Deliveries counts the webhook deliveries queued with Item (one per webhook of the
	// environment).
	Deliveries int
}

// CreateSession stores a session with its initial events and, when item is not nil, its
// first work item: stored as given (the API passes a fresh queued item, work.New), its
// session and environment those of the session when left empty. IDs left empty are made
// in commit order. The
// environment must exist (ErrNotFound) and not be archived (ErrArchived), checked in the
// same transaction, so that a session never lands in an environment archived before it.
//
// When claim is not nil, the claim is made in the same transaction too: both happen or
// neither. It lets a new item reach a waiting poll with one commit instead of two (see
// internal/wait).
func (db *DB) CreateSession(ctx context.Context, s Session, events []Event, item *work.Item, claim *work.Claim) (Created, error) {
	var out Created
	err := db.d.Insert(ctx, func(tx Tx) error {
		out = Created{}
		env, err := tx.LockEnvironment(ctx, s.EnvironmentID)
		if err != nil {
			return err
		}
		if !env.ArchivedAt.IsZero() {
			return fmt.Errorf("environment %s: %w", env.ID, ErrArchived)
		}
		sess := s
		if sess.ID == "" {
			sess.ID = tx.NewID(id.Session)
		}
		if err := tx.InsertSession(ctx, sess); err != nil {
			return err
		}
		evs, err := insertEvents(ctx, tx, sess.ID, events)
		if err != nil {
			return err
		}
		out.Session, out.Events = sess, evs
		if item == nil {
			return nil
		}
		it := *item
		if it.ID == "" {
			it.ID = tx.NewID(id.Work)
		}
		if it.EnvironmentID == "" {
			it.EnvironmentID = env.ID
		}
		if it.SessionID == "" {
			it.SessionID = sess.ID
		}
		if err := tx.InsertWork(ctx, it); err != nil {
			return err
		}
		out.Item = &it
		if it.State == work.Queued {
			if out.Deliveries, err = queueDeliveries(ctx, tx, it); err != nil {
				return err
			}
		}
		if claim != nil {
			d, ok, err := claimIn(ctx, tx, env.ID, *claim)
			if err != nil {
				return err
			}
			if ok {
				out.Delivered = &d
			}
		}
		if it.State == work.Queued && (out.Delivered == nil || out.Delivered.ID != it.ID) {
			tx.Notify(env.ID)
		}
		return nil
	})
	if err != nil {
		return Created{}, err
	}
	if len(out.Events) > 0 {
		db.committed(out.Session.ID)
	}
	return out, nil
}

// insertEvents stores events in order, making the ID of each one that has none, and
// tells the other replicas' streams.
func insertEvents(ctx context.Context, tx Tx, sessionID string, events []Event) ([]Event, error) {
	if len(events) > 0 {
		tx.NotifyEvents(sessionID)
	}
	out := make([]Event, len(events))
	for i, e := range events {
		e.SessionID = sessionID
		if e.ID == "" {
			eid, err := tx.NewEventID(ctx, sessionID)
			if err != nil {
				return nil, err
			}
			if e, err = e.withID(eid); err != nil {
				return nil, err
			}
		}
		out[i] = e
	}
	return out, tx.InsertEvents(ctx, out)
}

// withID gives a new event its ID: Body is the event's JSON object with "id":"" as its
// first member (see Event), and the ID goes there.
func (e Event) withID(eventID string) (Event, error) {
	const blank = `{"id":""`
	body, ok := strings.CutPrefix(string(e.Body), blank)
	if !ok {
		return e, fmt.Errorf("event of type %s: its body does not begin with %s", e.Type, blank)
	}
	e.ID = eventID
	e.Body = []byte(`{"id":"` + eventID + `"` + body)
	return e, nil
}

// statusEvent is the session status event (API.md §3) for a session whose status became
// running (or idle) at.
func statusEvent(running bool, at time.Time) Event {
	at = work.Timestamp(at)
	typ, extra := work.StatusIdleEvent, `,"stop_reason":{"type":"end_turn"}`
	if running {
		typ, extra = work.StatusRunningEvent, ""
	}
	body := `{"id":"","type":"` + typ + `"` + extra + `,"created_at":"` + at.Format(work.TimeLayout) + `"}`
	return Event{Type: typ, Body: []byte(body), CreatedAt: at}
}

// writeStatus writes the session's status event if a change of its items, made in tx at
// the given time, changed its status from wasRunning; it reports whether it wrote one. A
// session that no longer exists has no status.
func writeStatus(ctx context.Context, tx Tx, sessionID string, wasRunning bool, at time.Time) (bool, error) {
	s, err := tx.Session(ctx, sessionID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil || s.Running == wasRunning {
		return false, err
	}
	_, err = insertEvents(ctx, tx, sessionID, []Event{statusEvent(s.Running, at)})
	return err == nil, err
}

// GetSession returns a session.
func (db *DB) GetSession(ctx context.Context, id string) (Session, error) {
	return db.d.Session(ctx, id)
}

// ListSessions lists one page; environmentID filters when not empty.
func (db *DB) ListSessions(ctx context.Context, p Page, environmentID string, includeArchived bool) ([]Session, bool, error) {
	return db.d.Sessions(ctx, p, environmentID, includeArchived)
}

// UpdateSession reads the session, applies fn and writes the result, atomically. fn may
// change Agent, Title, Metadata, ArchivedAt and UpdatedAt.
func (db *DB) UpdateSession(ctx context.Context, id string, fn func(*Session) error) (Session, error) {
	var out Session
	err := db.d.Write(ctx, func(tx Tx) error {
		s, err := tx.LockSession(ctx, id)
		if err != nil {
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		s.ID = id
		out = s
		return tx.PutSession(ctx, s)
	})
	return out, err
}

// UpdateSessionWork applies t to every live item of the session, writing those it
// changes, atomically, and returns the change of each live item (none when the session
// had none).
//
// A change that ends a lease and so turns the session idle writes its status event in
// the same transaction.
func (db *DB) UpdateSessionWork(ctx context.Context, id string, t work.Transition) ([]Change, error) {
	var out []Change
	var status bool
	err := db.d.Write(ctx, func(tx Tx) error {
		sess, err := tx.LockSession(ctx, id)
		if err != nil {
			return err
		}
		if out, err = applyToLive(ctx, tx, id, t); err != nil {
			return err
		}
		for _, c := range out {
			if c.Changed && work.ChangesLease(c.Before, c.After) {
				status, err = writeStatus(ctx, tx, id, sess.Running, work.LeaseChangedAt(c.After))
				return err
			}
		}
		status = false
		return nil
	})
	if err == nil && status {
		db.committed(id)
	}
	return out, err
}

// applyToLive applies t to a session's live items and writes those it changes.
func applyToLive(ctx context.Context, tx Tx, sessionID string, t work.Transition) ([]Change, error) {
	items, err := tx.LockLiveWork(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	out := make([]Change, 0, len(items))
	for _, it := range items {
		next, changed, err := t.Apply(it)
		if err != nil {
			return nil, err
		}
		if changed {
			if err := tx.PutWork(ctx, next); err != nil {
				return nil, err
			}
			next.Version++
		}
		out = append(out, Change{Before: it, After: next, Changed: changed})
	}
	return out, nil
}

// DeleteSession force-stops the session's live work items (they stay readable) and
// deletes the session and its events, atomically. It returns the items it stopped.
//
// It writes no status event: the events go with the session. The session.deleted event
// that ends a stream (API.md §7) is made by the stream, which finds the session gone
// (internal/stream).
func (db *DB) DeleteSession(ctx context.Context, id string, now time.Time) ([]work.Item, error) {
	var stopped []work.Item
	err := db.d.Write(ctx, func(tx Tx) error {
		stopped = nil
		if _, err := tx.LockSession(ctx, id); err != nil {
			return err
		}
		changes, err := applyToLive(ctx, tx, id, work.Stop(true, now))
		if err != nil {
			return err
		}
		for _, c := range changes {
			stopped = append(stopped, c.After)
		}
		tx.NotifyEvents(id)
		return tx.DeleteSession(ctx, id)
	})
	if err == nil {
		db.committed(id)
	}
	return stopped, err
}

// Appended is what AppendEvents stored.
type Appended struct {
	Events []Event
	// Queued is the work item a dormant wake-up queued, if any.
	Queued *work.Item
	// Deliveries counts the webhook deliveries queued with Queued.
	Deliveries int
}

// AppendEvents stores events in order (IDs left empty are made in commit order) and,
// when the first event for which work.Wakes holds arrives, queues a new work item for the
// session, created at now. ErrNotFound if the session does not exist.
func (db *DB) AppendEvents(ctx context.Context, sessionID string, events []Event, now time.Time) (Appended, error) {
	var out Appended
	err := db.d.Insert(ctx, func(tx Tx) error {
		out = Appended{}
		sess, err := tx.LockSession(ctx, sessionID)
		if err != nil {
			return err
		}
		if out.Events, err = insertEvents(ctx, tx, sessionID, events); err != nil {
			return err
		}
		env, err := tx.Environment(ctx, sess.EnvironmentID)
		if err != nil {
			return err
		}
		live, err := tx.HasLiveWork(ctx, sessionID, "")
		if err != nil {
			return err
		}
		state := work.SessionState{Exists: true, Archived: !sess.ArchivedAt.IsZero(), HasLiveItem: live}
		for _, e := range events {
			if work.Wakes(e.Type, env.SelfHosted(), state) {
				it := work.New(tx.NewID(id.Work), env.ID, sessionID, sess.Metadata, now)
				if err := tx.InsertWork(ctx, it); err != nil {
					return err
				}
				if out.Deliveries, err = queueDeliveries(ctx, tx, it); err != nil {
					return err
				}
				tx.Notify(env.ID)
				out.Queued = &it
				break
			}
		}
		return nil
	})
	if err != nil {
		return Appended{}, err
	}
	db.committed(sessionID)
	return out, nil
}

// GetEvent returns one event of a session; ErrNotFound if the session has no such event.
func (db *DB) GetEvent(ctx context.Context, sessionID, id string) (Event, error) {
	return db.d.Event(ctx, sessionID, id)
}

// ListEvents lists one page of a session's events; ErrNotFound if the session does not
// exist.
func (db *DB) ListEvents(ctx context.Context, sessionID string, p Page) ([]Event, bool, error) {
	if _, err := db.d.Session(ctx, sessionID); err != nil {
		return nil, false, err
	}
	return db.d.Events(ctx, sessionID, p)
}

// ---- Work

// ClaimWork delivers the oldest item of the environment that c may deliver, recording the
// delivery (work.Deliver), atomically: two concurrent claims never get the same item. ok
// is false when nothing is deliverable. An empty queue, the common case under parked
// polls, is answered by a read alone.
func (db *DB) ClaimWork(ctx context.Context, environmentID string, c work.Claim) (work.Item, bool, error) {
	if any, err := db.d.HasDeliverable(ctx, environmentID, c); err != nil || !any {
		return work.Item{}, false, err
	}
	var out work.Item
	var found bool
	err := db.d.Write(ctx, func(tx Tx) error {
		var err error
		out, found, err = claimIn(ctx, tx, environmentID, c)
		return err
	})
	if err != nil {
		return work.Item{}, false, fmt.Errorf("claim work in %s: %w", environmentID, err)
	}
	return out, found, nil
}

// claimIn is ClaimWork inside a transaction.
func claimIn(ctx context.Context, tx Tx, environmentID string, c work.Claim) (work.Item, bool, error) {
	it, ok, err := tx.ClaimNext(ctx, environmentID, c)
	if err != nil || !ok {
		return work.Item{}, false, err
	}
	next, ok, err := work.Deliver(c).Apply(it)
	if err != nil || !ok {
		return work.Item{}, false, err
	}
	if err := tx.PutWork(ctx, next); err != nil {
		return work.Item{}, false, err
	}
	next.Version++
	return next, true, nil
}

// NextReclaim returns when the earliest delivered, unacknowledged item of the environment
// becomes deliverable again with the given reclaim window; ok is false when there is none.
func (db *DB) NextReclaim(ctx context.Context, environmentID string, reclaim time.Duration) (time.Time, bool, error) {
	return db.d.NextReclaim(ctx, environmentID, reclaim)
}

// GetWork returns an item of the environment (ErrNotFound for another environment's).
func (db *DB) GetWork(ctx context.Context, environmentID, id string) (work.Item, error) {
	return db.d.Work(ctx, environmentID, id)
}

// ListWork lists one page of the environment's items; states filters when not empty.
func (db *DB) ListWork(ctx context.Context, environmentID string, p Page, states []work.State) ([]work.Item, bool, error) {
	return db.d.WorkList(ctx, environmentID, p, states)
}

// UpdateWork applies t to the item as it is and, when t reports a change, writes the
// result, atomically; it returns the item before and after. An error of t is returned
// unchanged and nothing is written.
//
// The rule runs outside any transaction, on the item as read; the write is a
// compare-and-set on the item's version, tried again from a fresh read when another write
// came in between. The first try is made without a read, from the version of the item
// that this process last read or wrote, where it has one (recent.go): t may then run on
// an old version first, as it may on any try. So a refused transition (a 409, a 412)
// writes and locks nothing, and the write that is made holds the row only for itself. A change that starts or ends the
// lease is made under the locks of the item and its session instead (updateLease); an ack,
// whose every change does, goes there at once, and so locks even when it is refused.
func (db *DB) UpdateWork(ctx context.Context, environmentID, id string, t work.Transition) (Change, error) {
	if t.Leases() {
		return db.updateLease(ctx, environmentID, id, t)
	}
	if it, ok := db.recent.get(environmentID, id); ok {
		// From the version kept (recent.go): a write that succeeds, or a lease change,
		// which reads its row under its locks anyway; anything else reads below.
		next, changed, err := t.Apply(it)
		if err == nil && changed {
			if work.ChangesLease(it, next) {
				return db.updateLease(ctx, environmentID, id, t)
			}
			ok, err := db.d.PutWorkIf(ctx, next, it.Version)
			if err == nil && ok {
				next.Version = it.Version + 1
				db.recent.put(next)
				return Change{Before: it, After: next, Changed: true}, nil
			}
		}
	}
	for range maxCASRetries {
		it, err := db.d.Work(ctx, environmentID, id)
		if err != nil {
			return Change{}, err
		}
		db.recent.put(it)
		next, changed, err := t.Apply(it)
		if err != nil {
			return Change{Before: it, After: it}, err
		}
		if !changed {
			return Change{Before: it, After: next}, nil
		}
		if work.ChangesLease(it, next) {
			return db.updateLease(ctx, environmentID, id, t)
		}
		ok, err := db.d.PutWorkIf(ctx, next, it.Version)
		if err != nil {
			return Change{}, err
		}
		if ok {
			next.Version = it.Version + 1
			db.recent.put(next)
			return Change{Before: it, After: next, Changed: true}, nil
		}
	}
	return Change{}, fmt.Errorf("%s of work %s: the item kept changing during %d attempts", t.Name, id, maxCASRetries)
}

// updateLease is UpdateWork for a transition that starts or ends the item's lease: in one
// transaction with its session, so that the session's status event (API.md §3) is
// written with the change. A transition whose every change does (work.Transition.Leases:
// an ack) comes here at once, without UpdateWork's first read.
func (db *DB) updateLease(ctx context.Context, environmentID, id string, t work.Transition) (Change, error) {
	var out Change
	var status bool
	err := db.d.Write(ctx, func(tx Tx) error {
		out, status = Change{}, false
		// The session first (the order of locks), then the item.
		rows, err := tx.LockLease(ctx, environmentID, id)
		if err != nil {
			return err
		}
		it := rows.Item
		next, changed, err := t.Apply(it)
		out = Change{Before: it, After: next}
		if err != nil {
			out.After = it
			return err
		}
		if !changed {
			return nil
		}
		if err := tx.PutWork(ctx, next); err != nil {
			return err
		}
		out.After.Version++
		out.Changed = true
		was, running := it.State.Leased() || rows.OtherLeased, next.State.Leased() || rows.OtherLeased
		if rows.SessionFound && was != running {
			_, err = insertEvents(ctx, tx, it.SessionID, []Event{statusEvent(running, work.LeaseChangedAt(next))})
			status = err == nil
		}
		return err
	})
	if err != nil {
		var we *work.Error
		if errors.As(err, &we) {
			return out, err
		}
		return Change{}, err
	}
	if status {
		db.committed(out.After.SessionID)
	}
	db.recent.put(out.After)
	return out, nil
}

// WorkStats computes the queue statistics at now (API.md §4.3).
func (db *DB) WorkStats(ctx context.Context, environmentID string, now time.Time) (Stats, error) {
	var st Stats
	var err error
	if st.Depth, st.Pending, st.OldestQueuedAt, err = db.d.Queue(ctx, environmentID, now); err != nil {
		return st, fmt.Errorf("work stats of %s: %w", environmentID, err)
	}
	st.WorkersPolling, err = db.d.WorkersPolling(ctx, environmentID, now.Add(-work.PollerWindow))
	return st, err
}

// CountWork counts every work item by environment and state (see Reads.CountWork).
func (db *DB) CountWork(ctx context.Context) ([]WorkCount, error) { return db.d.CountWork(ctx) }

// RecordPoll notes that workerID polled the environment at now.
func (db *DB) RecordPoll(ctx context.Context, environmentID, workerID string, now time.Time) error {
	return db.d.RecordPoll(ctx, environmentID, workerID, now)
}

// PrunePollers forgets polls older than the stats window at now.
func (db *DB) PrunePollers(ctx context.Context, now time.Time) error {
	return db.d.PrunePollers(ctx, now.Add(-work.PollerWindow))
}

// expiryBatch bounds one scan of ExpireLeases, so that a backlog of expired leases (a
// server that was down for a while) is worked through in pieces.
const expiryBatch = 1000

// ExpireLeases stops every item whose lease expired before now (work.ExpireLease) and
// queues a fresh item for its session where work.RequeueAllowed, each item in its own
// transaction, re-checking the row so that an item is never expired twice. An expiry is
// reported once it is committed.
func (db *DB) ExpireLeases(ctx context.Context, now time.Time) ([]Expiry, error) {
	var out []Expiry
	var after LeaseEnd
	for {
		ends, err := db.d.ExpiredLeases(ctx, now, after, expiryBatch)
		if err != nil {
			return out, fmt.Errorf("expire leases: %w", err)
		}
		for _, e := range ends {
			exp, ok, err := db.expire(ctx, e.WorkKey, now)
			if err != nil {
				return out, fmt.Errorf("expire lease of %s: %w", e.ID, err)
			}
			if ok {
				out = append(out, exp)
			}
		}
		if len(ends) < expiryBatch {
			return out, nil
		}
		after = ends[len(ends)-1]
	}
}

// expire expires one lease, if it still has expired, in one transaction.
func (db *DB) expire(ctx context.Context, k WorkKey, now time.Time) (Expiry, bool, error) {
	var exp Expiry
	var done, status bool
	err := db.d.Insert(ctx, func(tx Tx) error {
		exp, done, status = Expiry{}, false, false
		// The session first (the order of locks), then the item.
		peek, err := tx.Work(ctx, k.EnvironmentID, k.ID)
		if err != nil {
			return err
		}
		state := work.SessionState{}
		sess, err := tx.LockSession(ctx, peek.SessionID)
		switch {
		case err == nil:
			state.Exists, state.Archived = true, !sess.ArchivedAt.IsZero()
		case !errors.Is(err, ErrNotFound):
			return err
		}
		it, err := tx.LockWork(ctx, k.EnvironmentID, k.ID)
		if err != nil {
			return err
		}
		stopped, ok, err := work.ExpireLease(now).Apply(it)
		if err != nil || !ok {
			return err // heartbeated or stopped since the scan
		}
		if err := tx.PutWork(ctx, stopped); err != nil {
			return err
		}
		stopped.Version++
		exp.Item, done = stopped, true
		if !state.Exists {
			return nil
		}
		if status, err = writeStatus(ctx, tx, sess.ID, sess.Running, stopped.StoppedAt); err != nil {
			return err
		}
		if !work.RequeuesAfterExpiry(it) {
			return nil
		}
		if state.HasLiveItem, err = tx.HasLiveWork(ctx, it.SessionID, it.ID); err != nil {
			return err
		}
		if !work.RequeueAllowed(state) {
			return nil
		}
		fresh := work.New(tx.NewID(id.Work), it.EnvironmentID, it.SessionID, it.Metadata, now)
		if err := tx.InsertWork(ctx, fresh); err != nil {
			return err
		}
		if exp.Deliveries, err = queueDeliveries(ctx, tx, fresh); err != nil {
			return err
		}
		tx.Notify(it.EnvironmentID)
		exp.Requeue = &fresh
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Expiry{}, false, nil // deleted since the scan
	}
	if err == nil && status {
		db.committed(exp.Item.SessionID)
	}
	if done && err == nil {
		db.recent.put(exp.Item)
	}
	return exp, done && err == nil, err
}

// NextLeaseExpiry returns the earliest lease expiry of any leased item.
func (db *DB) NextLeaseExpiry(ctx context.Context) (time.Time, bool, error) {
	return db.d.NextLeaseExpiry(ctx)
}

// ---- Tokens

// CreateToken stores t, with an ID made in commit order when t.ID is empty.
func (db *DB) CreateToken(ctx context.Context, t Token) (Token, error) {
	err := db.d.Insert(ctx, func(tx Tx) error {
		if t.ID == "" {
			t.ID = tx.NewID(id.Token)
		}
		return tx.InsertToken(ctx, t)
	})
	return t, err
}

// CreateFirstToken stores t only if the store holds no token at all, and reports whether
// it did. Of concurrent callers (on any replica) at most one stores its token.
func (db *DB) CreateFirstToken(ctx context.Context, t Token) (Token, bool, error) {
	var created bool
	err := db.d.Insert(ctx, func(tx Tx) error {
		if t.ID == "" {
			t.ID = tx.NewID(id.Token)
		}
		var err error
		created, err = tx.InsertFirstToken(ctx, t)
		return err
	})
	return t, created, err
}

// TokenByHash returns the token whose secret hashes to hash (revoked ones too).
func (db *DB) TokenByHash(ctx context.Context, hash string) (Token, error) {
	return db.d.TokenByHash(ctx, hash)
}

// ListTokens lists one page of tokens.
func (db *DB) ListTokens(ctx context.Context, p Page) ([]Token, bool, error) {
	return db.d.Tokens(ctx, p)
}

// RevokeToken sets revoked_at if it is not set yet and returns the token.
func (db *DB) RevokeToken(ctx context.Context, id string, now time.Time) (Token, error) {
	var out Token
	err := db.d.Write(ctx, func(tx Tx) error {
		var err error
		out, err = tx.RevokeToken(ctx, id, work.Timestamp(now))
		return err
	})
	return out, err
}

// TouchToken sets last_used_at to now.
func (db *DB) TouchToken(ctx context.Context, id string, now time.Time) error {
	at := work.Timestamp(now)
	err := db.d.Write(ctx, func(tx Tx) error { return tx.TouchToken(ctx, id, at) })
	if u, ok := db.d.(TokenUser); ok && err == nil {
		u.TokenUsed(id, at)
	}
	return err
}

// CountTokens counts the tokens, revoked ones included.
func (db *DB) CountTokens(ctx context.Context) (int, error) { return db.d.CountTokens(ctx) }

// ---- Idempotency keys

// ReserveIdempotencyKey records that a request with this token, key and fingerprint is
// being answered. If a record exists it is returned with existed = true and nothing is
// written.
func (db *DB) ReserveIdempotencyKey(ctx context.Context, rec Idempotency) (Idempotency, bool, error) {
	var existing Idempotency
	var existed bool
	err := db.d.Write(ctx, func(tx Tx) error {
		inserted, err := tx.InsertIdempotency(ctx, rec)
		if err != nil || inserted {
			existed = false
			return err
		}
		existed = true
		existing, err = tx.Idempotency(ctx, rec.TokenID, rec.Key)
		return err
	})
	return existing, existed, err
}

// CompleteIdempotencyKey stores the response of a reserved request.
func (db *DB) CompleteIdempotencyKey(ctx context.Context, tokenID, key string, status int, body []byte) error {
	return db.d.Write(ctx, func(tx Tx) error { return tx.CompleteIdempotency(ctx, tokenID, key, status, body) })
}

// ReleaseIdempotencyKey forgets a reservation whose request failed unexpectedly, so that
// a retry runs it again.
func (db *DB) ReleaseIdempotencyKey(ctx context.Context, tokenID, key string) error {
	return db.d.Write(ctx, func(tx Tx) error { return tx.DeleteIdempotency(ctx, tokenID, key) })
}

// PruneIdempotencyKeys deletes records created before cutoff.
func (db *DB) PruneIdempotencyKeys(ctx context.Context, cutoff time.Time) error {
	return db.d.Write(ctx, func(tx Tx) error { return tx.PruneIdempotency(ctx, cutoff) })
}

// ---- Webhooks (API.md §9)

// queueDeliveries writes, in the transaction that queues it, one delivery of the queued
// item it to each webhook of its environment, due at once, and returns how many it wrote.
// Being in that transaction is what makes the outbox durable: an item is never queued
// without its deliveries, nor a delivery written for an item that did not commit.
func queueDeliveries(ctx context.Context, tx Tx, it work.Item) (int, error) {
	hooks, err := tx.WebhookIDs(ctx, it.EnvironmentID)
	if err != nil || len(hooks) == 0 {
		return 0, err
	}
	ds := make([]Delivery, len(hooks))
	for i, h := range hooks {
		ds[i] = Delivery{ID: tx.NewID(id.Delivery), WebhookID: h, EnvironmentID: it.EnvironmentID,
			WorkID: it.ID, SessionID: it.SessionID, NextAttemptAt: it.CreatedAt, CreatedAt: it.CreatedAt}
	}
	return len(ds), tx.InsertDeliveries(ctx, ds)
}

// CreateWebhook stores w, with an ID made in commit order when w.ID is empty. Its
// environment must exist (ErrNotFound); items queued from the commit on get a delivery to
// it.
func (db *DB) CreateWebhook(ctx context.Context, w Webhook) (Webhook, error) {
	err := db.d.Insert(ctx, func(tx Tx) error {
		if _, err := tx.LockEnvironment(ctx, w.EnvironmentID); err != nil {
			return err
		}
		if w.ID == "" {
			w.ID = tx.NewID(id.Webhook)
		}
		return tx.InsertWebhook(ctx, w)
	})
	return w, err
}

// GetWebhook returns a webhook of the environment (ErrNotFound for another's).
func (db *DB) GetWebhook(ctx context.Context, environmentID, id string) (Webhook, error) {
	return db.d.Webhook(ctx, environmentID, id)
}

// ListWebhooks lists one page of the environment's webhooks.
func (db *DB) ListWebhooks(ctx context.Context, environmentID string, p Page) ([]Webhook, bool, error) {
	return db.d.Webhooks(ctx, environmentID, p)
}

// DeleteWebhook deletes a webhook of the environment and its deliveries, pending ones
// included: nothing is sent to it from the commit on (but an attempt already under way).
// ErrNotFound if the environment has no such webhook.
func (db *DB) DeleteWebhook(ctx context.Context, environmentID, id string) error {
	return db.d.Write(ctx, func(tx Tx) error {
		if _, err := tx.LockEnvironment(ctx, environmentID); err != nil {
			return err
		}
		if _, err := tx.Webhook(ctx, environmentID, id); err != nil {
			return err
		}
		return tx.DeleteWebhook(ctx, id)
	})
}

// ListDeliveries lists one page of a webhook's deliveries, oldest first.
func (db *DB) ListDeliveries(ctx context.Context, webhookID string, p Page) ([]Delivery, bool, error) {
	return db.d.Deliveries(ctx, webhookID, p)
}

// ClaimDeliveries begins an attempt of up to limit pending deliveries due at now, the
// earliest due first: each one's Attempts is raised and its NextAttemptAt moved to
// now+hold, atomically, so that no other claim (on any replica) gets it again before
// then. hold must outlast the attempt: should the claimer crash, the delivery is due
// again at now+hold. RecordAttempt stores the attempt's outcome.
func (db *DB) ClaimDeliveries(ctx context.Context, now time.Time, hold time.Duration, limit int) ([]Claimed, error) {
	var out []Claimed
	err := db.d.Write(ctx, func(tx Tx) error {
		due, err := tx.LockDueDeliveries(ctx, now, limit)
		if err != nil {
			return err
		}
		out = due
		for i := range out {
			out[i].Attempts++
			out[i].NextAttemptAt = work.Timestamp(now.Add(hold))
			if err := tx.PutDelivery(ctx, out[i].Delivery); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return out, nil
}

// RecordAttempt stores the outcome of an attempt, if it is still the delivery's latest
// (no later claim began another, the delivery is pending and its webhook exists), and
// reports whether it did.
func (db *DB) RecordAttempt(ctx context.Context, a Attempt) (bool, error) {
	var done bool
	err := db.d.Write(ctx, func(tx Tx) error {
		done = false
		d, err := tx.LockDelivery(ctx, a.DeliveryID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Attempts != a.Number || !d.Pending() {
			return nil
		}
		d.LastStatus, d.LastError = a.Status, a.Error
		d.DeliveredAt, d.NextAttemptAt = work.Timestamp(a.DeliveredAt), work.Timestamp(a.NextAttemptAt)
		done = true
		return tx.PutDelivery(ctx, d)
	})
	return done, err
}

// NextDelivery returns the earliest time a pending delivery is due.
func (db *DB) NextDelivery(ctx context.Context) (time.Time, bool, error) {
	return db.d.NextDelivery(ctx)
}

// CountPendingDeliveries counts the deliveries neither delivered nor given up.
func (db *DB) CountPendingDeliveries(ctx context.Context) (int, error) {
	return db.d.CountPendingDeliveries(ctx)
}

// SeedWork inserts items as they are, in one transaction, applying no rule: for
// benchmarks and tests that need a large store quickly. Not part of the contract.
func (db *DB) SeedWork(ctx context.Context, items []work.Item) error {
	return db.d.Write(ctx, func(tx Tx) error {
		for _, it := range items {
			if err := tx.InsertWork(ctx, it); err != nil {
				return err
			}
		}
		return nil
	})
}
