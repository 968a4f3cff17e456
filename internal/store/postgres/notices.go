package postgres

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Notices.
//
// Replicas tell each other of new work, new events and writes to cached tables with
// NOTIFY. PostgreSQL makes every transaction that notifies take one lock of the whole
// database from its commit's start to its end, WAL flush included, so that notices
// queue in commit order. Sent inside the transactions that they announce, they made
// every notifying commit (a create, an ack, the stop that ends a lease) wait for the one
// before it to reach the disk, one flush each, where concurrent commits otherwise share
// flushes. So a transaction collects its notices (txConn.notify) and hands them, once it
// has committed, to the replica's notifier, which sends whatever has gathered in one
// statement on a connection of its own whose commits do not wait for their WAL flush
// (synchronous_commit off: a notice is a hint, not data). A listener still hears of a
// write only after it has committed.
//
// The cost: a replica that dies between a commit and its notices leaves the others
// unwarned. What they then miss is bounded as when a notice is late: an empty poll asks
// the store again within a second (internal/wait), and a cached token or environment is
// trusted for cacheMaxAge at most.

// notice is one NOTIFY.
type notice struct{ channel, payload string }

// sendNotices sends the notices of one batch.
const sendNotices = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)"

// notifier sends the notices of committed transactions, in batches, on a connection of
// its own.
type notifier struct {
	cfg *pgx.ConnConfig

	mu      sync.Mutex
	pending []notice
	closed  bool

	wake chan struct{}
	done chan struct{}
}

func newNotifier(cfg *pgx.ConnConfig) *notifier {
	n := &notifier{cfg: cfg.Copy(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go n.loop()
	return n
}

// send queues notices to go as soon as the connection is free.
func (n *notifier) send(ns []notice) {
	if len(ns) == 0 {
		return
	}
	n.mu.Lock()
	if !n.closed {
		n.pending = append(n.pending, ns...)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// close sends what is queued and stops.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}

func (n *notifier) loop() {
	defer close(n.done)
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	for range n.wake {
		n.mu.Lock()
		batch, closed := n.pending, n.closed
		n.pending = nil
		n.mu.Unlock()
		if len(batch) > 0 {
			conn = n.flush(ctx, conn, batch)
		}
		if closed {
			return
		}
	}
}

// flush sends batch, connecting first if need be, and returns the connection to use next
// (nil after a failure: the next batch connects again). A batch that fails is dropped:
// see the cost above.
func (n *notifier) flush(ctx context.Context, conn *pgx.Conn, batch []notice) *pgx.Conn {
	channels, payloads := make([]string, 0, len(batch)), make([]string, 0, len(batch))
	seen := make(map[notice]bool, len(batch))
	for _, x := range batch {
		if !seen[x] {
			seen[x] = true
			channels, payloads = append(channels, x.channel), append(payloads, x.payload)
		}
	}
	if conn == nil {
		c, err := pgx.ConnectConfig(ctx, n.cfg)
		if err != nil {
			return nil
		}
		// Set once connected, not as a startup parameter: connection poolers such as
		// PgBouncer refuse startup parameters they do not know.
		if _, err := c.Exec(ctx, "SET synchronous_commit = off"); err != nil {
			c.Close(ctx)
			return nil
		}
		conn = c
	}
	if _, err := conn.Exec(ctx, sendNotices, channels, payloads); err != nil {
		conn.Close(ctx)
		return nil
	}
	return conn
}
