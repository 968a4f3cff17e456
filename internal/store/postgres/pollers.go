package postgres

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// Pollers.
//
// workers_polling counts the Worker-IDs that polled an environment on any replica in the
// last 30 s, so they live in the shared pollers table. Writing a row per poll would make
// every poll a database write (an idle fleet of ten thousand workers polls thousands of
// times a second). So a Worker-ID that a replica has not seen yet is written at once, and
// the later polls of the Worker-IDs it knows are kept in memory and written out together
// once a second, one statement for all, and just before the replica counts. A new
// Worker-ID is counted on every replica from its first poll on; what a later poll
// refreshes reaches the others within flushEvery, well inside the 30-second window.

// flushEvery is how often the polls a replica saw are written to the shared table.
const flushEvery = time.Second

type pollers struct {
	d       *driver
	mu      sync.Mutex
	pending map[pollerKey]time.Time
	// written holds the Worker-IDs whose row this replica wrote, and when it last did:
	// a poll of one of them waits for the next flush. Any token can poll with Worker-IDs
	// of its choosing, so it is bounded: entries older than the stats window go at each
	// flush and at each prune (PrunePollers, which the server runs on a schedule of its
	// own, since polls that each bring a new Worker-ID leave nothing to flush), and past
	// maxWritten the oldest go first. Forgetting an entry costs only a write: the next
	// poll of that Worker-ID is written at once.
	written map[pollerKey]time.Time
	stop    chan struct{}
	done    chan struct{}
}

type pollerKey struct{ env, worker string }

// maxWritten bounds the Worker-IDs a replica remembers as written: far more than real
// fleets (a Worker-ID per worker process), few enough to stay a few MiB.
const maxWritten = 100_000

func newPollers(d *driver) *pollers {
	p := &pollers{d: d, pending: map[pollerKey]time.Time{}, written: map[pollerKey]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *pollers) loop() {
	defer close(p.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.flush(context.Background())
			return
		case <-t.C:
			p.flush(context.Background())
		}
	}
}

func (p *pollers) close() {
	close(p.stop)
	<-p.done
}

// flush writes the pending polls in one statement; a failure keeps them for the next.
func (p *pollers) flush(ctx context.Context) error {
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.mu.Unlock()
		return nil
	}
	batch := p.pending
	p.pending = map[pollerKey]time.Time{}
	var newest time.Time
	for _, at := range batch {
		if at.After(newest) {
			newest = at
		}
	}
	p.forgetLocked(newest.Add(-work.PollerWindow))
	p.mu.Unlock()
	return p.write(ctx, batch)
}

// noteLocked notes a poll of k at now, and reports whether k's row was written already,
// in which case the poll waits for the next flush. p.mu must be held.
func (p *pollers) noteLocked(k pollerKey, now time.Time) (known bool) {
	_, known = p.written[k]
	p.written[k] = now
	if known {
		p.pending[k] = now
	} else if len(p.written) > maxWritten {
		// Forget the oldest tenth (at least: ties at the boundary go too).
		all := make([]time.Time, 0, len(p.written))
		for _, at := range p.written {
			all = append(all, at)
		}
		slices.SortFunc(all, time.Time.Compare)
		p.forgetLocked(all[len(all)/10].Add(time.Nanosecond))
	}
	return known
}

// forgetLocked forgets the Worker-IDs written before cutoff. p.mu must be held.
func (p *pollers) forgetLocked(cutoff time.Time) {
	for k, at := range p.written {
		if at.Before(cutoff) {
			delete(p.written, k)
		}
	}
}

// write upserts the polls of batch; a failure keeps them pending for the next flush.
func (p *pollers) write(ctx context.Context, batch map[pollerKey]time.Time) error {
	envs := make([]string, 0, len(batch))
	workers := make([]string, 0, len(batch))
	ats := make([]int64, 0, len(batch))
	for k, at := range batch {
		envs, workers, ats = append(envs, k.env), append(workers, k.worker), append(ats, at.UnixMicro())
	}
	_, err := p.d.pool.Exec(ctx, `INSERT INTO pollers (environment_id, worker_id, last_poll_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
		ON CONFLICT (environment_id, worker_id) DO UPDATE SET last_poll_at = greatest(pollers.last_poll_at, excluded.last_poll_at)`,
		envs, workers, ats)
	if err != nil {
		p.mu.Lock()
		for k, at := range batch {
			if cur, ok := p.pending[k]; !ok || at.After(cur) {
				p.pending[k] = at
			}
		}
		p.mu.Unlock()
	}
	return err
}

// RecordPoll implements store.Driver.
func (d *driver) RecordPoll(ctx context.Context, environmentID, workerID string, now time.Time) error {
	p := d.pollers
	k := pollerKey{environmentID, workerID}
	p.mu.Lock()
	known := p.noteLocked(k, now)
	p.mu.Unlock()
	if known {
		return nil
	}
	return p.write(context.WithoutCancel(ctx), map[pollerKey]time.Time{k: now})
}

// WorkersPolling implements store.Driver: this replica's polls are written out first.
func (d *driver) WorkersPolling(ctx context.Context, environmentID string, since time.Time) (int, error) {
	if err := d.pollers.flush(ctx); err != nil {
		return 0, err
	}
	var n int
	err := d.pool.QueryRow(ctx, "SELECT count(*) FROM pollers WHERE environment_id = $1 AND last_poll_at >= $2",
		environmentID, since.UnixMicro()).Scan(&n)
	return n, err
}

// PrunePollers implements store.Driver.
func (d *driver) PrunePollers(ctx context.Context, cutoff time.Time) error {
	d.pollers.mu.Lock()
	d.pollers.forgetLocked(cutoff)
	d.pollers.mu.Unlock()
	_, err := d.pool.Exec(ctx, `DELETE FROM pollers WHERE last_poll_at < $1
		OR NOT EXISTS (SELECT 1 FROM environments e WHERE e.id = pollers.environment_id)`, cutoff.UnixMicro())
	return err
}
