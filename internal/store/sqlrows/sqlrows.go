// Package sqlrows is the SQL that berth's two databases share: the statements of the
// storage seam's row-level reads and writes (store.Reads and the writes of store.Tx),
// written once with ? placeholders, and the scans of their rows. A driver runs them on a
// Conn of its own (the SQLite writer or read pool, a PostgreSQL transaction) through Ops,
// with a Dialect that says what differs: placeholders, row locks, and the few statements
// that each database words its own way.
//
// The rules' filters that must run in SQL (deliverable, live, leased, lease expired) are
// named once here, in filters.go, beside the Go predicate of internal/work that each one
// mirrors; the conformance suite checks each against its predicate on random items.
package sqlrows

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// Conn runs statements on one connection or transaction.
type Conn interface {
	// Query runs a statement that returns rows.
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// Send runs a statement whose result nobody waits for. A driver may defer it, to send
	// it together with the next statement or the commit (one round trip instead of two);
	// its error then surfaces there, and rolls the transaction back all the same.
	Send(ctx context.Context, query string, args ...any) error
}

// Rows is the result of Query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Dialect is what differs between the drivers' SQL.
type Dialect struct {
	// Numbered makes placeholders $1, $2, … instead of ?.
	Numbered bool
	// Lock is the clause that keeps the rows a SELECT reads from other transactions until
	// this one ends ("" where a single writer makes locks needless). LockOf is the same
	// for one table of a SELECT that reads several.
	Lock   string
	LockOf func(table string) string
	// CountWork is the statement of Reads.CountWork: environment_id, state, count(*) of
	// work by environment and state. Each database's planner wants it worded its own way.
	CountWork string

	mu    sync.Mutex
	bound map[string]string
}

// Bind returns q with its ? placeholders in the dialect's form.
func (d *Dialect) Bind(q string) string {
	if !d.Numbered {
		return q
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.bound[q]; ok {
		return b
	}
	var out strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			out.WriteString("$" + strconv.Itoa(n))
			continue
		}
		out.WriteRune(c)
	}
	if d.bound == nil {
		d.bound = map[string]string{}
	}
	d.bound[q] = out.String()
	return d.bound[q]
}

// Ops runs the shared statements on a Conn: it implements store.Reads and the row
// writes of store.Tx. Drivers add what is theirs (locks, claims, IDs, notices).
type Ops struct {
	C Conn
	D *Dialect
	// Cached, if set, is called by each write to a table that a ReadCache keeps (tokens,
	// environments), before the write: the driver drops its cache once the transaction
	// has committed.
	Cached func()
}

func (o Ops) cached() {
	if o.Cached != nil {
		o.Cached()
	}
}

func (o Ops) query(ctx context.Context, q string, args ...any) (Rows, error) {
	return o.C.Query(ctx, o.D.Bind(q), args...)
}

func (o Ops) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return o.C.Exec(ctx, o.D.Bind(q), args...)
}

func (o Ops) send(ctx context.Context, q string, args ...any) error {
	return o.C.Send(ctx, o.D.Bind(q), args...)
}

// Stmt is one read of a pipeline (Ops.pipeline).
type Stmt struct {
	Query string
	Args  []any
}

// Pipeliner is a Conn that can send several reads together, in one round trip. Each read
// still runs as a statement of its own, after the one before it has finished: a read that
// follows a lock sees every transaction that committed before the lock was granted.
type Pipeliner interface {
	// QueryEach sends the statements (already bound) together, with anything pending
	// before them, and calls each with the rows of each in order; it stops at the first
	// error.
	QueryEach(ctx context.Context, stmts []Stmt, each func(i int, r Rows) error) error
}

// pipeline runs reads in order, in one round trip on a Conn that is a Pipeliner, else one
// after the other; each gets its rows.
func (o Ops) pipeline(ctx context.Context, stmts []Stmt, each func(i int, r Rows) error) error {
	for i := range stmts {
		stmts[i].Query = o.D.Bind(stmts[i].Query)
	}
	if p, ok := o.C.(Pipeliner); ok {
		return p.QueryEach(ctx, stmts, each)
	}
	for i, s := range stmts {
		rows, err := o.C.Query(ctx, s.Query, s.Args...)
		if err != nil {
			return err
		}
		err = each(i, rows)
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// all runs a read and scans every row with scan.
func all[T any](ctx context.Context, o Ops, scan func(Rows) (T, error), q string, args ...any) ([]T, error) {
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAll(rows, scan)
}

// scanAll scans every row of rows with scan.
func scanAll[T any](rows Rows, scan func(Rows) (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// one runs a read of one row; ErrNotFound (wrapped with what and key) when there is none.
func one[T any](ctx context.Context, o Ops, scan func(Rows) (T, error), what, key, q string, args ...any) (T, error) {
	rows, err := all(ctx, o, scan, q, args...)
	var zero T
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, key, err)
	}
	if len(rows) == 0 {
		return zero, NotFound(what, key)
	}
	return rows[0], nil
}

// value runs a read of one value.
func value[T any](ctx context.Context, o Ops, q string, args ...any) (T, error) {
	var v T
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return v, err
	}
	defer rows.Close()
	return v, scanOne(rows, &v)
}

// NotFound is the error of a missing row.
func NotFound(what, key string) error {
	return fmt.Errorf("%s %s: %w", what, key, store.ErrNotFound)
}

// IsNotFound reports whether err is a missing row.
func IsNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// Micros converts a time to the stored form: microseconds since the Unix epoch, or NULL
// for the zero time. Both databases hold exactly the same instants.
func Micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of Micros.
func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

func metadataJSON(m work.Metadata) string {
	if m == nil {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return string(b)
}

// page appends the keyset condition and order of p to a query whose WHERE clause is
// already open, and returns the query and its arguments. Rows come back in the reverse of
// the list's order for a before_id page, and one more than the limit: store.TrimPage
// finishes the page.
func page(q string, args []any, p store.Page) (string, []any) {
	forward, backward, after, before := " ORDER BY id", " ORDER BY id DESC", " AND id > ?", " AND id < ?"
	if p.Desc {
		forward, backward, after, before = backward, forward, before, after
	}
	switch {
	case p.BeforeID != "":
		q += before + backward
		args = append(args, p.BeforeID)
	case p.AfterID != "":
		q += after + forward
		args = append(args, p.AfterID)
	default:
		q += forward
	}
	q += " LIMIT ?"
	args = append(args, p.Limit+1)
	return q, args
}

// list runs a page query and trims it.
func list[T any](ctx context.Context, o Ops, scan func(Rows) (T, error), what, q string, args []any, p store.Page) ([]T, bool, error) {
	q, args = page(q, args, p)
	rows, err := all(ctx, o, scan, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", what, err)
	}
	rows, more := store.TrimPage(rows, p)
	return rows, more, nil
}
