package api_test

import (
	"testing"
)

func TestQuickstartLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	w := h.poll(env, "w1")
	if w == nil || w.Data["id"] != sess || w.State != "queued" {
		t.Fatalf("poll: %+v", w)
	}
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n"), 200)
	r := h.do("POST", workPath(env, w.ID, "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"), "")
	wantStatus(t, r, 200)
	if got := h.work(env, w.ID); got.State != "active" {
		t.Fatalf("state %s", got.State)
	}
}
