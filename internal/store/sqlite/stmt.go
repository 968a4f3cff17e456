package sqlite

import (
	"context"
	"database/sql"
	"sync"

	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// Prepared statements.
//
// modernc.org/sqlite parses a statement afresh on every call unless it is prepared, and
// parsing cost more than executing for berth's short statements (a tenth of the CPU of a
// lifecycle run went to the SQL parser). So every statement is prepared once per pool and
// kept; database/sql prepares it again on any new connection by itself.

// stmtCache holds one pool's prepared statements by their text.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
	// pending are statements first met inside a write transaction. The writer pool's one
	// connection is busy then, so preparing on the pool would wait for it forever; they are
	// prepared on the transaction for that use, and on the pool after the commit
	// (prepareLater).
	pending []string
}

func newStmtCache(db *sql.DB) *stmtCache { return &stmtCache{db: db, m: map[string]*sql.Stmt{}} }

// get returns the prepared statement of q, preparing it if needed. It prepares without
// holding the cache's lock: on the writer's pool, a preparation waits for the one
// connection, and others must be able to use the cache meanwhile.
func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := c.cached(q); ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(context.WithoutCancel(ctx), q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[q]; ok {
		st.Close() // prepared by another caller meanwhile
		return prev, nil
	}
	c.m[q] = st
	return st, nil
}

// cached returns a prepared statement if there is one.
func (c *stmtCache) cached(q string) (*sql.Stmt, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[q]
	return st, ok
}

func (c *stmtCache) later(q string) {
	c.mu.Lock()
	c.pending = append(c.pending, q)
	c.mu.Unlock()
}

// prepareLater prepares the statements met inside transactions; the writer calls it
// between transactions, when its connection is free.
func (c *stmtCache) prepareLater(ctx context.Context) {
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, q := range pending {
		c.get(ctx, q) // a failure only means the next use prepares it again
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = map[string]*sql.Stmt{}
}

// rows adapts *sql.Rows to sqlrows.Rows.
type rows struct{ *sql.Rows }

func (r rows) Close() { r.Rows.Close() }

// readConn runs reads on the read-only pool through prepared statements.
type readConn struct{ c *stmtCache }

func (r readConn) Query(ctx context.Context, q string, args ...any) (sqlrows.Rows, error) {
	st, err := r.c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	rs, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return rows{rs}, nil
}

func (r readConn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	st, err := r.c.get(ctx, q)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (r readConn) Send(ctx context.Context, q string, args ...any) error {
	_, err := r.Exec(ctx, q, args...)
	return err
}

// writeConn runs the statements of one write function on the writer's transaction,
// through prepared statements. It opens the function's savepoint just before its first
// statement that writes, so that a function that fails before writing (a refused
// transition) costs no savepoint at all.
type writeConn struct {
	tx    *sql.Tx
	c     *stmtCache
	saved bool // the running function's savepoint is open
}

func (w *writeConn) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := w.c.cached(q); ok {
		// The writer pool has one connection, on which st is already prepared:
		// StmtContext reuses it rather than preparing again.
		return w.tx.StmtContext(ctx, st), nil
	}
	w.c.later(q)
	return w.tx.PrepareContext(ctx, q)
}

// exec runs a statement of the transaction's own (savepoints).
func (w *writeConn) exec(ctx context.Context, q string) error {
	st, err := w.prepared(ctx, q)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx)
	return err
}

func (w *writeConn) Query(ctx context.Context, q string, args ...any) (sqlrows.Rows, error) {
	st, err := w.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	rs, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return rows{rs}, nil
}

func (w *writeConn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if !w.saved {
		if err := w.exec(ctx, "SAVEPOINT w"); err != nil {
			return 0, err
		}
		w.saved = true
	}
	st, err := w.prepared(ctx, q)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (w *writeConn) Send(ctx context.Context, q string, args ...any) error {
	_, err := w.Exec(ctx, q, args...)
	return err
}
