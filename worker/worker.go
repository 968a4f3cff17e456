// Package worker runs work items from a berth (or any compatible) work queue: it polls
// while it has capacity, acknowledges each item at once, holds its lease with heartbeats,
// runs a Handler for it, and stops it when the handler is done, honouring operators' stop
// requests, a graceful drain on shutdown, and a forced stop.
//
// The rules it keeps, because a worker that breaks them loses or duplicates work:
//   - It never polls for more items than it has free capacity for.
//   - It acknowledges and heartbeats (NO_HEARTBEAT) at once, then heartbeats every third
//     of the lease, echoing the last_heartbeat it was given; each heartbeat request gives
//     up before the lease could lapse, so that a slow request cannot make it act on a lease
//     it no longer holds.
//   - A heartbeat answered 409 or 412, or no successful heartbeat for a whole lease, means
//     the lease is lost: another worker may hold the item now. The handler is killed at
//     once and the item is abandoned WITHOUT calling stop, which would stop the other
//     worker's run.
//   - When the handler returns, its exit code is recorded in the item's metadata
//     (exit_code) and the item is stopped: a graceful request, then the confirmation.
//   - A heartbeat answering "stopping" (an operator asked) ends the handler gracefully and
//     confirms the stop. Between heartbeats, each running item reads its state about once
//     a second, so that a stop reaches the handler within about a second: "stopping" ends
//     it gracefully, "stopped" (forced) as a lost lease does.
//
// One file per loop: worker.go (the worker and its drain), poll.go (the poll loop),
// item.go (one item: ack, heartbeats, handler, stop).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/berth-sh/berth/client"
)

// Causes with which an item's handler context is cancelled. Handlers tell them apart
// with context.Cause.
var (
	// ErrStopRequested: an operator asked for the item to stop (a heartbeat or a state
	// read said stopping).
	ErrStopRequested = errors.New("stop requested")
	// ErrDrainTimeout: the worker is shutting down and the drain timeout passed.
	ErrDrainTimeout = errors.New("drain timeout")
	// ErrLeaseLost: the lease is gone; another worker may run the item now.
	ErrLeaseLost = errors.New("lease lost")
	// ErrForced: the worker was told to stop everything at once.
	ErrForced = errors.New("forced stop")
)

// Job is one work item handed to a Handler.
type Job struct {
	Work *client.Work
	// Raw is the work item's JSON, as the server sent it.
	Raw []byte
	// WorkerID is the worker's Worker-ID.
	WorkerID string
	// Client is the worker's client, for handlers that call the API themselves (follow
	// the session's events, post events back).
	Client *client.Client
	// Kill is closed when the work must end at once (the worker was forced, or the lease
	// was lost), also when ctx had already been cancelled for a gentler reason (a stop
	// request, the drain timeout) and the handler is still giving its work a grace
	// period: a context's cause is set once, so ctx alone cannot say this. Handlers that
	// wait after ctx ends should cut the wait short when Kill closes. Exec does.
	Kill <-chan struct{}
}

// Handler runs one work item. It returns when the work is done, or soon after ctx is
// cancelled (context.Cause tells why: ErrStopRequested, ErrDrainTimeout, ErrLeaseLost,
// ErrForced). exitCode is recorded in the item's metadata; err reports that the work
// could not be run at all (recorded as exit code -1).
type Handler interface {
	Handle(ctx context.Context, job Job) (exitCode int, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job Job) (int, error)

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, job Job) (int, error) { return f(ctx, job) }

// Config configures a Worker.
type Config struct {
	Client        *client.Client
	EnvironmentID string
	// WorkerID names this worker to the server (Worker-ID); it should be stable across
	// restarts of the same worker and unique among workers.
	WorkerID string
	// Capacity is how many items run at once (default 1).
	Capacity int
	// TTL is the lease asked for with each heartbeat, in seconds (default 60; the server
	// clamps it to [10, 600]).
	TTL int
	// HeartbeatInterval overrides the heartbeat period (default a third of the lease the
	// server granted). Shorter is safe; longer than the lease is not.
	HeartbeatInterval time.Duration
	// StateCheckInterval is how often each running item reads its state (GET
	// …/work/{id}) to learn of a stop between heartbeats (default 1 s; each wait is drawn
	// within ±20% of it). Negative turns the reads off: a stop then waits for the next
	// heartbeat, up to a third of the lease.
	StateCheckInterval time.Duration
	// DrainTimeout is how long running items may go on after Run's context ends before
	// they are stopped (default 30 s).
	DrainTimeout time.Duration
	Handler      Handler
	Logger       *slog.Logger
	// Metrics, when not nil, receives the worker's metrics.
	Metrics *Metrics
	// BackoffMin and BackoffMax bound the wait after a failed poll (defaults 1 s and 60 s).
	BackoffMin, BackoffMax time.Duration
	// ExitWhenIdle makes Run return once there is nothing to do: the first poll that
	// answers null while no item is running ends the poll loop, and Run returns nil as
	// after a drain. While items run, the worker polls on as usual (when it has free
	// capacity), so a worker started for a queue (a Kubernetes Job, a function) takes
	// work until the queue is empty and its own items are done. A failed poll is retried
	// as usual and never counts as idle.
	ExitWhenIdle bool
}

// Worker runs items. Create it with New, run it with Run.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[string]*item
	forced  bool
	// stopPolling ends the poll loop of a Run under way; Force calls it, so that a forced
	// worker takes no new item and Run returns once the running ones are done.
	stopPolling context.CancelFunc
	items       sync.WaitGroup
}

// New checks cfg and returns a worker.
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("worker: a client is required")
	case cfg.EnvironmentID == "":
		return nil, errors.New("worker: an environment ID is required")
	case cfg.WorkerID == "":
		return nil, errors.New("worker: a worker ID is required")
	case cfg.Handler == nil:
		return nil, errors.New("worker: a handler is required")
	case cfg.Capacity < 0 || cfg.TTL < 0 || cfg.DrainTimeout < 0:
		return nil, errors.New("worker: capacity, TTL and drain timeout must not be negative")
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 1
	}
	if cfg.TTL == 0 {
		cfg.TTL = 60
	}
	if cfg.StateCheckInterval == 0 {
		cfg.StateCheckInterval = time.Second
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg, log: cfg.Logger.With("worker_id", cfg.WorkerID), running: map[string]*item{}}, nil
}

// Run polls and runs items until ctx ends, then drains: it stops polling, lets running
// items finish for up to DrainTimeout, stops those still running (their handlers get
// ErrDrainTimeout, then their items are stopped as usual) and returns nil. It returns an
// error at once, after stopping running items, when the server refuses the worker's
// credentials or environment (401, 403, 404 on poll).
func (w *Worker) Run(ctx context.Context) error {
	w.log.Info("worker started", "environment_id", w.cfg.EnvironmentID, "capacity", w.cfg.Capacity, "ttl", w.cfg.TTL)
	ctx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	w.mu.Lock()
	w.stopPolling = stopPolling
	if w.forced {
		stopPolling()
	}
	w.mu.Unlock()
	err := w.pollLoop(ctx)
	if err != nil {
		w.log.Error("worker cannot go on", "err", err)
	} else {
		w.log.Info("draining", "running", w.Running(), "drain_timeout", w.cfg.DrainTimeout)
	}
	done := make(chan struct{})
	go func() { w.items.Wait(); close(done) }()
	timeout := w.cfg.DrainTimeout
	if err != nil {
		timeout = 0
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.stopAll(ErrDrainTimeout)
		<-done
	}
	w.log.Info("worker stopped")
	return err
}

// Force stops every running item at once: handlers are cancelled with ErrForced and the
// items are stopped with force=true. Run then returns as soon as they are done. Safe to
// call at any time, more than once.
func (w *Worker) Force() {
	w.mu.Lock()
	w.forced = true
	// Without this, a Force before Run's context ended would leave the poll loop taking
	// new items, and Run would not return as promised.
	if w.stopPolling != nil {
		w.stopPolling()
	}
	w.mu.Unlock()
	w.stopAll(ErrForced)
}

func (w *Worker) stopAll(cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, it := range w.running {
		it.end(cause)
	}
}

// Running returns how many items are running.
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

func (w *Worker) isForced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.forced
}

// fatalPollError reports whether a poll error means the worker cannot go on: its token
// is refused (401), not allowed here (403), the environment does not exist (404) or is not
// self_hosted (400). Retrying any of these would only repeat the answer.
func fatalPollError(err error) bool {
	var e *client.Error
	return client.IsUnauthorized(err) || client.IsForbidden(err) || client.IsNotFound(err) ||
		(errors.As(err, &e) && e.StatusCode == 400)
}

// ErrRefused wraps the poll error that ended a worker.
type ErrRefused struct {
	Err error
	// URL is the client's API base URL, named when the server has no API there.
	URL string
}

// Error says what to check: the URL when the server answered that it has no such route
// (client.IsNoRoute), else the token and the environment. It carries the client error's
// text without its "berth: " prefix, which a caller printing "berth: " + err would
// otherwise double.
func (e *ErrRefused) Error() string {
	cause := strings.TrimPrefix(e.Err.Error(), "berth: ")
	if client.IsNoRoute(e.Err) {
		return fmt.Sprintf("no berth API at %s (check --url or BERTH_URL; a berth server's API is at http://host:port/api/v1/cloud): %s", e.URL, cause)
	}
	return fmt.Sprintf("the server refused this worker (check --token and --environment): %s", cause)
}

func (e *ErrRefused) Unwrap() error { return e.Err }
