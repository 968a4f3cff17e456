// Package postgres is berth's PostgreSQL store (pgx v5), for several stateless berth
// replicas sharing one database. It is a store.Driver; Open returns the storage
// contract's operations over it.
//
// Every transaction runs at READ COMMITTED. Locking reads (store.Tx) are SELECT … FOR
// UPDATE, taken in one order (an environment, a session, then its work items) so that
// transactions do not deadlock; should PostgreSQL still report a deadlock or a
// serialization failure, the transaction runs again. A transition of one item is a
// compare-and-set on its version (Driver.PutWorkIf), one statement. Concurrent claims
// of one environment take different items, each the oldest deliverable item that no
// other claim holds, and wait for a row that anything else holds rather than skip it, so
// that a poll gets the oldest deliverable item whichever replica it reaches
// (tx.ClaimNext). Transactions that make IDs take turns on one sequence row, so that IDs are made
// in commit order across replicas (store.Driver.Insert), and each replica runs those
// waiting together (group commit). Statements whose result nobody waits for travel with
// the next one or the commit (conn.go).
//
// Replicas learn of each other's new work through LISTEN/NOTIFY (ListenWork), the notices
// sent right after the commit that they announce (notices.go), and count pollers in a
// shared table. Each keeps the tokens and environments it has read in a cache
// (sqlrows.ReadCache), dropped after its own writes to them and when another replica's
// arrive (a notice on cacheChannel), and never trusted for more than cacheMaxAge: a revocation holds on the replica that made it from its
// answer on, and on the others once its notice arrives (within a millisecond or so), or
// cacheMaxAge after it at the latest.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlrows"
)

//go:embed migrations/*.sql
var migrations embed.FS

// defaultPoolSize is the least number of connections a replica opens at most, unless the
// URL sets pool_max_conns.
const defaultPoolSize = 16

// A transaction whose replica stops talking to the database in its middle (a process
// frozen, a host cut off) keeps its locks until its connection ends: the rows of the
// session and the item it wrote, an environment's row, a claim's lock. Every claim, ack
// or stop that needs one of them waits as long, and TCP may take hours to notice a host
// that is gone. None of berth's transactions waits for berth for long, so each
// connection sets idle_in_transaction_session_timeout: PostgreSQL ends a transaction
// that has waited idleTxTimeout for its client, and its locks go with it (the replica,
// if it comes back, finds its transaction ended and answers with an error; nothing it
// had not committed is kept). A URL that sets the parameter itself keeps its own value.
const (
	idleTxParam   = "idle_in_transaction_session_timeout"
	idleTxTimeout = "30s"
)

// migrationLock is the advisory lock key that serialises migrations, so that replicas
// starting at the same moment apply each migration once.
const migrationLock = 0x62657274 // "bert"

// workChannel is the NOTIFY channel of new deliverable work; the payload is
// "<environment ID> <replica ID>".
const workChannel = "berth_work"

// eventsChannel is the NOTIFY channel of new events of a session (and of its deletion);
// the payload is "<session_id> <replica>".
const eventsChannel = "berth_events"

// cacheChannel is the NOTIFY channel of writes to tokens and environments; the payload
// is the replica's ID.
const cacheChannel = "berth_cache"

// cacheMaxAge bounds how long a replica trusts a token or environment it read, for when
// the notice of another replica's write is late or lost.
const cacheMaxAge = time.Second

// dialect is PostgreSQL's SQL: numbered placeholders and row locks.
var dialect = &sqlrows.Dialect{
	Numbered: true,
	Lock:     " FOR UPDATE",
	LockOf:   func(table string) string { return " FOR UPDATE OF " + table },
	// No index holds state, so it reads every row of work (EXPLAIN: a parallel sequential
	// scan under a hash aggregate; 200,000 items take about 50 ms). One statement at READ
	// COMMITTED reads one snapshot, so the counts are consistent while replicas write.
	CountWork: `SELECT environment_id, state, count(*) FROM work GROUP BY environment_id, state`,
}

// Store is the PostgreSQL store: the storage contract over this package's driver.
type Store struct {
	*store.DB
	d *driver
}

// driver is PostgreSQL's store.Driver.
type driver struct {
	sqlrows.Ops // reads on the pool

	pool    *pgxpool.Pool
	inserts *sqlrows.Group[*tx]
	pollers *pollers
	notices *notifier
	cache   *sqlrows.ReadCache
	// replica names this process in notifications, so that it can skip its own.
	replica string
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Notifier      = (*Store)(nil)
	_ store.EventNotifier = (*Store)(nil)
	_ store.CacheListener = (*Store)(nil)
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
	if _, set := cfg.ConnConfig.RuntimeParams[idleTxParam]; !set {
		// Set once connected rather than as a startup parameter, which connection
		// poolers such as PgBouncer refuse unless told to ignore it.
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET "+idleTxParam+" = '"+idleTxTimeout+"'")
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	d := &driver{pool: pool, replica: strings.TrimPrefix(id.New("r"), "r_")}
	d.Ops = sqlrows.Ops{C: poolConn{pool}, D: dialect}
	s := &Store{DB: store.New(d), d: d}
	if err := s.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	d.inserts = sqlrows.NewGroup(d.beginInserts, sqlrows.GroupHooks{})
	d.pollers = newPollers(d)
	d.notices = newNotifier(pool.Config().ConnConfig)
	d.cache = sqlrows.NewReadCache(cacheMaxAge)
	d.cache.Disable() // until ListenCache listens
	return s, nil
}

// Migrate applies the embedded migrations that the database lacks, each in its own
// transaction under an advisory lock, recording them in schema_migrations.
func (s *Store) Migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.d.pool, func(tx pgx.Tx) error {
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
		pending, err := sqlrows.Pending(migrations, "migrations/*.sql", current)
		if err != nil {
			return err
		}
		for _, m := range pending {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.Version); err != nil {
				return err
			}
		}
		return nil
	})
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.d.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// Ping implements store.Driver.
func (d *driver) Ping(ctx context.Context) error { return d.pool.Ping(ctx) }

// Close implements store.Driver: the Inserts already queued run, the pollers are written
// out, the notices sent, and the pool closes.
func (d *driver) Close() error {
	if d.inserts != nil {
		d.inserts.Close()
	}
	if d.pollers != nil {
		d.pollers.close()
	}
	if d.notices != nil {
		d.notices.close()
	}
	d.pool.Close()
	return nil
}

// ListenWork implements store.Notifier.
func (s *Store) ListenWork(ctx context.Context, fn func(environmentID string), resync func()) error {
	return s.d.listenTo(ctx, workChannel, fn, resync, nil)
}

// ListenEvents implements store.EventNotifier.
func (s *Store) ListenEvents(ctx context.Context, fn func(sessionID string), resync func()) error {
	return s.d.listenTo(ctx, eventsChannel, fn, resync, nil)
}

// ListenCache implements store.CacheListener: the cache is used from the moment LISTEN
// takes effect until the connection is lost (and again once it is back) or ctx ends.
func (s *Store) ListenCache(ctx context.Context) error {
	c := s.d.cache
	defer c.Disable()
	return s.d.listenTo(ctx, cacheChannel, func(string) { c.Invalidate() }, c.Enable, c.Disable)
}

// listenTo holds one connection LISTENing on channel and calls fn with the first word of
// every notification from another replica, until ctx ends. A lost connection is
// re-established after a second; resync is called each time LISTEN has taken effect,
// since notices sent meanwhile were lost, and lost (if not nil) each time the connection
// has ended.
func (d *driver) listenTo(ctx context.Context, channel string, fn func(string), resync, lost func()) error {
	for ctx.Err() == nil {
		err := d.listen(ctx, channel, fn, resync)
		if lost != nil {
			lost()
		}
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
func (d *driver) listen(ctx context.Context, channel string, fn func(string), resync func()) error {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	resync()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		key, replica, _ := strings.Cut(n.Payload, " ")
		if replica != d.replica {
			fn(key)
		}
	}
}

// Environment implements store.Reads, through the read cache.
func (d *driver) Environment(ctx context.Context, id string) (store.Environment, error) {
	return d.cache.Environment(ctx, id, d.Ops.Environment)
}

// TokenUsed implements store.TokenUser.
func (d *driver) TokenUsed(id string, at time.Time) { d.cache.TokenUsed(id, at) }

// TokenByHash implements store.Reads, through the read cache; unknown hashes are looked
// up every time.
func (d *driver) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	return d.cache.TokenByHash(ctx, hash, d.Ops.TokenByHash)
}
