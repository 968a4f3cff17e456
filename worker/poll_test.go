package worker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/worker"
)

// The worker polls only while it has a free slot, always as a long poll (block_ms=999)
// carrying its Worker-ID, acknowledges with its Worker-ID, never runs more than Capacity
// items at once, and takes up queued items as slots free.
func TestPollsOnlyBelowCapacity(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	const capacity, n = 3, 7
	want := map[string]bool{}
	for range n {
		_, w := b.session(nil)
		want[w.ID] = true
	}

	var wk atomic.Pointer[worker.Worker]
	var pollsAtCapacity atomic.Int32
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		// An item counts as running from just after the poll that delivered it until its
		// slot is free again, so a poll that arrives while Capacity items run is one the
		// worker had no room for.
		if c.Op == "poll" {
			if wr := wk.Load(); wr != nil && wr.Running() >= capacity {
				pollsAtCapacity.Add(1)
			}
		}
		return false
	})

	var mu sync.Mutex
	cur, peak := 0, 0
	started := make(chan string, n)
	release := make(chan struct{})
	run := b.start(worker.Config{Capacity: capacity, Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		started <- job.Work.ID
		<-release
		mu.Lock()
		cur--
		mu.Unlock()
		return 0, nil
	})})
	wk.Store(run.w)

	ran := map[string]int{}
	for range capacity {
		ran[<-started]++
	}
	// At capacity: the worker must not take a fourth item. Its polls are checked by the
	// interceptor; here, no fourth handler may have started.
	select {
	case id := <-started:
		t.Fatalf("a fourth item %s started while %d were running", id, capacity)
	default:
	}
	if got := run.w.Running(); got != capacity {
		t.Fatalf("Running() = %d, want %d", got, capacity)
	}
	close(release)
	for range n - capacity {
		ran[<-started]++
	}
	for id := range want {
		w := b.waitState(id, client.StateStopped)
		if w.Metadata["exit_code"] != "0" || ran[id] != 1 {
			t.Errorf("item %s: exit_code %q, ran %d times", id, w.Metadata["exit_code"], ran[id])
		}
	}
	if peak != capacity {
		t.Errorf("at most %d handlers ran at once, want exactly %d", peak, capacity)
	}
	if n := pollsAtCapacity.Load(); n != 0 {
		t.Errorf("%d polls were sent while %d items were running", n, capacity)
	}
	polls := b.rec.snapshot(func(c call) bool { return c.Op == "poll" })
	if len(polls) < n {
		t.Fatalf("%d polls for %d items", len(polls), n)
	}
	for _, p := range polls {
		if p.Query.Get("block_ms") != "999" || p.WorkerID != run.id {
			t.Fatalf("poll with block_ms=%q Worker-ID=%q, want 999 and %q", p.Query.Get("block_ms"), p.WorkerID, run.id)
		}
	}
	for _, a := range b.rec.snapshot(func(c call) bool { return c.Op == "ack" }) {
		if a.WorkerID != run.id || !want[a.WorkID] {
			t.Errorf("ack of %s with Worker-ID %q", a.WorkID, a.WorkerID)
		}
	}
	if acks := len(b.rec.snapshot(func(c call) bool { return c.Op == "ack" })); acks != n {
		t.Errorf("%d acks for %d items", acks, n)
	}
}

// The lease protocol as the issue states it: ack at once after the poll, heartbeat at
// once with NO_HEARTBEAT, then every third of the granted TTL echoing last_heartbeat;
// when the handler is done, exit_code is recorded and the item stopped (graceful
// request, then confirmation). This test runs on the real schedule: 10 s leases, so the
// second heartbeat comes ~3.3 s after the first.
func TestAcksAndHeartbeatsAtOnceThenEveryThirdOfTheLease(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	release := make(chan struct{})
	b.start(worker.Config{TTL: 10, Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
		<-release
		return 0, nil
	})})
	b.rec.waitCalls(t, 2, "heartbeats", func(c call) bool { return c.WorkID == item.ID && c.Op == "heartbeat" })
	close(release)
	final := b.waitState(item.ID, client.StateStopped)

	var delivery call
	for _, p := range b.rec.snapshot(func(c call) bool { return c.Op == "poll" && !c.End.IsZero() }) {
		if strings.Contains(string(p.Resp), item.ID) {
			delivery = p
		}
	}
	if delivery.End.IsZero() {
		t.Fatalf("no poll delivered %s", item.ID)
	}
	// The state reads between heartbeats have a test of their own (state_test.go).
	calls := b.rec.snapshot(func(c call) bool { return c.WorkID == item.ID && c.Op != "get" && !c.End.IsZero() })
	var ops []string
	for _, c := range calls {
		ops = append(ops, c.Op)
	}
	if strings.Join(ops, " ") != "ack heartbeat heartbeat update stop stop" {
		t.Fatalf("calls on the item: %v, want ack heartbeat heartbeat update stop stop", ops)
	}
	ack, hb1, hb2, upd, stop1, stop2 := calls[0], calls[1], calls[2], calls[3], calls[4], calls[5]
	if d := ack.Start.Sub(delivery.End); d > time.Second {
		t.Errorf("ack %v after the poll answered, want at once", d)
	}
	if d := hb1.Start.Sub(ack.End); d > time.Second {
		t.Errorf("first heartbeat %v after the ack, want at once", d)
	}
	if got := hb1.Query.Get("expected_last_heartbeat"); got != client.NoHeartbeat {
		t.Errorf("first heartbeat expected_last_heartbeat=%q, want NO_HEARTBEAT", got)
	}
	a1 := heartbeatAnswer(t, hb1)
	if a1.TTLSeconds != 10 || hb1.Query.Get("desired_ttl_seconds") != "10" {
		t.Errorf("first heartbeat asked %q, granted %d; want 10", hb1.Query.Get("desired_ttl_seconds"), a1.TTLSeconds)
	}
	if got := hb2.Query.Get("expected_last_heartbeat"); got != a1.LastHeartbeat {
		t.Errorf("second heartbeat expected_last_heartbeat=%q, want the first's last_heartbeat %q", got, a1.LastHeartbeat)
	}
	// A third of 10 s is 3.33 s, counted from the first heartbeat's answer.
	if gap := hb2.Start.Sub(hb1.End); gap < 3200*time.Millisecond || gap > 5*time.Second {
		t.Errorf("second heartbeat %v after the first, want about 3.33 s (a third of the 10 s lease)", gap)
	}
	if !strings.Contains(string(upd.Body), `"exit_code":"0"`) {
		t.Errorf("update body %s, want exit_code 0", upd.Body)
	}
	for i, s := range []call{stop1, stop2} {
		if s.force() {
			t.Errorf("stop %d was forced", i+1)
		}
	}
	if !strings.Contains(string(stop1.Resp), `"state":"stopping"`) || !strings.Contains(string(stop2.Resp), `"state":"stopped"`) {
		t.Errorf("stops answered %s then %s, want stopping then stopped", stop1.Resp, stop2.Resp)
	}
	if final.StopRequestedAt == nil || final.Metadata["exit_code"] != "0" {
		t.Errorf("final item: stop_requested_at %v, exit_code %q", final.StopRequestedAt, final.Metadata["exit_code"])
	}
}

// A failed poll (here 503, the client not retrying by itself) is retried after a backoff
// that doubles from BackoffMin up to BackoffMax, less up to a quarter of jitter; the
// worker recovers as soon as the server does.
func TestPollErrorsBackOff(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	const failures = 5
	var polls atomic.Int32
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if c.Op == "poll" && polls.Add(1) <= failures {
			fail(w, 503, "api_error")
			return true
		}
		return false
	})
	reg := prometheus.NewRegistry()
	const bmin, bmax = 40 * time.Millisecond, 160 * time.Millisecond
	b.start(worker.Config{
		Client:     b.client(b.secret, client.WithMaxRetries(0)),
		BackoffMin: bmin, BackoffMax: bmax, Metrics: worker.NewMetrics(reg),
		Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) { return 0, nil }),
	})
	b.waitState(item.ID, client.StateStopped)
	ps := b.rec.snapshot(func(c call) bool { return c.Op == "poll" })
	if len(ps) <= failures {
		t.Fatalf("%d polls", len(ps))
	}
	// The waits follow client.Backoff: bmin × 2^n within [bmin, bmax], less up to a
	// quarter.
	ceil := bmin
	for i := 1; i <= failures; i++ {
		lo, hi := ceil*3/4, ceil
		ceil = clampDur(2*ceil, bmin, bmax)
		gap := ps[i].Start.Sub(ps[i-1].End)
		if gap < lo-5*time.Millisecond || gap > hi+time.Second {
			t.Errorf("wait before poll %d: %v, want within [%v, %v]", i+1, gap, lo, hi)
		}
	}
	if got := counter(t, reg, "berth_worker_poll_errors_total"); got != failures {
		t.Errorf("berth_worker_poll_errors_total = %v, want %d", got, failures)
	}
}

func clampDur(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}

// counter reads a counter (summed over its labels) from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// 401, 403 and 404 on poll end Run at once, with no retry, with an *ErrRefused that
// names the flags to check and wraps the server's answer: the token and environment, or
// the URL when the server has no API there (404 "No such route."). The client error's
// "berth: " prefix is not repeated inside it.
func TestRefusedCredentialsOrEnvironmentEndRun(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	other, err := b.admin.CreateEnvironment(context.Background(), client.CreateEnvironmentParams{Name: "other", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	check := "check --token and --environment"
	wrongBase := strings.TrimSuffix(b.base, "/cloud") // http://…/api/v1
	for _, tc := range []struct {
		name, token, env string
		status           int
		base, want       string
	}{
		{"unknown token", "pt-" + strings.Repeat("x", 43), b.env, 401, b.base, check},
		{"worker token of another environment", b.token(api.RoleWorker, other.ID), b.env, 403, b.base, check},
		{"environment that does not exist", b.token(api.RoleMember, ""), "env_0190f3be4fd2475d9a784bf2c739e119", 404, b.base, check},
		{"no API at the URL", b.secret, b.env, 404, wrongBase, "no berth API at " + wrongBase + "/ (check --url or BERTH_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sent atomic.Int32
			hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent.Add(1)
				return http.DefaultTransport.RoundTrip(r)
			})}
			c, err := client.New(tc.base, tc.token, client.WithHTTPClient(hc))
			if err != nil {
				t.Fatal(err)
			}
			w, err := worker.New(worker.Config{
				Client: c, EnvironmentID: tc.env, WorkerID: "refused",
				Logger:  discard(),
				Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) { return 0, nil }),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err = w.Run(ctx)
			var refused *worker.ErrRefused
			var apiErr *client.Error
			if !errors.As(err, &refused) || !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status {
				t.Fatalf("Run = %v, want *ErrRefused wrapping HTTP %d", err, tc.status)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || (tc.want != check && strings.Contains(msg, check)) {
				t.Errorf("message %q does not say what to check: %q", msg, tc.want)
			}
			if strings.Contains(err.Error(), "berth:") {
				t.Errorf("message %q holds the client error's \"berth:\" prefix", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Run took %v to give up", d)
			}
			if n := sent.Load(); n != 1 {
				t.Errorf("%d requests sent, want the one poll", n)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
