package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// Round trips.
//
// Every statement sent on its own costs a round trip to the database, and a transaction
// of BEGIN, a read, a write and COMMIT costs four. A txConn sends fewer: BEGIN goes with
// the transaction's first statement, and a write whose result nobody waits for
// (sqlrows.Conn.Send) waits to go with the next statement or with COMMIT, all in one
// pipelined batch; and reads that a transaction needs together (a lock and what must be
// read under it, sqlrows.Pipeliner) go in one batch too, each still a statement of its
// own, run after the one before it. A read-then-write transaction is then two round
// trips, and a compare-and-set outside any transaction (Driver.PutWorkIf) one.

// poolConn runs statements on the pool, each in a transaction of its own.
type poolConn struct{ p *pgxpool.Pool }

func (c poolConn) Query(ctx context.Context, q string, args ...any) (sqlrows.Rows, error) {
	r, err := c.p.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgRows{r}, nil
}

func (c poolConn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.p.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (c poolConn) Send(ctx context.Context, q string, args ...any) error {
	_, err := c.Exec(ctx, q, args...)
	return err
}

// pgRows adapts pgx.Rows to sqlrows.Rows.
type pgRows struct{ pgx.Rows }

func (r pgRows) Close() { r.Rows.Close() }

// txConn is one transaction on a connection of the pool, begun by its first statement.
type txConn struct {
	c       *pgxpool.Conn
	begun   bool
	pending []queued             // sent with the next statement or the commit
	failed  error                // the transaction is aborted: every later statement fails so
	cached  bool                 // it wrote to a table the replicas cache (tx.markCached)
	sends   int                  // batches sent so far
	notices []notice             // sent after the commit (notify)
	envs    map[string]lockedEnv // environments locked and read (tx.LockEnvironment)
	claimed bool                 // it may hold claim locks (tx.ClaimNext): released at its end
}

// unlockClaims releases the claim locks a transaction took (session locks, which its end
// does not release).
const unlockClaims = "SELECT pg_advisory_unlock_all()"

// lockedEnv is an environment row that a transaction holds, as read with its lock, and
// its webhooks' IDs.
type lockedEnv struct {
	env   store.Environment
	hooks []string
}

// notify queues a notice for after the commit (notices.go; the notifier drops repeats).
func (t *txConn) notify(channel, payload string) {
	t.notices = append(t.notices, notice{channel, payload})
}

type queued struct {
	sql  string
	args []any
}

func (t *txConn) Send(_ context.Context, q string, args ...any) error {
	if t.failed != nil {
		return t.failed
	}
	t.pending = append(t.pending, queued{q, args})
	return nil
}

// batch queues BEGIN (the first time) and the pending statements, then q.
func (t *txConn) batch(q string, args []any) *pgx.Batch {
	b := &pgx.Batch{}
	if !t.begun {
		b.Queue("BEGIN")
		t.begun = true
	}
	for _, p := range t.pending {
		b.Queue(p.sql, p.args...)
	}
	t.pending = t.pending[:0]
	if q != "" {
		b.Queue(q, args...)
	}
	return b
}

// sendBatch sends b and reads the results of all but its last statement (which the
// caller reads from the returned results).
func (t *txConn) sendBatch(ctx context.Context, b *pgx.Batch) (pgx.BatchResults, error) {
	t.sends++
	br := t.c.SendBatch(ctx, b)
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			t.failed = err
			return nil, err
		}
	}
	return br, nil
}

func (t *txConn) Query(ctx context.Context, q string, args ...any) (sqlrows.Rows, error) {
	if t.failed != nil {
		return nil, t.failed
	}
	br, err := t.sendBatch(ctx, t.batch(q, args))
	if err != nil {
		return nil, err
	}
	r, err := br.Query()
	if err != nil {
		br.Close()
		t.failed = err
		return nil, err
	}
	return &batchRows{pgRows: pgRows{r}, br: br, t: t}, nil
}

// QueryEach implements sqlrows.Pipeliner: BEGIN (the first time), the pending
// statements and stmts go in one batch, one round trip.
func (t *txConn) QueryEach(ctx context.Context, stmts []sqlrows.Stmt, each func(i int, r sqlrows.Rows) error) error {
	if t.failed != nil {
		return t.failed
	}
	b := t.batch("", nil)
	for _, s := range stmts {
		b.Queue(s.Query, s.Args...)
	}
	t.sends++
	br := t.c.SendBatch(ctx, b)
	err := func() error {
		for range b.Len() - len(stmts) {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for i := range stmts {
			r, err := br.Query()
			if err != nil {
				return err
			}
			err = each(i, pgRows{r})
			r.Close()
			if err == nil {
				err = r.Err()
			}
			if err != nil {
				return err
			}
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.failed = err
	}
	return err
}

// batchRows closes the batch with the rows, and marks the transaction failed if the
// statement did.
type batchRows struct {
	pgRows
	br pgx.BatchResults
	t  *txConn
}

func (r *batchRows) Close() {
	r.pgRows.Close()
	if err := r.pgRows.Err(); err != nil && r.t.failed == nil {
		r.t.failed = err
	}
	if err := r.br.Close(); err != nil && r.t.failed == nil {
		r.t.failed = err
	}
}

func (t *txConn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if t.failed != nil {
		return 0, t.failed
	}
	br, err := t.sendBatch(ctx, t.batch(q, args))
	if err != nil {
		return 0, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.failed = err
	}
	return tag.RowsAffected(), err
}

// flush sends the pending statements, if any, and reports the first error.
func (t *txConn) flush(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if len(t.pending) == 0 {
		return nil
	}
	last := t.pending[len(t.pending)-1]
	t.pending = t.pending[:len(t.pending)-1]
	_, err := t.Exec(ctx, last.sql, last.args...)
	return err
}

// errRolledBack: COMMIT found the transaction aborted (PostgreSQL answers it with
// ROLLBACK).
var errRolledBack = errors.New("postgres: the transaction was rolled back")

// commit sends what is pending with COMMIT, and after it, where the transaction claimed,
// the release of its claim locks, in one round trip. A transaction that never began has
// nothing to commit. Its notices are the caller's to send once it has committed
// (notifier).
func (t *txConn) commit(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if !t.begun && len(t.pending) == 0 {
		return nil
	}
	b := t.batch("COMMIT", nil)
	before := b.Len() - 1
	if t.claimed {
		b.Queue(unlockClaims)
	}
	t.sends++
	br := t.c.SendBatch(ctx, b)
	err := func() error {
		for range before {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		tag, err := br.Exec()
		if err == nil && tag.String() != "COMMIT" {
			err = fmt.Errorf("%w (%s)", errRolledBack, tag)
		}
		return err
	}()
	unlocked := true
	if err == nil && t.claimed {
		_, uerr := br.Exec()
		unlocked, t.claimed = uerr == nil, false
	}
	if cerr := br.Close(); err == nil && unlocked {
		err = cerr
	}
	if !unlocked {
		t.c.Conn().Close(ctx) // committed, but its claim locks go only with its session
	}
	if err != nil {
		t.failed = err
		return err
	}
	t.begun = false
	return nil
}

// rollback ends the transaction without its writes, if it began.
func (t *txConn) rollback(ctx context.Context) {
	t.pending, t.notices, t.envs = nil, nil, nil
	if t.begun {
		t.c.Exec(ctx, "ROLLBACK") // a failure leaves a broken connection, which release drops
	}
	if t.claimed {
		if _, err := t.c.Exec(ctx, unlockClaims); err != nil {
			t.c.Conn().Close(ctx) // its locks go with its session; release drops it
		}
		t.claimed = false
	}
	t.begun = false
}

// release gives the connection back to the pool, or closes it if its transaction could
// not be ended.
func (t *txConn) release(ctx context.Context) {
	if t.begun || t.claimed {
		t.rollback(ctx)
	}
	if t.c.Conn().PgConn().TxStatus() != 'I' {
		t.c.Conn().Close(ctx)
	}
	t.c.Release()
}
