package sqlrows

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Group commit.
//
// With a durable commit (SQLite at synchronous=FULL, PostgreSQL with fsync) every commit
// waits for the disk, and one flush costs far more than the writes it protects:
// committing each write on its own would cap a store at one write per flush. A Group
// takes every write transaction that is waiting when it starts a batch, runs each in a
// savepoint of one database transaction, and commits them together. Each caller is
// answered only after that commit, so an answered write is as durable as before; a
// function that fails is rolled back to its savepoint alone, and the others commit.
//
// SQLite runs every write through one Group, on its one writer connection. PostgreSQL
// runs through one only the transactions that make IDs, which take turns on one sequence
// row across replicas (see store.Driver.Insert): there a Group makes one turn serve many,
// and a function's writes travel with the next one's first statement, so that a
// database error in that round trip fails the whole batch (postgres idBatch.Run).

// MaxBatch bounds one batch: a batch holds its connection for the time of all of its
// functions, and past a few hundred the flush is no longer what dominates.
const MaxBatch = 256

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("store closed")

// BatchTx is one database transaction of a Group.
type BatchTx[T any] interface {
	// Run runs fn in a savepoint of the transaction: fn's writes are undone if it fails
	// (or panics), and the transaction stays usable for the next function.
	Run(ctx context.Context, fn func(T) error) error
	// Commit commits every function's writes that were not undone.
	Commit(ctx context.Context) error
	// Rollback abandons the transaction.
	Rollback(ctx context.Context)
}

// Group runs the write functions given to Do in batches. Create it with NewGroup.
type Group[T any] struct {
	begin func(ctx context.Context) (BatchTx[T], error)
	hooks GroupHooks

	writes  chan request[T]
	closing chan struct{}
	done    chan struct{}
}

// GroupHooks are what a driver adds to a Group's loop. Each may be nil.
type GroupHooks struct {
	// Committed runs after each batch's commit, before any caller is answered, with the
	// batch's size and how long it took from its begin.
	Committed func(n int, d time.Duration)
	// Idle runs every IdleEvery while no write comes, and after each batch.
	Idle      func()
	IdleEvery time.Duration
}

type request[T any] struct {
	ctx  context.Context
	fn   func(T) error
	done chan error
}

// NewGroup starts a group's loop: begin opens each batch's transaction.
func NewGroup[T any](begin func(ctx context.Context) (BatchTx[T], error), hooks GroupHooks) *Group[T] {
	g := &Group[T]{begin: begin, hooks: hooks, writes: make(chan request[T]),
		closing: make(chan struct{}), done: make(chan struct{})}
	go g.loop()
	return g
}

// Do runs fn in the next batch and returns once the batch is committed (nil) or fn
// failed (fn's error, unchanged). The caller's cancellation is not passed on once fn is
// queued: a write that was accepted is carried through, or undone as a whole by its own
// error, never cut off half-way.
func (g *Group[T]) Do(ctx context.Context, fn func(T) error) error {
	r := request[T]{ctx: context.WithoutCancel(ctx), fn: fn, done: make(chan error, 1)}
	select {
	case g.writes <- r:
	case <-g.closing:
		return ErrClosed
	}
	return <-r.done
}

// Close runs the writes already queued and stops the loop.
func (g *Group[T]) Close() {
	select {
	case <-g.closing:
	default:
		close(g.closing)
	}
	<-g.done
}

func (g *Group[T]) loop() {
	defer close(g.done)
	var idle <-chan time.Time
	if g.hooks.Idle != nil && g.hooks.IdleEvery > 0 {
		t := time.NewTicker(g.hooks.IdleEvery)
		defer t.Stop()
		idle = t.C
	}
	for {
		var first request[T]
		select {
		case <-idle:
			g.hooks.Idle()
			continue
		case first = <-g.writes:
		case <-g.closing:
			// Serve what was queued before Close, then stop.
			for {
				select {
				case r := <-g.writes:
					g.commit([]request[T]{r})
				default:
					return
				}
			}
		}
		batch := []request[T]{first}
	gather:
		for len(batch) < MaxBatch {
			select {
			case r := <-g.writes:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		g.commit(batch)
		if g.hooks.Idle != nil {
			g.hooks.Idle()
		}
	}
}

// commit runs a batch in one transaction and answers every request.
func (g *Group[T]) commit(batch []request[T]) {
	start := time.Now()
	ctx := context.Background()
	errs := make([]error, len(batch))
	tx, err := g.begin(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	} else {
		fns := make([]func(T) error, len(batch))
		ctxs := make([]context.Context, len(batch))
		for i, r := range batch {
			fns[i], ctxs[i] = r.fn, r.ctx
		}
		errs = RunBatch(ctx, tx, ctxs, fns)
	}
	if g.hooks.Committed != nil {
		g.hooks.Committed(len(batch), time.Since(start))
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// RunBatch runs fns in tx, each in its savepoint (with its own context, when ctxs has
// one), commits, and returns each function's outcome: its own error, or the commit's.
func RunBatch[T any](ctx context.Context, tx BatchTx[T], ctxs []context.Context, fns []func(T) error) []error {
	errs := make([]error, len(fns))
	for i, fn := range fns {
		c := ctx
		if i < len(ctxs) && ctxs[i] != nil {
			c = ctxs[i]
		}
		errs[i] = runSafely(c, tx, fn)
	}
	if err := tx.Commit(ctx); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("commit: %w", err)
			}
		}
	}
	return errs
}

// runSafely runs fn in its savepoint, turning a panic into an error of fn's.
func runSafely[T any](ctx context.Context, tx BatchTx[T], fn func(T) error) error {
	return tx.Run(ctx, func(t T) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("write panicked: %v", p)
			}
		}()
		return fn(t)
	})
}
