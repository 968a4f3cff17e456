package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/worker"
)

// Draining (the first SIGTERM/SIGINT ends Run's context): the worker takes no new item,
// lets the running one finish within DrainTimeout, stops it as usual, and Run returns nil.
func TestDrainLetsRunningItemsFinish(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, first := b.session(nil)
	started := make(chan string, 2)
	release := make(chan struct{})
	run := b.start(worker.Config{Capacity: 2, DrainTimeout: time.Minute,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			started <- job.Work.ID
			select {
			case <-release:
				return 0, nil
			case <-ctx.Done():
				return 1, nil
			}
		})})
	if id := <-started; id != first.ID {
		t.Fatalf("started %s", id)
	}
	run.cancel()
	run.log.waitFor(t, `"msg":"draining"`)
	// Polling has stopped: an item queued now stays queued.
	_, second := b.session(nil)
	if run.returned() {
		t.Fatalf("Run returned while an item was running: %v", run.err)
	}
	close(release)
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil after a drain", err)
	}
	w := b.get(first.ID)
	if w.State != client.StateStopped || w.Metadata["exit_code"] != "0" || w.StopRequestedAt == nil {
		t.Errorf("drained item: %s, exit_code %q, stop_requested_at %v", w.State, w.Metadata["exit_code"], w.StopRequestedAt)
	}
	if w := b.get(second.ID); w.State != client.StateQueued || w.AcknowledgedAt != nil {
		t.Errorf("item queued during the drain is %s (acknowledged %v), want queued", w.State, w.AcknowledgedAt)
	}
	select {
	case id := <-started:
		t.Errorf("item %s started during the drain", id)
	default:
	}
}

// Drain timeout: items still running when DrainTimeout has passed are cancelled with
// ErrDrainTimeout, and stopped as usual (exit_code, graceful request, confirmation).
func TestDrainTimeoutStopsItemsGracefully(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	const drain = 300 * time.Millisecond
	started := make(chan struct{})
	seen := make(chan causeOf, 1)
	run := b.start(worker.Config{DrainTimeout: drain,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			close(started)
			seen <- waitCtx(ctx)
			return 143, nil
		})})
	<-started
	cancelled := time.Now()
	run.cancel()
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	got := <-seen
	if !isErr(got.cause, worker.ErrDrainTimeout) || got.at.Sub(cancelled) < drain {
		t.Errorf("handler cancelled with %v %v after the drain began; want ErrDrainTimeout after %v", got.cause, got.at.Sub(cancelled), drain)
	}
	w := b.get(item.ID)
	if w.State != client.StateStopped || w.Metadata["exit_code"] != "143" || w.StopRequestedAt == nil {
		t.Errorf("item: %s, exit_code %q, stop_requested_at %v", w.State, w.Metadata["exit_code"], w.StopRequestedAt)
	}
	stops := b.rec.of(item.ID, "stop")
	if len(stops) != 2 || stops[0].force() || stops[1].force() {
		t.Errorf("stop calls %v, want two graceful ones", stops)
	}
}

// Force (the second signal) during a drain: every running item is cancelled at once with
// ErrForced and stopped with force=true (no graceful request: stop_requested_at stays
// null), and Run returns without waiting for the drain timeout.
func TestForceStopsEveryItemAtOnce(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, i1 := b.session(nil)
	_, i2 := b.session(nil)
	started := make(chan struct{}, 2)
	seen := make(chan causeOf, 2)
	run := b.start(worker.Config{Capacity: 2, DrainTimeout: time.Minute,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			started <- struct{}{}
			seen <- waitCtx(ctx)
			return 137, nil
		})})
	<-started
	<-started
	run.cancel()
	run.log.waitFor(t, `"msg":"draining"`)
	forced := time.Now()
	run.w.Force()
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if d := time.Since(forced); d > 10*time.Second {
		t.Errorf("Run returned %v after Force", d)
	}
	for range 2 {
		if got := <-seen; !isErr(got.cause, worker.ErrForced) {
			t.Errorf("handler cancelled with %v, want ErrForced", got.cause)
		}
	}
	for _, id := range []string{i1.ID, i2.ID} {
		w := b.get(id)
		if w.State != client.StateStopped || w.StopRequestedAt != nil || w.Metadata["exit_code"] != "137" {
			t.Errorf("item %s: %s, stop_requested_at %v, exit_code %q", id, w.State, w.StopRequestedAt, w.Metadata["exit_code"])
		}
		stops := b.rec.of(id, "stop")
		if len(stops) != 1 || !stops[0].force() {
			t.Errorf("item %s: stop calls %v, want one with force=true", id, stops)
		}
	}
}

// Force on its own, without ending Run's context first: as documented, Run returns as
// soon as the running items are done; the worker does not go on polling.
func TestForceAloneEndsRun(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	started := make(chan struct{})
	run := b.start(worker.Config{Capacity: 2, DrainTimeout: time.Minute,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			close(started)
			<-ctx.Done()
			return 137, nil
		})})
	<-started
	run.w.Force()
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if w := b.get(item.ID); w.State != client.StateStopped || w.StopRequestedAt != nil {
		t.Errorf("item: %s, stop_requested_at %v", w.State, w.StopRequestedAt)
	}
	if !strings.Contains(run.log.String(), `"msg":"worker stopped"`) {
		t.Errorf("no 'worker stopped' in the log:\n%s", run.log)
	}
}
