package worker_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/worker"
)

// holdHeartbeats makes the next heartbeat of workID wait, once it has arrived, until
// release is closed; held is closed when it arrives. Other requests pass.
func holdHeartbeats(b *bench, workID string) (held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if c.Op == "heartbeat" && c.WorkID == workID {
			once.Do(func() { close(held) })
			<-release
		}
		return false
	})
	return held, release
}

// noFinishCalls asserts that the worker neither recorded an exit code on the item nor
// stopped it: a worker that lost the lease must leave the item to whoever holds it now.
func noFinishCalls(t *testing.T, b *bench, workID string) {
	t.Helper()
	for _, c := range b.rec.snapshot(func(c call) bool { return c.WorkID == workID }) {
		if c.Op == "stop" || c.Op == "update" {
			t.Errorf("the worker called %s on %s after losing its lease (body %s)", c.Op, workID, c.Body)
		}
	}
}

// Lease lost to expiry: the server expired the lease (its clock moved past it) and
// requeued the session; the worker's next heartbeat gets 409. The worker kills the child
// at once (SIGKILL, not SIGTERM and a kill grace), abandons the item without stop or
// exit_code, and the session's fresh item is then run to completion.
func TestExpiredLeaseKillsChildAndAbandonsItem(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	sess, item := b.session(nil)
	dir := t.TempDir()
	script := `if [ -e "$DIR/ran" ]; then echo "second run $BERTH_WORK_ID"; exit 0; fi
: > "$DIR/ran"; echo $$ > "$DIR/pid"; echo "ready $BERTH_WORK_ID"; exec sleep 60`
	run := b.start(worker.Config{TTL: 10, HeartbeatInterval: 50 * time.Millisecond,
		Handler: &worker.Exec{Command: script, KillGrace: time.Minute, Env: []string{"DIR=" + dir}}})
	run.log.waitFor(t, "ready "+item.ID)
	b.rec.waitCalls(t, 1, "heartbeat", func(c call) bool { return c.WorkID == item.ID && c.Op == "heartbeat" && c.Status == 200 })
	pid := readPID(t, filepath.Join(dir, "pid"))

	held, release := holdHeartbeats(b, item.ID)
	<-held
	b.clock.Advance(11 * time.Second) // past the 10 s lease
	if err := b.srv.ExpireLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := b.get(item.ID); w.State != client.StateStopped {
		t.Fatalf("after expiry the item is %s", w.State)
	}
	released := time.Now()
	close(release)

	run.log.waitFor(t, "abandoning the item without stopping it")
	if d := time.Since(released); d > 10*time.Second {
		t.Errorf("the child was ended %v after the 409: not killed at once", d)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("child %d still exists after the lease was lost (kill 0: %v)", pid, err)
	}
	if !strings.Contains(run.log.String(), `"msg":"killing child"`) {
		t.Errorf("the child was not killed at once:\n%s", run.log)
	}
	hbs := b.rec.of(item.ID, "heartbeat")
	if last := hbs[len(hbs)-1]; last.Status != 409 {
		t.Errorf("last heartbeat answered %d, want 409", last.Status)
	}
	noFinishCalls(t, b, item.ID)
	old := b.get(item.ID)
	if _, ok := old.Metadata["exit_code"]; ok || old.StopRequestedAt != nil {
		t.Errorf("abandoned item: metadata %v, stop_requested_at %v", old.Metadata, old.StopRequestedAt)
	}

	// The session's fresh item runs to completion.
	items := b.itemsOf(sess.ID)
	if len(items) != 2 {
		t.Fatalf("session has %d items after expiry, want 2", len(items))
	}
	fresh := b.waitState(items[1].ID, client.StateStopped)
	if fresh.Metadata["exit_code"] != "0" {
		t.Errorf("fresh item: exit_code %q", fresh.Metadata["exit_code"])
	}
	run.log.waitFor(t, "second run "+fresh.ID)
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// Lease taken over: another worker heartbeats the item (echoing its latest heartbeat, as
// a deliberate takeover does), so this worker's next heartbeat gets 412. The handler is
// cancelled with ErrLeaseLost and the item is left alone: still active, no exit_code, no
// stop.
func TestLeaseTakenOverIsAbandonedWithoutStop(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	seen := make(chan causeOf, 1)
	run := b.start(worker.Config{TTL: 10, HeartbeatInterval: 50 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			seen <- waitCtx(ctx)
			return 0, nil
		})})
	b.rec.waitCalls(t, 1, "heartbeat", func(c call) bool { return c.WorkID == item.ID && c.Op == "heartbeat" && c.Status == 200 })

	held, release := holdHeartbeats(b, item.ID)
	<-held
	other := takeOver(t, b, item.ID)
	close(release)

	got := <-seen
	if !isErr(got.cause, worker.ErrLeaseLost) {
		t.Fatalf("handler cancelled with %v, want ErrLeaseLost", got.cause)
	}
	run.log.waitFor(t, "abandoning the item without stopping it")
	hbs := b.rec.of(item.ID, "heartbeat")
	if last := hbs[len(hbs)-1]; last.Status != 412 {
		t.Errorf("last heartbeat answered %d, want 412", last.Status)
	}
	noFinishCalls(t, b, item.ID)
	w := b.get(item.ID)
	if w.State != client.StateActive || w.LatestHeartbeatAtRaw != other || w.Metadata["exit_code"] != "" {
		t.Errorf("item after takeover: %s, latest heartbeat %s (the other worker's: %s), metadata %v",
			w.State, w.LatestHeartbeatAtRaw, other, w.Metadata)
	}
}

// takeOver heartbeats the item as another worker would, and returns its last_heartbeat.
func takeOver(t *testing.T, b *bench, workID string) string {
	t.Helper()
	cur := b.get(workID)
	hb, err := b.admin.HeartbeatWork(context.Background(), b.env, workID, client.HeartbeatParams{
		ExpectedLastHeartbeat: cur.LatestHeartbeatAtRaw, DesiredTTLSeconds: 60})
	if err != nil {
		t.Fatalf("takeover heartbeat: %v", err)
	}
	return hb.LastHeartbeat
}

// The handler finishes while a heartbeat is on its way, and that heartbeat then finds the
// lease taken over (412). The worker must learn the heartbeat's answer before it records
// an exit code or stops the item: stopping it would end the other worker's run.
func TestHandlerDoneDuringLostHeartbeatDoesNotStop(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	finish := make(chan struct{})
	returned := make(chan struct{})
	run := b.start(worker.Config{TTL: 10, HeartbeatInterval: 50 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			<-finish
			close(returned)
			return 0, nil
		})})
	b.rec.waitCalls(t, 1, "heartbeat", func(c call) bool { return c.WorkID == item.ID && c.Op == "heartbeat" && c.Status == 200 })

	held, release := make(chan struct{}), make(chan struct{})
	answered := make(chan struct{})
	var once sync.Once
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		switch {
		case c.Op == "heartbeat" && c.WorkID == item.ID:
			first := false
			once.Do(func() { first = true; close(held) })
			if first {
				<-release
				next.ServeHTTP(w, r)
				close(answered)
				return true
			}
		case (c.Op == "update" || c.Op == "stop") && c.WorkID == item.ID:
			// Had the worker not waited for the heartbeat, let its calls reach the
			// server only after the 412, so that the test shows what they would do.
			<-answered
		}
		return false
	})
	<-held
	takeOver(t, b, item.ID)
	close(finish)
	<-returned
	// The heartbeat is answered a little after the handler returned.
	time.AfterFunc(100*time.Millisecond, func() { close(release) })

	run.log.waitFor(t, "abandoning the item without stopping it")
	noFinishCalls(t, b, item.ID)
	if w := b.get(item.ID); w.State != client.StateActive {
		t.Errorf("item is %s, want it left active for the worker that took it over", w.State)
	}
}

// Heartbeats that hang: each heartbeat request gives up before the lease it would extend
// could lapse, and when none has succeeded for the lease, the lease is lost (the handler
// is cancelled with ErrLeaseLost; no stop). The recorder grants 3 s leases, as a server
// may, so that the test takes seconds.
func TestHeartbeatGivesUpBeforeTheLeaseCouldLapse(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	const ttl = 3 * time.Second
	var n atomic.Int32
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if c.Op != "heartbeat" {
			return false
		}
		if n.Add(1) <= 2 {
			grantTTL(int(ttl/time.Second), w, r, next)
			return true
		}
		<-r.Context().Done() // never answer: the worker must give up by itself
		return true
	})
	seen := make(chan causeOf, 1)
	run := b.start(worker.Config{TTL: 10, HeartbeatInterval: 200 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			seen <- waitCtx(ctx)
			return 0, nil
		})})
	got := <-seen
	if !isErr(got.cause, worker.ErrLeaseLost) {
		t.Fatalf("handler cancelled with %v, want ErrLeaseLost", got.cause)
	}
	run.log.waitFor(t, "abandoning the item without stopping it")
	hung := b.rec.waitCalls(t, 1, "abandoned heartbeat", func(c call) bool { return c.Op == "heartbeat" && c.Status == 0 })
	ok := b.rec.snapshot(func(c call) bool { return c.Op == "heartbeat" && c.Status == 200 })
	if len(ok) != 2 {
		t.Fatalf("%d successful heartbeats, want 2", len(ok))
	}
	// The lease of the last success ends TTL after the server answered it, which is
	// after the request arrived.
	lapse := ok[1].Start.Add(ttl)
	for _, h := range hung {
		if !h.End.Before(lapse) {
			t.Errorf("a heartbeat was still waiting %v after the lease lapsed", h.End.Sub(lapse))
		}
	}
	if !got.at.Before(lapse) {
		t.Errorf("lease given up %v after it lapsed; want before", got.at.Sub(lapse))
	}
	noFinishCalls(t, b, item.ID)
}

// Heartbeats that fail (503): the worker keeps trying while the lease lasts, and gives it
// up when no heartbeat has succeeded for the lease.
func TestHeartbeatFailuresForAWholeLeaseLoseIt(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	const ttl = 3 * time.Second
	var n atomic.Int32
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if c.Op != "heartbeat" {
			return false
		}
		if n.Add(1) == 1 {
			grantTTL(int(ttl/time.Second), w, r, next)
		} else {
			fail(w, 503, "api_error")
		}
		return true
	})
	seen := make(chan causeOf, 1)
	run := b.start(worker.Config{TTL: 10, HeartbeatInterval: 200 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			seen <- waitCtx(ctx)
			return 0, nil
		})})
	got := <-seen
	if !isErr(got.cause, worker.ErrLeaseLost) {
		t.Fatalf("handler cancelled with %v, want ErrLeaseLost", got.cause)
	}
	run.log.waitFor(t, "abandoning the item without stopping it")
	hbs := b.rec.of(item.ID, "heartbeat")
	first := hbs[0]
	failed := 0
	for _, h := range hbs[1:] {
		if h.Status == 503 {
			failed++
		}
	}
	if failed < 3 {
		t.Errorf("%d failed heartbeats before giving up; want the worker to keep trying", failed)
	}
	if held := got.at.Sub(first.End); held < ttl/2 || !got.at.Before(first.Start.Add(ttl)) {
		t.Errorf("lease given up %v after the last success; want after retrying, and before the %v lease lapsed", held, ttl)
	}
	noFinishCalls(t, b, item.ID)
}
