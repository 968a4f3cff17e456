package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"sync"
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

func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(context.WithoutCancel(ctx), q)
	if err != nil {
		return nil, err
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

// readDB runs reads on the read-only pool through prepared statements.
type readDB struct{ c *stmtCache }

func (r readDB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := r.c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (r readDB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := r.c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryRowContext is QueryContext for one row; a preparation error surfaces from Scan.
func (r readDB) QueryRowContext(ctx context.Context, q string, args ...any) *row {
	rows, err := r.QueryContext(ctx, q, args...)
	return &row{rows: rows, err: err}
}

// wtx is a write transaction on the writer connection, through prepared statements.
type wtx struct {
	tx *sql.Tx
	c  *stmtCache
	// saved reports whether the running write function has opened its savepoint: it is
	// opened just before the function's first statement that is not a SELECT, so that a
	// function that fails before writing costs no savepoint at all.
	saved bool
	// cached reports whether a write of the transaction touched a table that the read
	// cache keeps (cache.go): the cache is dropped once the transaction ends.
	cached bool
}

func (t *wtx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if isSelect(q) {
		return t.prepared(ctx, q)
	}
	if strings.Contains(q, "tokens") || strings.Contains(q, "environments") {
		t.cached = true
	}
	if !t.saved {
		if err := t.exec(ctx, "SAVEPOINT w"); err != nil {
			return nil, err
		}
		t.saved = true
	}
	return t.prepared(ctx, q)
}

// exec runs a statement of the transaction's own (savepoints), outside the savepoint
// rule of stmt.
func (t *wtx) exec(ctx context.Context, q string) error {
	st, err := t.prepared(ctx, q)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx)
	return err
}

func (t *wtx) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := t.c.cached(q); ok {
		// The writer pool has one connection, on which st is already prepared:
		// StmtContext reuses it rather than preparing again.
		return t.tx.StmtContext(ctx, st), nil
	}
	t.c.later(q)
	return t.tx.PrepareContext(ctx, q)
}

func (t *wtx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *wtx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *wtx) QueryRowContext(ctx context.Context, q string, args ...any) *row {
	rows, err := t.QueryContext(ctx, q, args...)
	return &row{rows: rows, err: err}
}

// row is a one-row result, like *sql.Row.
type row struct {
	rows *sql.Rows
	err  error
}

// Scan scans the first row, or returns sql.ErrNoRows.
func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// isSelect reports whether q is a plain SELECT, which writes nothing.
func isSelect(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n")
	return len(q) >= 6 && strings.EqualFold(q[:6], "SELECT")
}
