package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Group commit.
//
// With synchronous=FULL every commit waits for an fsync, and one fsync costs far more
// than the writes it protects: committing each request on its own would cap the store at
// one request per fsync. So the single writer takes every write transaction that is
// waiting when it starts a batch, runs each in a SAVEPOINT of one SQLite transaction, and
// commits them together with one fsync. Each caller is answered only after that commit, so
// an answered write is as durable as before; a function that fails is rolled back to its
// savepoint alone, and the others commit.

// maxBatch bounds one group: a batch holds the writer for the time of all of its
// functions, and past a few hundred the fsync is no longer what dominates.
const maxBatch = 256

// externalCheck is how often an idle writer looks for commits by other processes, which
// invalidate the read cache (cache.go). A busy writer looks after every batch.
const externalCheck = 50 * time.Millisecond

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("sqlite: store closed")

type writeRequest struct {
	fn   func(*wtx) error
	done chan error
}

// tx runs fn in a write transaction and returns once its effect is durable (or fn failed).
// The caller's cancellation is not passed on: once a write is accepted it is carried
// through, or rolled back as a whole by an error, never cut off half-way.
func (s *Store) tx(ctx context.Context, fn func(*wtx) error) error {
	req := writeRequest{fn: fn, done: make(chan error, 1)}
	select {
	case s.writes <- req:
	case <-s.closing:
		return ErrClosed
	}
	return <-req.done
}

// writer is the one goroutine that writes. It ends when Close closes s.closing and the
// queue is empty.
func (s *Store) writer() {
	defer close(s.writerDone)
	idle := time.NewTicker(externalCheck)
	defer idle.Stop()
	for {
		var first writeRequest
		select {
		case <-idle.C:
			s.checkExternal(context.Background())
			continue
		case first = <-s.writes:
		case <-s.closing:
			// Serve what was queued before Close, then stop.
			for {
				select {
				case r := <-s.writes:
					s.commit([]writeRequest{r})
				default:
					return
				}
			}
		}
		batch := []writeRequest{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.commit(batch)
	}
}

// commit runs a batch in one transaction and answers every request.
func (s *Store) commit(batch []writeRequest) {
	start := time.Now()
	ctx := context.Background()
	errs := make([]error, len(batch))
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	tx := &wtx{tx: sqlTx, c: s.wc}
	for i, r := range batch {
		errs[i] = runInSavepoint(ctx, tx, r.fn)
	}
	if err := sqlTx.Commit(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("commit: %w", err)
			}
		}
	}
	if tx.cached {
		// Before any caller learns of the write, so that nothing read after its answer
		// comes from the cache.
		s.cache.invalidate()
	}
	// Also before the answers, so that a caller who reads the metrics next finds its
	// commit there.
	s.metrics.Load().observe(len(batch), time.Since(start))
	for i, r := range batch {
		r.done <- errs[i]
	}
	s.wc.prepareLater(ctx)
	s.checkExternal(ctx)
}

// runInSavepoint runs fn so that its failure (or panic) undoes its own writes only.
//
// The savepoint is opened by tx just before fn's first write, so a function that fails
// before writing (a refused transition, a 412) costs none. It is released as soon as fn
// ends: leaving savepoints open until the batch's COMMIT looks cheaper but is not, since
// SQLite then journals a page again for every open savepoint (46 against 32 µs of CPU per
// heartbeat in BenchmarkConcurrentHeartbeats).
func runInSavepoint(ctx context.Context, tx *wtx, fn func(*wtx) error) (err error) {
	tx.saved = false
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked: %v", p)
		}
		if !tx.saved {
			return
		}
		if err != nil {
			if rerr := tx.exec(ctx, "ROLLBACK TO w"); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if rerr := tx.exec(ctx, "RELEASE w"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	return fn(tx)
}
