// Package sqlite is berth's embedded store: one SQLite database file (modernc.org/sqlite,
// pure Go) in WAL mode with synchronous=FULL, so that an answered write survives a power
// loss.
//
// SQLite allows one writer at a time, so the store owns exactly one write connection and
// runs every write transaction on it; reads go to a small pool of read-only connections,
// which WAL lets proceed while a write is in progress. Because every read-modify-write runs
// on the one writer, no write can interleave with another: a transition reads the row as
// it is and nobody can change it before the write.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/berth-sh/berth/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file's name inside the data directory.
const FileName = "berth.db"

// Store is the SQLite store. Create it with Open.
type Store struct {
	w  *sql.DB // the one writer
	r  *sql.DB // read-only pool
	wc *stmtCache
	rd readDB // reads on r through prepared statements

	// pollers remembers, per environment, when each Worker-ID last polled. One SQLite
	// database serves one process, so memory is the whole truth here and a poll stays a
	// read.
	pollMu  sync.Mutex
	pollers map[string]map[string]time.Time

	// Group commit (commit.go): writes queue here for the writer goroutine.
	writes     chan writeRequest
	closing    chan struct{}
	closeOnce  sync.Once
	writerDone chan struct{}
	metrics    atomic.Pointer[CommitMetrics]

	// cache keeps tokens and environments once read (cache.go); dataVersion is the
	// writer connection's last PRAGMA data_version, touched by the writer goroutine only.
	cache       *readCache
	dataVersion int64
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database in dir and applies pending migrations.
func Open(ctx context.Context, dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	path := filepath.Join(abs, FileName)
	// A file: URI, with the path escaped, so that a directory name holding "?" or "#"
	// names that directory and not a query or fragment.
	uri := (&url.URL{Scheme: "file", Path: path}).String()
	dsn := func(extra ...string) string {
		q := url.Values{}
		for _, p := range []string{
			"busy_timeout(10000)",
			"journal_mode(WAL)",
			"synchronous(FULL)",
			"foreign_keys(ON)",
		} {
			q.Add("_pragma", p)
		}
		for _, p := range extra {
			q.Add("_pragma", p)
		}
		return uri + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{
		w: w, wc: newStmtCache(w), pollers: map[string]map[string]time.Time{}, cache: newReadCache(),
		writes: make(chan writeRequest), closing: make(chan struct{}), writerDone: make(chan struct{}),
	}
	go s.writer()
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("query_only(1)"))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s.r, s.rd = r, readDB{c: newStmtCache(r)}
	return s, nil
}

// migrate applies the embedded migrations newer than PRAGMA user_version, each in its own
// transaction together with the version bump.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var current int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	for _, name := range names {
		base := filepath.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad name", base)
		}
		if v <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(tx *wtx) error {
			// A migration holds several statements: run it unprepared, on the raw
			// transaction.
			if _, err := tx.tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", base, err)
			}
			_, err := tx.tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion returns the applied migration version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.rd.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.rd.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close finishes the writes already queued, then closes both connection pools,
// checkpointing the WAL into the database file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	<-s.writerDone
	var errs []error
	if s.r != nil {
		s.rd.c.close()
		errs = append(errs, s.r.Close())
	}
	s.wc.close()
	if _, err := s.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// micros converts a time to the stored form: microseconds, or NULL for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of micros.
func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

// page appends the keyset condition and order of p to a query whose WHERE clause is
// already open, and returns the query and its arguments. Rows come back descending for a
// before_id page; finishPage puts them in ascending order.
func page(q string, args []any, p store.Page) (string, []any) {
	switch {
	case p.BeforeID != "":
		q += " AND id < ? ORDER BY id DESC"
		args = append(args, p.BeforeID)
	case p.AfterID != "":
		q += " AND id > ? ORDER BY id"
		args = append(args, p.AfterID)
	default:
		q += " ORDER BY id"
	}
	q += " LIMIT ?"
	args = append(args, p.Limit+1)
	return q, args
}

// query runs a read and scans every row with scan.
func query[T any](ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
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

type scanner interface{ Scan(...any) error }

func notFound(what, id string) error {
	return fmt.Errorf("%s %s: %w", what, id, store.ErrNotFound)
}

func one[T any](rows []T, err error, what, id string) (T, error) {
	var zero T
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, id, err)
	}
	if len(rows) == 0 {
		return zero, notFound(what, id)
	}
	return rows[0], nil
}

// queryer is satisfied by readDB and *wtx.
type queryer interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}
