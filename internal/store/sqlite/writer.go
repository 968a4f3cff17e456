package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlrows"
	"github.com/berth-sh/berth/internal/work"
)

// externalCheck is how often an idle writer looks for commits by other processes, which
// invalidate the read cache (sqlrows.ReadCache) and may have made IDs. A busy writer looks after
// every batch.
const externalCheck = 50 * time.Millisecond

// Write implements store.Driver: fn runs on the writer, in the next group commit.
func (d *driver) Write(ctx context.Context, fn func(store.Tx) error) error {
	return d.group.Do(ctx, func(t *tx) error { return fn(t) })
}

// Insert implements store.Driver. The one writer commits in the order it runs, so
// Write's transactions already make their IDs in commit order.
func (d *driver) Insert(ctx context.Context, fn func(store.Tx) error) error {
	return d.Write(ctx, fn)
}

// PutWorkIf implements store.Driver: the compare-and-set is the only thing the writer
// does for it; the read and the rule ran before, on a read connection.
func (d *driver) PutWorkIf(ctx context.Context, it work.Item, version int64) (bool, error) {
	var ok bool
	err := d.group.Do(ctx, func(t *tx) error {
		var err error
		if ok, err = t.PutWorkIf(ctx, it, version); err != nil || ok {
			return err
		}
		// Tell a missing item from a changed one.
		_, err = t.Work(ctx, it.EnvironmentID, it.ID)
		return err
	})
	return ok, err
}

// batch is one group commit's transaction on the writer.
type batch struct {
	d  *driver
	tx *sql.Tx
	// cached reports whether a write of the batch touched a table that the read cache
	// keeps (sqlrows.ReadCache): the cache is dropped once the batch has committed.
	cached bool
}

// begin opens a batch. It first looks for commits by other processes, so that IDs made
// in the batch are above theirs.
func (d *driver) begin(ctx context.Context) (sqlrows.BatchTx[*tx], error) {
	t, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	b := &batch{d: d, tx: t}
	if d.external(ctx, t) {
		if err := d.observeIDs(ctx, t); err != nil {
			t.Rollback()
			return nil, err
		}
	}
	return b, nil
}

// Run implements sqlrows.BatchTx: fn runs in its own savepoint, opened at its first
// write and released as soon as it ends. Leaving savepoints open until the batch's
// COMMIT looks cheaper but is not, since SQLite then journals a page again for every
// open savepoint (46 against 32 µs of CPU per heartbeat in BenchmarkConcurrentHeartbeats).
func (b *batch) Run(ctx context.Context, fn func(*tx) error) (err error) {
	c := &writeConn{tx: b.tx, c: b.d.wc}
	t := &tx{Ops: sqlrows.Ops{C: c, D: dialect, Cached: b.markCached}, b: b}
	defer func() {
		if !c.saved {
			return
		}
		if err != nil {
			if rerr := c.exec(ctx, "ROLLBACK TO w"); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if rerr := c.exec(ctx, "RELEASE w"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	return fn(t)
}

// markCached notes a write to a table the read cache keeps (sqlrows.Ops.Cached).
func (b *batch) markCached() { b.cached = true }

// Commit implements sqlrows.BatchTx. The read cache is dropped before any caller learns
// of the write, so that nothing read after its answer comes from the cache.
func (b *batch) Commit(ctx context.Context) error {
	err := b.tx.Commit()
	if b.cached {
		b.d.cache.Invalidate()
	}
	return err
}

// Rollback implements sqlrows.BatchTx.
func (b *batch) Rollback(context.Context) { b.tx.Rollback() }

// idle runs between batches: statements met in transactions are prepared on the pool,
// and commits by other processes drop the cache.
func (d *driver) idle() {
	ctx := context.Background()
	d.wc.prepareLater(ctx)
	d.external(ctx, d.w)
}

// external reports whether another connection has committed since the last look
// (PRAGMA data_version changes on the writer's connection only through others: this
// store's readers never write), and drops the read cache if so. Only the writer's loop
// calls it, on the writer's connection: the pool, or the batch's transaction.
func (d *driver) external(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) bool {
	var v int64
	if err := q.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		d.cache.Invalidate() // unknown: assume the worst
		return true
	}
	if v == d.dataVersion {
		return false
	}
	d.dataVersion = v
	d.cache.Invalidate()
	return true
}

// tx is one write function's view of the batch: store.Tx on the writer.
type tx struct {
	sqlrows.Ops
	b *batch
}

var _ store.Tx = (*tx)(nil)

// ClaimNext implements store.Tx: the oldest deliverable item, which no other write can
// claim while this one runs.
func (t *tx) ClaimNext(ctx context.Context, environmentID string, c work.Claim) (work.Item, bool, error) {
	return t.OldestDeliverable(ctx, environmentID, c, "")
}

// LockLease implements store.Tx: the reads one after the other, on the one writer.
func (t *tx) LockLease(ctx context.Context, environmentID, id string) (store.LeaseRows, error) {
	r, _, err := t.LockLeaseRows(ctx, environmentID, id, false)
	return r, err
}

// LockDueDeliveries implements store.Tx: no other write runs while this one does, so the
// rows need no lock.
func (t *tx) LockDueDeliveries(ctx context.Context, now time.Time, limit int) ([]store.Claimed, error) {
	return t.DueDeliveries(ctx, now, limit, "")
}

// NewID implements store.Tx: the process's generator, whose IDs are above those of the
// file (observeIDs) and above every ID this process made, so that an ID made by the one
// writer is in commit order and never below an ID the process handed out before.
func (t *tx) NewID(prefix string) string { return id.New(prefix) }

// NewEventID implements store.Tx: as NewID, since the one writer commits in the order it
// runs.
func (t *tx) NewEventID(context.Context, string) (string, error) { return id.New(id.Event), nil }

// Notify implements store.Tx: one process, whose server wakes its own pollers.
func (t *tx) Notify(string) {}

// NotifyEvents implements store.Tx: one process, whose streams hear of events from the
// store itself (store.DB.OnEvents).
func (t *tx) NotifyEvents(string) {}

// DeleteEnvironment implements store.Tx; the environment's pollers go with it.
func (t *tx) DeleteEnvironment(ctx context.Context, id string) error {
	t.b.d.pollers.forget(id)
	return t.Ops.DeleteEnvironment(ctx, id)
}

// InsertFirstToken implements store.Tx: the one writer makes the check and the insert
// one step.
func (t *tx) InsertFirstToken(ctx context.Context, tok store.Token) (bool, error) {
	return t.Ops.InsertFirstTokenIfNone(ctx, tok)
}
