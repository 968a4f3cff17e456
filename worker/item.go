package worker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/berth-sh/berth/client"
)

// callTimeout bounds the acknowledgement and the stop calls, which have no lease to race.
const callTimeout = 30 * time.Second

// stateCheckTimeout bounds one read of an item's state: the next read comes anyway.
const stateCheckTimeout = 5 * time.Second

// item is one work item this worker runs.
type item struct {
	w      *Worker
	job    Job
	log    *slog.Logger
	env    string
	id     string
	ctx    context.Context // the handler's; cancelled with a cause
	cancel context.CancelCauseFunc
	kill   chan struct{} // Job.Kill: closed once, by end, when the work must end at once
	killed sync.Once

	mu          sync.Mutex
	last        string        // last_heartbeat to echo next ("" before the first)
	ttl         time.Duration // lease granted by the last heartbeat
	leaseUntil  time.Time     // when the lease ends unless extended, by this worker's clock
	stopAsked   bool
	leaseLost   bool
	failing     bool // the last heartbeat failed
	handlerDone chan struct{}
}

func (w *Worker) newItem(job Job) *item {
	ctx, cancel := context.WithCancelCause(context.Background())
	kill := make(chan struct{})
	job.Kill = kill
	it := &item{
		w: w, job: job, env: job.Work.EnvironmentID, id: job.Work.ID,
		log: w.log.With("work_id", job.Work.ID), ctx: ctx, cancel: cancel, kill: kill,
		handlerDone: make(chan struct{}),
	}
	w.mu.Lock()
	w.running[it.id] = it
	w.mu.Unlock()
	w.cfg.Metrics.started()
	return it
}

// run takes the item from delivery to stopped (or abandoned).
func (it *item) run() {
	defer func() {
		it.cancel(nil)
		it.w.mu.Lock()
		delete(it.w.running, it.id)
		it.w.mu.Unlock()
		it.w.cfg.Metrics.finished()
	}()
	c := it.w.cfg.Client
	if it.env == "" {
		it.env = it.w.cfg.EnvironmentID
	}
	// A lease starts with the acknowledgement (the server's default TTL); count from just
	// before the request, to stay on the safe side of the server's clock.
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	_, err := c.AckWork(ctx, it.env, it.id, client.AckParams{WorkerID: it.w.cfg.WorkerID})
	cancel()
	if err != nil {
		// Not ours (409: another worker acknowledged it), or unreachable: either way the
		// server hands an unacknowledged item to a worker again after its reclaim window.
		it.log.Warn("acknowledge failed; leaving the item", "err", err)
		it.w.cfg.Metrics.outcome("abandoned")
		return
	}
	it.leaseUntil = sent.Add(60 * time.Second)
	it.log.Info("acknowledged")

	if !it.heartbeat() && it.isLost() {
		it.w.cfg.Metrics.outcome("lost")
		return
	}

	exitCode := -1
	var herr error
	if it.stopRequested() || it.ctx.Err() != nil {
		it.log.Info("stop asked for before the work started; not running it")
		close(it.handlerDone)
	} else {
		beating, watching := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(beating)
			it.heartbeatLoop()
		}()
		go func() {
			defer close(watching)
			it.watchLoop()
		}()
		exitCode, herr = it.w.cfg.Handler.Handle(it.ctx, it.job)
		close(it.handlerDone)
		// Wait for a heartbeat that is on its way: its answer may be that the lease is
		// lost (412: another worker holds the item now), and then the item must be left
		// alone. Deciding before it arrives would record an exit code on, and stop, the
		// other worker's run. The wait is bounded by the heartbeat's own timeout. A state
		// read on its way is abandoned: the heartbeat decides.
		<-beating
		<-watching
		if herr != nil {
			it.log.Error("handler failed", "err", herr)
			exitCode = -1
		}
		it.log.Info("handler finished", "exit_code", exitCode)
	}
	if it.isLost() {
		it.log.Warn("lease lost; abandoning the item without stopping it")
		it.w.cfg.Metrics.outcome("lost")
		return
	}
	it.finish(exitCode)
}

// finish records the exit code and stops the item: a graceful request, then the
// confirmation (one call when the item is already stopping), or force=true when the
// worker was forced.
func (it *item) finish(exitCode int) {
	c := it.w.cfg.Client
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	recorded := true
	if _, err := c.UpdateWork(ctx, it.env, it.id, client.UpdateWorkParams{
		Metadata: map[string]*string{"exit_code": client.String(strconv.Itoa(exitCode))},
	}); err != nil {
		// The item is still stopped below: it must neither run again nor hold its slot.
		// Its outcome is then only here, so say so where it will be seen.
		recorded = false
		it.log.Error("could not record the exit code in the item's metadata: the item will be stopped without it",
			"exit_code", exitCode, "err", err)
		it.w.cfg.Metrics.exitCodeNotRecorded()
	}
	force := it.w.isForced()
	for range 2 {
		wk, err := c.StopWork(ctx, it.env, it.id, force)
		if err != nil {
			it.log.Error("stop failed", "exit_code", exitCode, "err", err)
			it.w.cfg.Metrics.outcome("failed")
			return
		}
		if wk.State == client.StateStopped {
			it.log.Info("stopped", "exit_code", exitCode, "exit_code_recorded", recorded)
			it.w.cfg.Metrics.outcome("completed")
			return
		}
	}
	it.log.Error("item did not reach stopped after two stop calls")
	it.w.cfg.Metrics.outcome("failed")
}

// heartbeatLoop heartbeats until the handler is done.
func (it *item) heartbeatLoop() {
	for {
		wait := it.interval()
		if it.lastFailed() {
			wait = min(wait, time.Second) // retry sooner while the lease lasts
		}
		t := time.NewTimer(wait)
		select {
		case <-it.handlerDone:
			t.Stop()
			return
		case <-t.C:
		}
		if !it.heartbeat() && it.isLost() {
			return
		}
	}
}

// interval is a third of the lease, or the configured override.
func (it *item) interval() time.Duration {
	if it.w.cfg.HeartbeatInterval > 0 {
		return it.w.cfg.HeartbeatInterval
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.ttl == 0 {
		return time.Duration(it.w.cfg.TTL) * time.Second / 3
	}
	return it.ttl / 3
}

// heartbeat sends one heartbeat and reports whether it succeeded. It marks the lease lost
// (and kills the handler) on 409 or 412, or when it fails and no heartbeat has succeeded
// for the whole lease; it cancels the handler with ErrStopRequested on "stopping".
func (it *item) heartbeat() bool {
	it.mu.Lock()
	expect := it.last
	leaseUntil := it.leaseUntil
	it.mu.Unlock()
	if expect == "" {
		expect = client.NoHeartbeat
	}
	// Give up a second before the lease could lapse, so that an answer never arrives for
	// a lease this worker no longer holds.
	timeout := time.Until(leaseUntil) - time.Second
	if timeout <= 0 {
		it.loseLease(errors.New("no heartbeat succeeded for a whole lease"))
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sent := time.Now()
	hb, err := it.w.cfg.Client.HeartbeatWork(ctx, it.env, it.id, client.HeartbeatParams{
		ExpectedLastHeartbeat: expect, DesiredTTLSeconds: it.w.cfg.TTL,
	})
	if err != nil {
		if client.IsConflict(err) || client.IsPreconditionFailed(err) || client.IsNotFound(err) {
			it.loseLease(err)
			return false
		}
		it.w.cfg.Metrics.heartbeatError()
		it.markFailed(true)
		if time.Until(leaseUntil) <= time.Second {
			it.loseLease(err)
		} else {
			it.log.Warn("heartbeat failed; retrying while the lease lasts", "err", err, "lease_left", time.Until(leaseUntil).Round(time.Millisecond))
		}
		return false
	}
	it.markFailed(false)
	it.mu.Lock()
	it.last = hb.LastHeartbeat
	it.ttl = time.Duration(hb.TTLSeconds) * time.Second
	it.leaseUntil = sent.Add(it.ttl)
	it.mu.Unlock()
	if hb.State == client.StateStopping {
		it.requestStop("heartbeat")
	}
	return true
}

// requestStop cancels the handler with ErrStopRequested, once: the server says the item
// is stopping (an operator asked). seen names the answer that said so.
func (it *item) requestStop(seen string) {
	it.mu.Lock()
	first := !it.stopAsked
	it.stopAsked = true
	it.mu.Unlock()
	if first {
		it.log.Info("stop requested by the server; draining", "seen_by", seen)
		it.cancel(ErrStopRequested)
	}
}

// watchLoop reads the item's state (GET …/work/{id}) about every StateCheckInterval until
// the handler is done, so that a stop reaches the handler within about a second instead
// of at the next heartbeat, up to a third of the lease later. A read is the cheapest call
// that can tell (one indexed row, no write), and the standard API's, so any compatible
// service will do. Each wait is drawn within ±20% of the interval: items started together
// do not read in step. "stopping" stops the handler gracefully; "stopped" (forced, or
// the lease expired) or 404 (deleted) means the lease is gone, as a heartbeat's 409 does.
// Failed reads are let go: the heartbeats look after the lease.
func (it *item) watchLoop() {
	interval := it.w.cfg.StateCheckInterval
	if interval < 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-it.handlerDone
		cancel()
	}()
	for {
		t := time.NewTimer(jittered(interval))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, stateCheckTimeout)
		wk, err := it.w.cfg.Client.GetWork(rctx, it.env, it.id)
		rcancel()
		switch {
		case ctx.Err() != nil:
			return
		case client.IsNotFound(err):
			it.loseLease(err)
			return
		case err != nil:
			it.log.Debug("state check failed", "err", err)
		case wk.State == client.StateStopped:
			it.loseLease(errors.New("the item is stopped: stopped by force, or its lease expired"))
			return
		case wk.State == client.StateStopping:
			it.requestStop("state check")
		}
	}
}

// jittered returns d less or more up to a fifth of it, at random.
func jittered(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}

func (it *item) loseLease(err error) {
	it.mu.Lock()
	it.leaseLost = true
	it.mu.Unlock()
	it.log.Warn("lease lost", "err", err)
	it.end(ErrLeaseLost)
}

// end cancels the handler with cause. When the work must end at once (forced, lease
// lost) it also closes Job.Kill, which reaches a handler that is already winding down
// after an earlier, gentler cancellation (whose cause the context keeps): without it, a
// second signal or a lost lease during a child's kill grace would wait out the grace.
func (it *item) end(cause error) {
	it.cancel(cause)
	if errors.Is(cause, ErrForced) || errors.Is(cause, ErrLeaseLost) {
		it.killed.Do(func() { close(it.kill) })
	}
}

func (it *item) isLost() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.leaseLost
}

func (it *item) stopRequested() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.stopAsked
}

// markFailed records whether the last heartbeat failed.
func (it *item) markFailed(failed bool) {
	it.mu.Lock()
	it.failing = failed
	it.mu.Unlock()
}

func (it *item) lastFailed() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.failing
}
