package api_test

// HTTP tests of lease expiry (API.md §4.9), driven by the test clock and
// Server.ExpireLeases, never by sleeping.

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/testserver"
	"github.com/berth-sh/berth/internal/work"
)

// expire runs one round of lease expiry at the harness's clock.
func (h *harness) wkExpire() {
	h.t.Helper()
	if err := h.srv.ExpireLeases(context.Background()); err != nil {
		h.t.Fatalf("ExpireLeases: %v", err)
	}
}

// leasedSession creates a session with metadata in env and acknowledges its item; it
// returns the session and the item's ID.
func (h *harness) wkLeasedSession(env string) (sess, workID string) {
	h.t.Helper()
	sess = h.wkSessionWith(`{"agent":"a","environment_id":"` + env + `","metadata":{"job":"daily-report","team":"infra"}}`)
	w := h.wkItemsOf(env, sess)[0]
	wantStatus(h.t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n", header("Worker-ID", "w1")), 200)
	return sess, w.ID
}

var wkLeaseMeta = map[string]string{"job": "daily-report", "team": "infra"}

// wantRequeued asserts that old is stopped (at now) and that the session got exactly one
// new queued item with the same metadata, which it returns.
func (h *harness) wkWantRequeued(env, sess, old string) workJSON {
	h.t.Helper()
	got := h.work(env, old)
	if got.State != "stopped" || wkNull(got.StoppedAt) != wkTS(h.now()) {
		h.t.Errorf("expired item: state %s stopped_at %s, want stopped at %s", got.State, wkNull(got.StoppedAt), wkTS(h.now()))
	}
	items := h.wkItemsOf(env, sess)
	if len(items) != 2 || items[0].ID != old {
		h.t.Fatalf("session %s has items %+v, want the expired one and one new", sess, items)
	}
	fresh := items[1]
	if fresh.State != "queued" || fresh.Data["id"] != sess || fresh.Data["type"] != "session" || fresh.EnvironmentID != env {
		h.t.Errorf("new item %+v, want queued for session %s", fresh, sess)
	}
	if !reflect.DeepEqual(fresh.Metadata, wkLeaseMeta) {
		h.t.Errorf("new item metadata %v, want %v", fresh.Metadata, wkLeaseMeta)
	}
	if wkNull(fresh.CreatedAt) != wkTS(h.now()) || fresh.AcknowledgedAt != nil || fresh.StartedAt != nil ||
		fresh.LatestHeartbeatAt != nil || fresh.StopRequestedAt != nil || fresh.StoppedAt != nil {
		h.t.Errorf("new item timestamps %+v, want only created_at = %s", fresh, wkTS(h.now()))
	}
	return fresh
}

// wantNotRequeued asserts that the session has no item but the given ones.
func (h *harness) wkWantNotRequeued(env, sess string, ids ...string) {
	h.t.Helper()
	var got []string
	for _, w := range h.wkList(env, "") {
		if w.Data["id"] == sess {
			got = append(got, w.ID)
		}
	}
	if !reflect.DeepEqual(got, ids) {
		h.t.Errorf("session %s has items %v, want only %v (no requeue)", sess, got, ids)
	}
}

// TestLeaseExpiryAfterAck: ack starts a 60 s lease; past it, the item is stopped and its
// session gets a new queued item with the same metadata.
func TestLeaseExpiryAfterAck(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)

	h.clock.Advance(59 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); got.State != "starting" {
		t.Fatalf("after 59 s: %s, want starting", got.State)
	}
	h.clock.Advance(2 * time.Second)
	h.wkExpire()
	fresh := h.wkWantRequeued(env, sess, old)
	if s := h.wkSessionStatus(sess); s != "idle" {
		t.Errorf("session status %s with only a queued item, want idle", s)
	}
	// The new item is deliverable at once.
	if w := h.poll(env, "w2"); w == nil || w.ID != fresh.ID {
		t.Errorf("poll: %+v, want the new item %s", w, fresh.ID)
	}
}

// TestLeaseExpiryTTL: an active item's lease is its last heartbeat + desired_ttl_seconds:
// with 10 s it has not expired at 9 s, it has at 11 s.
func TestLeaseExpiryTTL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	h.clock.Advance(30 * time.Second)
	if a := h.wkBeat(env, old, "expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=10"); a.TTLSeconds != 10 {
		t.Fatalf("ttl_seconds %d", a.TTLSeconds)
	}
	h.clock.Advance(9 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); got.State != "active" {
		t.Fatalf("9 s into a 10 s lease: %s, want active", got.State)
	}
	h.clock.Advance(2 * time.Second)
	h.wkExpire()
	h.wkWantRequeued(env, sess, old)
}

// TestLeaseExpiryClampedTTL: desired_ttl_seconds=5 is clamped to 10, and the lease is 10 s.
func TestLeaseExpiryClampedTTL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	h.wkBeat(env, old, "desired_ttl_seconds=5")
	h.clock.Advance(6 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); got.State != "active" {
		t.Fatalf("6 s into a lease clamped to 10 s: %s, want active", got.State)
	}
	h.clock.Advance(5 * time.Second)
	h.wkExpire()
	h.wkWantRequeued(env, sess, old)
}

// TestLeaseExtendedByHeartbeat: each heartbeat moves the expiry to now + TTL.
func TestLeaseExtendedByHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	for range 5 {
		h.clock.Advance(50 * time.Second)
		h.wkExpire()
		h.wkBeat(env, old, "")
	}
	if got := h.work(env, old); got.State != "active" {
		t.Fatalf("kept alive by heartbeats: %s", got.State)
	}
	h.wkWantNotRequeued(env, sess, old)
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	h.wkWantRequeued(env, sess, old)
}

// TestLeaseExpiryStopping: a stopping item whose lease expires is stopped, and its session
// gets no new item: its stop was already asked for.
func TestLeaseExpiryStopping(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	h.wkBeat(env, old, "")
	wantStatus(t, h.do("POST", workPath(env, old, "/stop"), "{}"), 200)
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	got := h.work(env, old)
	if got.State != "stopped" || wkNull(got.StoppedAt) != wkTS(h.clock.Now()) {
		t.Errorf("expired stopping item: %+v", got)
	}
	h.wkWantNotRequeued(env, sess, old)
	// Also when the stop came from a session cancel.
	sess2, old2 := h.wkLeasedSession(env)
	wantStatus(t, h.do("POST", "/sessions/"+sess2+"/cancel", "{}\n"), 202)
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	if got := h.work(env, old2); got.State != "stopped" {
		t.Errorf("expired canceled item: %s", got.State)
	}
	h.wkWantNotRequeued(env, sess2, old2)
}

// TestLeaseExpiryArchivedSession: an archived session gets no new item.
func TestLeaseExpiryArchivedSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	h.wkBeat(env, old, "")
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/archive", "{}\n"), 200)
	if got := h.work(env, old); got.State != "active" {
		t.Fatalf("archive touched live work: %s", got.State)
	}
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); got.State != "stopped" {
		t.Errorf("expired item of an archived session: %s, want stopped", got.State)
	}
	h.wkWantNotRequeued(env, sess, old)
}

// TestLeaseExpiryDeletedSession: a deleted session gets no new item; its item, stopped by
// the delete, stays readable and is not expired again.
func TestLeaseExpiryDeletedSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	wantStatus(t, h.do("DELETE", "/sessions/"+sess, ""), 200)
	stopped := h.work(env, old)
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); !reflect.DeepEqual(got, stopped) {
		t.Errorf("expiry touched the deleted session's item: %+v → %+v", stopped, got)
	}
	h.wkWantNotRequeued(env, sess, old)
	if w := h.poll(env, "w1"); w != nil {
		t.Errorf("poll delivered %+v for a deleted session", w)
	}
}

// TestLeaseExpiryOtherLiveItem: a session that already has another live item gets no new
// one. The API never gives a session two live items, so the second one is planted
// through the store interface.
func TestLeaseExpiryOtherLiveItem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	// CreateSession stores a carrier session together with an item that belongs to sess.
	now := h.clock.Now()
	carrier := store.Session{ID: id.New(id.Session), EnvironmentID: env, Agent: json.RawMessage(`{"id":"a","type":"agent","version":null}`),
		Metadata: work.Metadata{}, CreatedAt: now, UpdatedAt: now}
	second := work.New(id.New(id.Work), env, sess, work.Metadata{"second": "yes"}, now)
	if _, err := h.store.CreateSession(context.Background(), carrier, nil, &second, nil); err != nil {
		t.Fatalf("plant a second item: %v", err)
	}
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); got.State != "stopped" {
		t.Errorf("expired item: %s, want stopped", got.State)
	}
	h.wkWantNotRequeued(env, sess, old, second.ID)
	if got := h.work(env, second.ID); got.State != "queued" {
		t.Errorf("the other live item: %s, want queued", got.State)
	}
}

// TestLeaseExpiredWorker: the old worker's next heartbeat gets 409; a stop on the stopped
// item is 200 unchanged; its ack is 409.
func TestLeaseExpiredWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	a := h.wkBeat(env, old, "expected_last_heartbeat=NO_HEARTBEAT")
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	fresh := h.wkWantRequeued(env, sess, old)
	stopped := h.work(env, old)

	// With its echo (state is checked first: the worker learns the item is stopped), and
	// without.
	wkWantErrorType(t, h.wkHeartbeat(env, old, wkExpect(a.LastHeartbeat)), 409, "invalid_request_error")
	wkWantErrorType(t, h.wkHeartbeat(env, old, ""), 409, "invalid_request_error")
	wkWantErrorType(t, h.do("POST", workPath(env, old, "/ack"), "{}\n", header("Worker-ID", "w1")), 409, "invalid_request_error")
	for _, body := range []string{"{}", `{"force":true}`} {
		r := h.do("POST", workPath(env, old, "/stop"), body)
		wantStatus(t, r, 200)
		if got := wkWorkOf(t, r); !reflect.DeepEqual(got, stopped) {
			t.Errorf("stop %s on the expired item changed it: %+v → %+v", body, stopped, got)
		}
	}
	if got := h.work(env, fresh.ID); got.State != "queued" {
		t.Errorf("the old worker's calls touched the new item: %s", got.State)
	}
}

// TestLeaseExpiryIdempotent: running expiry again (at once, or later) never stops or
// requeues twice.
func TestLeaseExpiryIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	h.wkExpire()
	stopped := h.work(env, old)
	fresh := h.wkWantRequeued(env, sess, old)
	h.clock.Advance(120 * time.Second) // the fresh item is queued: no lease to expire
	h.wkExpire()
	h.wkExpire()
	if got := h.work(env, old); !reflect.DeepEqual(got, stopped) {
		t.Errorf("expired twice: %+v → %+v", stopped, got)
	}
	h.wkWantNotRequeued(env, sess, old, fresh.ID)

	// Concurrent rounds requeue once too.
	sess2, old2 := h.wkLeasedSession(env)
	h.clock.Advance(61 * time.Second)
	done := make(chan error, 4)
	for range 4 {
		go func() { done <- h.srv.ExpireLeases(context.Background()) }()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Errorf("ExpireLeases: %v", err)
		}
	}
	h.wkWantRequeued(env, sess2, old2)
}

// TestLeaseExpiryWakesPoller: a parked poll is woken by the requeued item.
func TestLeaseExpiryWakesPoller(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		sess, old := h.wkLeasedSession(env)
		time.Sleep(61 * time.Second)
		res := h.wkPollAsync(env, "block_ms=999", "w2")
		h.wkWaitParked(1)
		h.wkExpire()
		p := <-res
		w := p.item(t)
		if w == nil || w.Data["id"] != sess || w.ID == old {
			t.Fatalf("parked poll answered %s, want the requeued item of %s", p.r.Body, sess)
		}
		p.wantWoken(t, "the parked poll")
	})
}

// TestLeaseStoppingExtendedByHeartbeat: a stopping item's heartbeats extend its lease too
// ("stopping (lease extended)"), so a draining worker keeps it.
func TestLeaseStoppingExtendedByHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess, old := h.wkLeasedSession(env)
	h.wkBeat(env, old, "")
	wantStatus(t, h.do("POST", workPath(env, old, "/stop"), "{}"), 200)
	for range 3 {
		h.clock.Advance(50 * time.Second)
		h.wkExpire()
		if a := h.wkBeat(env, old, "desired_ttl_seconds=60"); a.State != "stopping" || !a.LeaseExtended {
			t.Fatalf("heartbeat while draining: %+v", a)
		}
	}
	if got := h.work(env, old); got.State != "stopping" {
		t.Fatalf("draining item: %s, want stopping", got.State)
	}
	h.clock.Advance(61 * time.Second)
	h.wkExpire()
	if got := h.work(env, old); got.State != "stopped" {
		t.Errorf("abandoned draining item: %s, want stopped", got.State)
	}
	h.wkWantNotRequeued(env, sess, old)
}

// A server that starts (after a crash, in a rolling restart) expires the leases that
// ended while it was down at once, without waiting for its first tick: one restarted
// again and again within a tick would otherwise leave them unexpired. Under
// testing/synctest no time passes until every goroutine waits, so the expiry must come
// from Run's first round.
func TestRunExpiresEndedLeasesAtOnce(t *testing.T) {
	if testserver.StoreName(t) == "postgres" { // the loop is the same on either store
		t.Skip("Run's LISTEN connections wait on the network, which testing/synctest does not wait for")
	}
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		sess, old := h.wkLeasedSession(env)
		time.Sleep(61 * time.Second) // the lease ends while nothing runs the expiry
		if got := h.work(env, old); got.State != "starting" {
			t.Fatalf("before Run: %s, want starting", got.State)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			h.srv.Run(ctx)
		}()
		defer func() { cancel(); <-ran }()
		synctest.Wait()
		h.wkWantRequeued(env, sess, old) // stopped at the instant Run began
	})
}
