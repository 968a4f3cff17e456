package api_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"github.com/berth-sh/berth/internal/testserver"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
)

// metricValue returns the value of the sample whose name and labels are given exactly as
// they appear on /metrics (labels in the exposition's order), and whether it is there.
func metricValue(body []byte, sample string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// After a scripted lifecycle, /metrics counts exactly what happened: transitions by the
// state entered, a pickup per first delivery, a reclaim, a 412, a lease expiry and its
// requeue, a parked poller while one waits, and the HTTP requests by route and code.
func TestMetricsAfterAScriptedLifecycle(t *testing.T) {
	t.Parallel()
	// The SQLite store's commit metrics go to the server's registry, as berth serve does.
	instrumented := false
	h := newHarnessWith(t, func(cfg *api.Config) {
		cfg.PollTimer = neverTimer // the parked poll below ends only when woken
		cfg.Registry = prometheus.NewRegistry()
		if in, ok := cfg.Store.(interface{ Instrument(prometheus.Registerer) }); ok {
			in.Instrument(cfg.Registry)
			instrumented = true
		}
	})
	env := h.env(true)
	h.session(env)
	w := h.poll(env, "w1")
	if w == nil {
		t.Fatal("no item")
	}
	// Redelivered at once with a zero reclaim window: one reclaim.
	r := h.do("GET", "/environments/"+env+"/work/poll?reclaim_older_than_ms=0", "", header("Worker-ID", "w1"))
	wantStatus(t, r, 200)
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "", header("Worker-ID", "w1")), 200)
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"), ""), 200)
	wantError(t, h.do("POST", workPath(env, w.ID, "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"), ""), 412, "precondition_failed_error", "expected_last_heartbeat")
	// The lease lapses: stopped by expiry, and the session requeued.
	h.clock.Advance(61 * time.Second)
	if err := h.srv.ExpireLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A poll parks; the gauge shows it; a new session wakes it.
	parked := make(chan *workJSON, 1)
	other := h.env(true)
	go func() {
		r := h.do("GET", "/environments/"+other+"/work/poll?block_ms=999", "")
		var got workJSON
		r.decode(t, &got)
		parked <- &got
	}()
	testserver.WaitFor(t, "the parked poll shows on berth_work_pollers_parked", func() bool {
		v, _ := metricValue(h.doRaw("GET", "/metrics", "").Body, "berth_work_pollers_parked")
		return v == 1
	})
	h.session(other)
	if got := <-parked; got.ID == "" {
		t.Fatal("the parked poll got no item")
	}

	m := h.doRaw("GET", "/metrics", "")
	wantStatus(t, m, 200)
	want := map[string]float64{
		`berth_work_transitions_total{state="queued"}`:     3, // two sessions and the requeue
		`berth_work_transitions_total{state="starting"}`:   1,
		`berth_work_transitions_total{state="active"}`:     1,
		`berth_work_transitions_total{state="stopped"}`:    1,
		`berth_work_lease_expiries_total`:                  1,
		`berth_work_requeues_total`:                        1,
		`berth_work_reclaims_total`:                        1,
		`berth_work_heartbeat_precondition_failures_total`: 1,
		`berth_work_pickup_seconds_count`:                  2, // first deliveries only
		`berth_work_poll_wait_seconds_count`:               3,
		`berth_work_pollers_parked`:                        0,
		`berth_http_requests_total{code="412",method="POST",route="/api/v1/cloud/environments/{environment_id}/work/{work_id}/heartbeat"}`: 1,
		`berth_http_requests_total{code="200",method="POST",route="/api/v1/cloud/environments/{environment_id}/work/{work_id}/heartbeat"}`: 1,
		`berth_http_requests_total{code="201",method="POST",route="/api/v1/cloud/sessions"}`:                                               2,
		`berth_http_request_duration_seconds_count{method="POST",route="/api/v1/cloud/environments/{environment_id}/work/{work_id}/ack"}`:  1,
	}
	for sample, v := range want {
		got, ok := metricValue(m.Body, sample)
		if !ok || got != v {
			t.Errorf("%s = %v (present %t), want %v", sample, got, ok, v)
		}
	}
	if instrumented {
		// The script sent one request at a time and the harness runs no background
		// upkeep, so every commit carried one write transaction: the admin token, its
		// last_used_at (on first use, and again once the clock has moved 61 s), two
		// environments, two sessions (the second one's item handed to the parked poll in
		// the same transaction), two claims, the ack, the heartbeat and the lease expiry
		// with its requeue. The empty polls are reads, and so is the 412 heartbeat: its
		// rule refused before any write was sent to the writer.
		commits, _ := metricValue(m.Body, "berth_store_commit_batch_size_count")
		carried, _ := metricValue(m.Body, "berth_store_commit_batch_size_sum")
		durations, _ := metricValue(m.Body, "berth_store_commit_duration_seconds_count")
		if commits != 12 || carried != 12 || durations != 12 {
			t.Errorf("store commits: %v carrying %v write transactions, %v durations; want 12 of one each", commits, carried, durations)
		}
	}
}

// workItemsTTL is how long the server serves one count of berth_work_items (metrics.go).
const workItemsTTL = 5 * time.Second

// workItemsSeries returns the berth_work_items lines of a /metrics body.
func workItemsSeries(body []byte) []string {
	var out []string
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "berth_work_items{") {
			out = append(out, line)
		}
	}
	return out
}

// After a scripted lifecycle, berth_work_items holds exactly the items of each
// environment by state, all five states (0 for none) for every environment with items and
// no series for one without. Within 5 s of a count a scrape serves that count; a later one
// counts again.
func TestMetricsWorkItemsAfterAScriptedLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	busy, quiet, empty := h.env(true), h.env(true), h.env(true)
	// quiet: an item's lease lapses; it is stopped by expiry and its session requeued.
	h.itemIn(quiet, "active")
	h.clock.Advance(61 * time.Second)
	if err := h.srv.ExpireLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	// busy: items in every state, one of them claimed by a poll and not acknowledged.
	for _, state := range []string{"queued", "starting", "active", "active", "stopping", "stopped", "stopped", "stopped"} {
		h.itemIn(busy, state)
	}
	h.session(busy)
	if w := h.poll(busy, "w1"); w == nil {
		t.Fatal("no item")
	}

	// The first scrape comes after the script, so the count it makes is the script's end.
	scraped := time.Now()
	m := h.doRaw("GET", "/metrics", "")
	wantStatus(t, m, 200)
	series := func(env, state string) string {
		return `berth_work_items{environment_id="` + env + `",state="` + state + `"}`
	}
	want := map[string]float64{
		series(busy, "queued"):    2, // one never polled, one delivered and not acknowledged
		series(busy, "starting"):  1,
		series(busy, "active"):    2,
		series(busy, "stopping"):  1,
		series(busy, "stopped"):   3,
		series(quiet, "queued"):   1, // the requeue
		series(quiet, "starting"): 0,
		series(quiet, "active"):   0,
		series(quiet, "stopping"): 0,
		series(quiet, "stopped"):  1, // the lapsed lease
	}
	for sample, v := range want {
		got, ok := metricValue(m.Body, sample)
		if !ok || got != v {
			t.Errorf("%s = %v (present %t), want %v", sample, got, ok, v)
		}
	}
	first := workItemsSeries(m.Body)
	if len(first) != len(want) {
		t.Errorf("berth_work_items has %d series, want %d (none for %s):\n%s", len(first), len(want), empty, strings.Join(first, "\n"))
	}

	// A new item right away: the next scrape, within 5 s of the count, serves the count.
	h.session(empty)
	m = h.doRaw("GET", "/metrics", "")
	wantStatus(t, m, 200)
	if time.Since(scraped) < workItemsTTL {
		if got := workItemsSeries(m.Body); !slices.Equal(got, first) {
			t.Errorf("a scrape within %s of the count = \n%s\nwant the cached\n%s", workItemsTTL, strings.Join(got, "\n"), strings.Join(first, "\n"))
		}
	}
	// Once the count is 5 s old, a scrape counts again and sees it.
	deadline := scraped.Add(3 * workItemsTTL)
	for {
		m = h.doRaw("GET", "/metrics", "")
		if v, _ := metricValue(m.Body, series(empty, "queued")); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new item never showed on berth_work_items:\n%s", strings.Join(workItemsSeries(m.Body), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if age := time.Since(scraped); age < workItemsTTL {
		t.Errorf("berth_work_items was counted again %s after the first count; the cache lasts %s", age, workItemsTTL)
	}
	if got := len(workItemsSeries(m.Body)); got != len(want)+5 {
		t.Errorf("berth_work_items has %d series after the recount, want %d", got, len(want)+5)
	}
	for sample, v := range want {
		if got, ok := metricValue(m.Body, sample); !ok || got != v {
			t.Errorf("after the recount %s = %v (present %t), want %v", sample, got, ok, v)
		}
	}
}

// failingCountStore is a store whose CountWork fails: at once, or, when hang is set, by
// waiting for its context to end.
type failingCountStore struct {
	store.Store
	hang     bool
	calls    atomic.Int32
	deadline atomic.Pointer[time.Duration] // how far off the context's deadline was
}

func (s *failingCountStore) CountWork(ctx context.Context) ([]store.WorkCount, error) {
	s.calls.Add(1)
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		s.deadline.Store(&d)
	}
	if s.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, errors.New("disk on fire")
}

// lockedBuffer is a log destination safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// When the store cannot count, /metrics still answers 200 with every other metric and
// without berth_work_items, the failure is logged, the count has at most 2 s, and the
// next scrape within 5 s does not ask the store again.
func TestMetricsWorkItemsStoreFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		hang    bool
		wantLog string
	}{
		{"Error", false, "disk on fire"},
		{"Timeout", true, "context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &failingCountStore{Store: openTestStore(t), hang: tc.hang}
			t.Cleanup(func() { st.Close() })
			var logs lockedBuffer
			srv := api.New(api.Config{Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			t.Cleanup(srv.Shutdown)
			scrape := func() *httptest.ResponseRecorder {
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
				return rec
			}
			start := time.Now()
			rec := scrape()
			elapsed := time.Since(start)
			if rec.Code != 200 {
				t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
			}
			if _, ok := metricValue(rec.Body.Bytes(), "berth_work_pollers_parked"); !ok {
				t.Errorf("/metrics lacks the other metrics:\n%s", rec.Body)
			}
			if strings.Contains(rec.Body.String(), "berth_work_items") {
				t.Errorf("/metrics serves berth_work_items although the count failed:\n%s", strings.Join(workItemsSeries(rec.Body.Bytes()), "\n"))
			}
			if d := st.deadline.Load(); d == nil {
				t.Errorf("CountWork's context has no deadline, want one at most 2s away")
			} else if *d > 2*time.Second {
				t.Errorf("CountWork's context deadline = %s away, want at most 2s", *d)
			}
			if tc.hang && elapsed > testserver.HangGuard/4 {
				t.Errorf("a scrape on a hanging store took %s", elapsed)
			}
			if !strings.Contains(logs.String(), "berth_work_items") || !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks the failure %q:\n%s", tc.wantLog, logs.String())
			}
			rec = scrape()
			if rec.Code != 200 || strings.Contains(rec.Body.String(), "berth_work_items") {
				t.Errorf("second scrape: %d, berth_work_items present %t", rec.Code, strings.Contains(rec.Body.String(), "berth_work_items"))
			}
			if n := st.calls.Load(); n != 1 && time.Since(start) < workItemsTTL {
				t.Errorf("CountWork called %d times by two scrapes within %s, want once", n, workItemsTTL)
			}
		})
	}
}
