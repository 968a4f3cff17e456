package api_test

import (
	"bufio"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
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
	h := newHarness(t)
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
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := h.doRaw("GET", "/metrics", "")
		if v, _ := metricValue(m.Body, "berth_work_pollers_parked"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the parked poll never showed on berth_work_pollers_parked")
		}
		time.Sleep(time.Millisecond)
	}
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
}
