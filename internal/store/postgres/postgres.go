// Package postgres is berth's PostgreSQL store (pgx v5), for several stateless berth
// replicas sharing one database.
//
// Every method is one transaction at READ COMMITTED. A read-modify-write locks its rows
// with SELECT … FOR UPDATE before the rule of internal/work runs, so a write never
// overwrites a row that changed after it was read. Claims of one environment take turns
// under an advisory lock and wait for a locked row rather than skip it, so that a poll
// always gets the oldest deliverable item whichever replica it reaches. Rows are locked in one order, session before its work items, so transactions do
// not deadlock; should PostgreSQL still report a deadlock or a serialization failure, the
// transaction is run again.
//
// Replicas learn of each other's new work through LISTEN/NOTIFY (ListenWork), count
// pollers in a shared table, and read tokens from the database on every request, so a
// revocation holds on every replica from the next request on.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// defaultPoolSize is the least number of connections a replica opens at most, unless the
// URL sets pool_max_conns.
const defaultPoolSize = 16

// migrationLock is the advisory lock key that serialises migrations, so that replicas
// starting at the same moment apply each migration once.
const migrationLock = 0x62657274 // "bert"

// workChannel is the NOTIFY channel of new deliverable work; the payload is
// "<environment ID> <replica ID>".
const workChannel = "berth_work"

// Store is the PostgreSQL store. Create it with Open.
type Store struct {
	pool *pgxpool.Pool
	// replica names this process in notifications, so that it can skip its own.
	replica string
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
)

// Open connects to the database at url (postgres://…), applies pending migrations and
// returns the store.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgx's default, max(4, CPUs), starves a server: a request holds a connection for
		// each of its short transactions and long polls claim in a loop. Measured with
		// berth bench lifecycle (64 workers, 2 CPUs): 345 items/s at 4 connections, 533
		// at 32.
		cfg.MaxConns = int32(max(defaultPoolSize, 4*runtime.GOMAXPROCS(0)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &Store{pool: pool, replica: strings.TrimPrefix(id.New("r"), "r_")}
	if err := s.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies the embedded migrations that the database lacks, each in its own
// transaction under an advisory lock, recording them in schema_migrations.
func (s *Store) Migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	return s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return err
		}
		for _, name := range names {
			base := name[strings.LastIndex(name, "/")+1:]
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
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", base, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v); err != nil {
				return err
			}
		}
		return nil
	})
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close implements store.Store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// tx runs fn in a transaction, again when PostgreSQL aborts it for a deadlock or a
// serialization failure. As in the SQLite store, a caller's cancellation does not cut a
// write off half-way: the transaction runs to its commit or rollback.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		var pe *pgconn.PgError
		if attempt < 5 && errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01") {
			time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
			continue
		}
		return err
	}
}

// notify queues a wake-up for the environment's pollers on every replica, sent when tx
// commits.
func (s *Store) notify(ctx context.Context, tx pgx.Tx, environmentID string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", workChannel, environmentID+" "+s.replica)
	return err
}

// ListenWork implements store.Notifier: it holds one connection LISTENing on the work
// channel and calls fn for every notification from another replica, until ctx ends. A
// lost connection is re-established after a second; resync is called each time LISTEN
// has taken effect, since notices sent meanwhile were lost.
func (s *Store) ListenWork(ctx context.Context, fn func(environmentID string), resync func()) error {
	for ctx.Err() == nil {
		err := s.listen(ctx, fn, resync)
		if ctx.Err() != nil {
			break
		}
		_ = err
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	return nil
}

// listen holds a connection of its own, outside the pool: a pool connection held for
// good would leave requests one short, and none at all with pool_max_conns=1.
func (s *Store) listen(ctx context.Context, fn func(string), resync func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+workChannel); err != nil {
		return err
	}
	resync()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		env, replica, _ := strings.Cut(n.Payload, " ")
		if replica != s.replica {
			fn(env)
		}
	}
}

// micros converts a time to the stored form: microseconds, or NULL for the zero time.
func micros(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMicro()
	return &v
}

func fromMicros(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.UnixMicro(*n).UTC()
}

// page appends the keyset condition, order and limit of p; n is the next placeholder
// number.
func page(q string, args []any, p store.Page) (string, []any) {
	n := len(args) + 1
	switch {
	case p.BeforeID != "":
		q += fmt.Sprintf(" AND id < $%d ORDER BY id DESC", n)
		args = append(args, p.BeforeID)
		n++
	case p.AfterID != "":
		q += fmt.Sprintf(" AND id > $%d ORDER BY id", n)
		args = append(args, p.AfterID)
		n++
	default:
		q += " ORDER BY id"
	}
	q += fmt.Sprintf(" LIMIT $%d", n)
	return q, append(args, p.Limit+1)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// query runs a query and scans every row with scan.
func query[T any](ctx context.Context, q querier, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
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

func one[T any](rows []T, err error, what, id string) (T, error) {
	var zero T
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, id, err)
	}
	if len(rows) == 0 {
		return zero, fmt.Errorf("%s %s: %w", what, id, store.ErrNotFound)
	}
	return rows[0], nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
