// Package sqlite is berth's embedded store: one SQLite database file (modernc.org/sqlite,
// pure Go) in WAL mode with synchronous=FULL, so that an answered write survives a power
// loss. It is a store.Driver; Open returns the storage contract's operations over it.
//
// SQLite allows one writer at a time, so the store owns exactly one write connection and
// runs every write transaction on it, many at once in one commit (group commit,
// sqlrows.Group); reads go to a small pool of read-only connections, which WAL lets
// proceed while a write is in progress. Because every write runs on the one writer, no
// write can interleave with another: the locks of store.Tx are not needed, and the IDs the
// writer makes (store.Tx.NewID) are in commit order by construction.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlrows"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file's name inside the data directory.
const FileName = "berth.db"

// dialect is SQLite's SQL: ? placeholders, and no row locks, since one writer runs every
// write.
var dialect = &sqlrows.Dialect{
	// countWork counts the items by environment and state. No index holds state, so it
	// reads every row of work. The unary + keeps SQLite from walking work_by_environment
	// for the GROUP BY's order: that index lacks state, so the walk would look every row
	// up in the table by its primary key, and measured 3.5 times slower (200,000 items:
	// 400 ms) than the plain table scan it does instead (EXPLAIN QUERY PLAN: SCAN work,
	// USE TEMP B-TREE FOR GROUP BY; 115 ms). Should an index on (environment_id, state)
	// ever be added, drop the +: the query then reads only that index, in order (17 ms).
	CountWork: `SELECT environment_id, state, count(*) FROM work GROUP BY +environment_id, state`,
}

// Store is the SQLite store: the storage contract over this package's driver.
type Store struct {
	*store.DB
	d *driver
}

var _ store.Store = (*Store)(nil)

// driver is SQLite's store.Driver.
type driver struct {
	sqlrows.Ops // reads on the read-only pool

	w     *sql.DB // the one writer
	r     *sql.DB // read-only pool
	wc    *stmtCache
	rc    *stmtCache
	group *sqlrows.Group[*tx]

	cache   *sqlrows.ReadCache
	pollers *pollers
	metrics atomic.Pointer[CommitMetrics]

	// dataVersion is the writer connection's last PRAGMA data_version; touched by the
	// writer's loop only.
	dataVersion int64
}

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
	d := &driver{w: w, wc: newStmtCache(w), cache: sqlrows.NewReadCache(0), pollers: newPollers()}
	if err := d.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	d.r, d.rc = r, newStmtCache(r)
	d.Ops = sqlrows.Ops{C: readConn{d.rc}, D: dialect}
	// IDs continue above every ID in the file, whoever made them.
	if err := d.observeIDs(ctx, w); err != nil {
		d.r.Close()
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d.group = sqlrows.NewGroup(d.begin, sqlrows.GroupHooks{
		Committed: func(n int, took time.Duration) { d.metrics.Load().observe(n, took) },
		Idle:      d.idle,
		IdleEvery: externalCheck,
	})
	return &Store{DB: store.New(d), d: d}, nil
}

// migrate applies the embedded migrations newer than PRAGMA user_version, each in its own
// transaction together with the version bump.
func (d *driver) migrate(ctx context.Context) error {
	var current int
	if err := d.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	pending, err := sqlrows.Pending(migrations, "migrations/*.sql", current)
	if err != nil {
		return err
	}
	for _, m := range pending {
		tx, err := d.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.Version)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// observeIDs raises the ID generator's floor to the greatest ID in the file, so that IDs
// made here are above those another process made (`berth token create` offline next to
// a running server).
func (d *driver) observeIDs(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) error {
	for _, table := range []string{"environments", "sessions", "events", "work", "tokens", "webhooks", "webhook_deliveries"} {
		var max sql.NullString
		if err := q.QueryRowContext(ctx, "SELECT max(id) FROM "+table).Scan(&max); err != nil {
			return err
		}
		id.Observe(max.String)
	}
	return nil
}

// SchemaVersion returns the applied migration version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.d.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Ping implements store.Driver.
func (d *driver) Ping(ctx context.Context) error {
	var one int
	return d.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close finishes the writes already queued, then closes both connection pools,
// checkpointing the WAL into the database file.
func (d *driver) Close() error {
	if d.group == nil {
		return nil
	}
	d.group.Close()
	var errs []error
	d.rc.close()
	errs = append(errs, d.r.Close())
	d.wc.close()
	if _, err := d.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, d.w.Close())
	return errors.Join(errs...)
}
