package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlrows"
	"github.com/berth-sh/berth/internal/work"
)

// maxAttempts bounds how often a transaction runs when PostgreSQL aborts it to resolve a
// deadlock or a serialization failure.
const maxAttempts = 5

// retriable reports whether PostgreSQL aborted a transaction that may simply run again.
func retriable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Write implements store.Driver: fn runs in a transaction of its own on the pool, again
// when PostgreSQL aborts it for a deadlock or a serialization failure. As in the SQLite
// store, a caller's cancellation does not cut a write off half-way: the transaction runs
// to its commit or rollback.
func (d *driver) Write(ctx context.Context, fn func(store.Tx) error) error {
	ctx = context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		err := d.write(ctx, fn)
		if attempt < maxAttempts && retriable(err) {
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
			continue
		}
		return err
	}
}

func (d *driver) write(ctx context.Context, fn func(store.Tx) error) error {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := &txConn{c: c}
	defer conn.release(ctx)
	t := d.newTx(conn, nil)
	if err := fn(t); err != nil {
		return err
	}
	err = conn.commit(ctx)
	d.committed(conn, err)
	return err
}

// committed follows a transaction's commit: where it committed, its notices go to the
// other replicas (notices.go); and this replica's cache is dropped if it wrote to a
// cached table, whether or not its commit is known to have succeeded.
func (d *driver) committed(conn *txConn, err error) {
	if err == nil {
		d.notices.send(conn.notices)
	}
	if conn.cached {
		d.cache.Invalidate()
	}
}

// newTx is a tx on conn, in batch (nil in a Write).
func (d *driver) newTx(conn *txConn, batch *idBatch) *tx {
	t := &tx{d: d, c: conn, batch: batch}
	t.Ops = sqlrows.Ops{C: conn, D: dialect, Cached: t.markCached}
	return t
}

// markCached notes a write to a table the replicas cache (sqlrows.Ops.Cached): the
// other replicas hear of it after the commit, and this one drops its cache after it.
func (t *tx) markCached() {
	t.c.cached = true
	t.c.notify(cacheChannel, t.d.replica)
}

// Insert implements store.Driver. Transactions that make IDs take turns on the one row of
// id_sequence, across replicas, and make their IDs above its last_id, which each turn
// raises: so IDs are made in commit order whatever the replicas' clocks say. A turn holds
// the row until its commit, so each replica runs the Inserts that are waiting together in
// one transaction (sqlrows.Group), each in a savepoint: one turn, one commit, many rows.
func (d *driver) Insert(ctx context.Context, fn func(store.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := d.inserts.Do(ctx, func(t *tx) error { return fn(t) })
		if attempt < maxAttempts && retriable(err) {
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
			continue
		}
		return err
	}
}

// PutWorkIf implements store.Driver: one statement outside any transaction, one round
// trip.
func (d *driver) PutWorkIf(ctx context.Context, it work.Item, version int64) (bool, error) {
	ctx = context.WithoutCancel(ctx)
	ok, err := d.Ops.PutWorkIf(ctx, it, version)
	if err != nil || ok {
		return ok, err
	}
	// Tell a missing item from a changed one.
	_, err = d.Ops.Work(ctx, it.EnvironmentID, it.ID)
	return false, err
}

// idBatch is one turn of Inserts: a transaction that holds id_sequence.
type idBatch struct {
	d    *driver
	c    *txConn
	last string // the last ID made, written back at the commit
}

// beginInserts opens a turn: BEGIN and the lock of id_sequence, in one round trip.
func (d *driver) beginInserts(ctx context.Context) (sqlrows.BatchTx[*tx], error) {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := &txConn{c: c}
	b := &idBatch{d: d, c: conn}
	rows, err := conn.Query(ctx, "SELECT last_id FROM id_sequence FOR UPDATE")
	if err == nil {
		if rows.Next() {
			err = rows.Scan(&b.last)
		} else if err = rows.Err(); err == nil {
			err = errors.New("postgres: id_sequence has no row")
		}
		rows.Close()
	}
	if err != nil {
		conn.release(ctx)
		return nil, fmt.Errorf("take the ID sequence: %w", err)
	}
	// The process's generator (id.New): above the last ID of the database, and above
	// every ID this process made or saw, whichever store or replica made it.
	id.Observe(b.last)
	return b, nil
}

// Run implements sqlrows.BatchTx: fn runs in a savepoint, which goes with fn's first
// statement. fn's writes whose results nobody waited for, and the savepoint's release, go
// with the next function's first statement or with the COMMIT: a turn holds the ID
// sequence for every other create of every replica, so a create costs one round trip
// for its reads (two with a claim), and none for its writes.
//
// An error of fn's own undoes fn alone, as a savepoint is for. A database error in the
// round trip that also carried the previous functions' deferred writes cannot be told
// apart from theirs, so it fails the whole turn: every function of the batch gets an
// error, and nothing of it commits. Those writes are inserts of rows with fresh IDs
// under the locks the functions took, so that happens when the database does (a lost
// connection), not when a request is wrong.
func (b *idBatch) Run(ctx context.Context, fn func(*tx) error) error {
	c := b.c
	if c.failed != nil {
		return c.failed
	}
	mark, sends := len(c.pending), c.sends // the previous functions' deferred statements
	notices := len(c.notices)
	c.Send(ctx, "SAVEPOINT s")
	t := b.d.newTx(c, b)
	err := fn(t)
	if err == nil {
		c.Send(ctx, "RELEASE SAVEPOINT s")
		return nil
	}
	c.notices = c.notices[:notices] // fn's notices are undone with it,
	c.envs = nil                    // and so may be the locks it took
	if c.sends == sends {           // nothing of fn's was sent
		c.pending = c.pending[:mark]
		return err
	}
	if c.failed != nil && mark > 0 && c.sends == sends+1 {
		return err // the batch stays failed: its commit fails, and so every function
	}
	c.pending = c.pending[:0]
	c.failed = nil
	for _, q := range []string{"ROLLBACK TO SAVEPOINT s", "RELEASE SAVEPOINT s"} {
		if _, rerr := c.c.Exec(ctx, q); rerr != nil {
			c.failed = rerr
			return errors.Join(err, rerr)
		}
	}
	return err
}

// Commit implements sqlrows.BatchTx: the last ID made goes back to id_sequence, with the
// COMMIT.
func (b *idBatch) Commit(ctx context.Context) error {
	defer b.c.release(ctx)
	if b.last != "" {
		b.c.Send(ctx, "UPDATE id_sequence SET last_id = $1", b.last)
	}
	err := b.c.commit(ctx)
	b.d.committed(b.c, err)
	return err
}

// Rollback implements sqlrows.BatchTx.
func (b *idBatch) Rollback(ctx context.Context) { b.c.release(ctx) }

// tx is store.Tx on a transaction of the pool (Write) or a savepoint of a turn (Insert).
//
// It remembers what it read under a lock, to save round trips later: the sessions whose
// last event it has observed (or which it inserted, and which have none), whose event IDs
// then need no read, since no other transaction adds to a session whose row this one
// holds; and, for the whole transaction (txConn.envs), the environments it locked and
// their webhooks, which no other transaction changes while it holds their row (webhooks
// are created and deleted under their environment's lock). In a turn of creates, only the
// first create of each environment then waits for its lock and its read.
type tx struct {
	sqlrows.Ops
	d     *driver
	c     *txConn
	batch *idBatch // nil in a Write

	observed map[string]bool // session ID → its last event is observed (id.Observe)
}

func (t *tx) observe(sessionID, lastEventID string) {
	id.Observe(lastEventID)
	if t.observed == nil {
		t.observed = map[string]bool{}
	}
	t.observed[sessionID] = true
}

// LockEnvironment implements store.Tx: the row and its webhooks' IDs, in one round trip,
// or neither where the transaction holds the row already.
func (t *tx) LockEnvironment(ctx context.Context, environmentID string) (store.Environment, error) {
	if l, ok := t.c.envs[environmentID]; ok {
		return l.env, nil
	}
	e, hooks, err := t.LockEnvironmentWebhooks(ctx, environmentID)
	if err != nil {
		return e, err
	}
	if t.c.envs == nil {
		t.c.envs = map[string]lockedEnv{}
	}
	t.c.envs[environmentID] = lockedEnv{e, hooks}
	return e, nil
}

// WebhookIDs implements store.Reads: those read with the environment's lock, if this
// transaction holds it.
func (t *tx) WebhookIDs(ctx context.Context, environmentID string) ([]string, error) {
	if l, ok := t.c.envs[environmentID]; ok {
		return l.hooks, nil
	}
	return t.Ops.WebhookIDs(ctx, environmentID)
}

// PutEnvironment implements store.Tx, and forgets the environment read before.
func (t *tx) PutEnvironment(ctx context.Context, e store.Environment) error {
	delete(t.c.envs, e.ID)
	return t.Ops.PutEnvironment(ctx, e)
}

// InsertWebhook implements store.Tx, and forgets the webhooks read before.
func (t *tx) InsertWebhook(ctx context.Context, w store.Webhook) error {
	delete(t.c.envs, w.EnvironmentID)
	return t.Ops.InsertWebhook(ctx, w)
}

// DeleteWebhook implements store.Tx, and forgets the webhooks read before.
func (t *tx) DeleteWebhook(ctx context.Context, webhookID string) error {
	t.c.envs = nil // which environment's is not known here
	return t.Ops.DeleteWebhook(ctx, webhookID)
}

// DeleteEnvironment implements store.Tx, and forgets the environment read before.
func (t *tx) DeleteEnvironment(ctx context.Context, environmentID string) error {
	delete(t.c.envs, environmentID)
	return t.Ops.DeleteEnvironment(ctx, environmentID)
}

// LockLease implements store.Tx: the session, the item, the other leases and the
// session's last event, in one round trip of two statements.
func (t *tx) LockLease(ctx context.Context, environmentID, workID string) (store.LeaseRows, error) {
	r, last, err := t.LockLeaseRows(ctx, environmentID, workID, true)
	if err == nil && r.SessionFound {
		t.observe(r.Item.SessionID, last)
	}
	return r, err
}

// LockSession implements store.Tx: the row and the session's last event, in one round
// trip.
func (t *tx) LockSession(ctx context.Context, sessionID string) (store.Session, error) {
	s, last, err := t.LockSessionLastEvent(ctx, sessionID)
	if err == nil {
		t.observe(sessionID, last)
	}
	return s, err
}

// InsertSession implements store.Tx: a new session has no events to observe.
func (t *tx) InsertSession(ctx context.Context, s store.Session) error {
	if err := t.Ops.InsertSession(ctx, s); err != nil {
		return err
	}
	t.observe(s.ID, "")
	return nil
}

var _ store.Tx = (*tx)(nil)

// NewID implements store.Tx.
func (t *tx) NewID(prefix string) string {
	if t.batch == nil {
		panic("postgres: NewID outside Insert")
	}
	s := id.New(prefix)
	t.batch.last = s
	return s
}

// NewEventID implements store.Tx: the process's generator, raised to the session's last
// event. The caller holds the session's row, so the event that came last committed
// before that event was read, and this one is above it whichever replica made it. The
// last event is read once per session and transaction, and not at all where the lock
// already read it (LockSession, LockLease) or the session is new (InsertSession).
func (t *tx) NewEventID(ctx context.Context, sessionID string) (string, error) {
	if !t.observed[sessionID] {
		last, err := t.LastEventID(ctx, sessionID)
		if err != nil {
			return "", fmt.Errorf("last event of %s: %w", sessionID, err)
		}
		t.observe(sessionID, last)
	}
	return id.New(id.Event), nil
}

// ClaimNext implements store.Tx. A poll must deliver the oldest deliverable item and
// answer null only when there is none (API.md §4.2), whichever replica it reaches; and
// the claims of one environment should not wait for each other's commits, as they did
// when they took turns under one lock of the environment.
//
// So each item has a claim lock (an advisory lock keyed by its ID, which only claims
// take), and a claim picks, in ID order, the first deliverable item whose claim lock it
// gets without waiting; then it locks that item's row and checks it again, waiting for
// whatever else holds the row (an ack, a heartbeat, a metadata update) rather than skip
// it, as SKIP LOCKED would. Concurrent claims then take different items side by side,
// and their commits share WAL flushes. A claim that passes over an item another claim
// holds is ordered after that claim, which delivers the item; and where every
// deliverable item is held, it waits for the first one's claim to end and picks again,
// since that claim may be a create's hand-off whose new item it cannot see yet: it
// answers null only when nothing deliverable is left that it could take.
//
// The claim lock is a session lock, released where the claim is done with it: at once
// for an item that turned out to have changed before its row lock was granted (claimNext
// answers with it flagged), and for the item delivered after the COMMIT, in the same
// round trip (txConn.claimed), or with the ROLLBACK. A claim therefore holds no other
// claim's wait while it waits itself.
//
// Passing over a held item is right only if the item will not be deliverable to the claim
// that passes once the other has delivered it: that is, if its reclaim window is longer
// than the time since the other claim's now. So only a claim whose window is at least
// claimPassWindow passes over held items; one with a shorter window (reclaim_older_than_ms
// below 5 s: 0 redelivers at once) waits for the oldest item's claim, as every claim did
// under the environment's lock.
//
// The bounds, and the choice: the pick looks at the 1,000 oldest deliverable items. A
// claim that finds them all held waits for the first; more than 1,000 claims in flight in
// one environment would be needed to pass over a free one. A claim passes over an item
// wrongly only if the claim holding it fails before its commit (a lost connection), or
// has been in flight for longer than the passing claim's window (5 s or more).
func (t *tx) ClaimNext(ctx context.Context, environmentID string, c work.Claim) (work.Item, bool, error) {
	cutoff := sqlrows.DeliverableCutoff(c)
	candidates := 1 // wait for the oldest item's claim
	if c.Reclaim >= claimPassWindow {
		candidates = 1000 // pass over the items other claims hold
	}
	t.c.claimed = true
	for {
		it, flag, found, err := t.WorkAndFlag(ctx, claimNext, environmentID, cutoff, candidates, cutoff, environmentID, cutoff)
		switch {
		case err != nil || !found:
			return work.Item{}, false, err
		case flag == claimGot:
			return it, true, nil
		case flag == claimChanged: // let it go, with the next pick
			t.c.Send(ctx, "SELECT pg_advisory_unlock(hashtextextended('claim ' || $1, 0))", it.ID)
		case flag == claimBusy: // wait for its claim to end, then pick again
			t.c.Send(ctx, "SELECT pg_advisory_lock(hashtextextended('claim ' || $1, 0))", it.ID)
			t.c.Send(ctx, "SELECT pg_advisory_unlock(hashtextextended('claim ' || $1, 0))", it.ID)
		}
	}
}

// claimPassWindow is the least reclaim window with which a claim passes over items that
// other claims hold (see ClaimNext): the default window.
const claimPassWindow = work.DefaultReclaim

// claimNext's flags.
const (
	claimGot     = 0 // the item, its row locked and still deliverable
	claimChanged = 1 // the item picked, as the pick saw it: it changed before its row lock
	claimBusy    = 2 // every deliverable item is held by a claim: the oldest of them
)

// claimNext is ClaimNext's statement: ?1 the environment and ?2 the cutoff of
// sqlrows.Deliverable for the pick, ?3 how many candidates it may look at, ?4 the cutoff
// again for the check under the row lock, ?5 and ?6 the environment and cutoff for the
// busy answer. pick walks the partial index of queued items in ID order and stops at the
// first whose claim lock it gets (the
// subquery's LIMIT keeps PostgreSQL from pulling the lock into it, so the locks are tried
// one at a time, in order); got locks the picked row and checks it again after any wait.
// It answers with one row, flagged as above, or none when nothing is deliverable.
const claimNext = `WITH pick AS MATERIALIZED (
	SELECT id FROM (
		SELECT id FROM work WHERE environment_id = ? AND ` + sqlrows.Deliverable + ` ORDER BY id LIMIT ?
	) candidates WHERE pg_try_advisory_lock(hashtextextended('claim ' || id, 0)) LIMIT 1
), got AS (
	SELECT ` + sqlrows.WorkColumns + ` FROM work WHERE id = (SELECT id FROM pick) AND ` + sqlrows.Deliverable + ` FOR UPDATE
)
SELECT *, 0 FROM got
UNION ALL
SELECT ` + sqlrows.WorkColumns + `, 1 FROM work WHERE id = (SELECT id FROM pick) AND NOT EXISTS (SELECT 1 FROM got)
UNION ALL (
	SELECT ` + sqlrows.WorkColumns + `, 2 FROM work
	WHERE NOT EXISTS (SELECT 1 FROM pick) AND environment_id = ? AND ` + sqlrows.Deliverable + `
	ORDER BY id LIMIT 1
)`

// LockDueDeliveries implements store.Tx. Deliveries that another transaction holds (a
// claim on another replica) are skipped, not waited for: unlike a poll, a sender need
// not get the oldest, and the claim that holds them moves them out of the due ones.
func (t *tx) LockDueDeliveries(ctx context.Context, now time.Time, limit int) ([]store.Claimed, error) {
	return t.DueDeliveries(ctx, now, limit, " FOR UPDATE OF d SKIP LOCKED")
}

// InsertFirstToken implements store.Tx: it runs in an Insert, whose turn on id_sequence
// also keeps any other replica from inserting a first token at the same time.
func (t *tx) InsertFirstToken(ctx context.Context, tok store.Token) (bool, error) {
	if t.batch == nil {
		panic("postgres: InsertFirstToken outside Insert")
	}
	return t.Ops.InsertFirstTokenIfNone(ctx, tok)
}

// Notify implements store.Tx: the notice goes after the commit (notices.go).
func (t *tx) Notify(environmentID string) {
	t.c.notify(workChannel, environmentID+" "+t.d.replica)
}

// NotifyEvents implements store.Tx: the notice goes after the commit (notices.go).
func (t *tx) NotifyEvents(sessionID string) {
	t.c.notify(eventsChannel, sessionID+" "+t.d.replica)
}
