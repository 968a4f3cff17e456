package client_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// TestWorkLifecycle walks one item through the table of API.md §4 as a worker would.
func TestWorkLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	env := b.selfHosted("byoc")
	worker := b.client(b.token("worker", env.ID))

	stats, err := worker.GetWorkStats(ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *stats != (client.QueueStats{Type: "work_queue_stats"}) {
		t.Fatalf("empty stats %+v", stats)
	}
	if w, err := worker.PollWork(ctx, env.ID, client.PollParams{WorkerID: "w1"}); w != nil || err != nil {
		t.Fatalf("poll of an empty queue: %+v %v", w, err)
	}
	if w, err := worker.PollWork(ctx, env.ID, client.PollParams{WorkerID: "w1", BlockMS: 10}); w != nil || err != nil {
		t.Fatalf("blocking poll of an empty queue: %+v %v", w, err)
	}

	sess := b.session(env.ID)
	stats, err = worker.GetWorkStats(ctx, env.ID)
	if err != nil || stats.Depth != 1 || stats.Pending != 0 || stats.OldestQueuedAt == nil || stats.WorkersPolling != 1 {
		t.Fatalf("stats with one queued: %+v %v", stats, err)
	}

	w, err := worker.PollWork(ctx, env.ID, client.PollParams{WorkerID: "w1", BlockMS: 500})
	if err != nil || w == nil {
		t.Fatalf("poll: %+v %v", w, err)
	}
	if w.Type != "work" || w.EnvironmentID != env.ID || w.Data != (client.WorkData{Type: "session", ID: sess.ID}) ||
		w.State != client.StateQueued || w.AcknowledgedAt != nil || w.LatestHeartbeatAt != nil ||
		w.LatestHeartbeatAtRaw != "" || w.Metadata == nil {
		t.Fatalf("polled %+v", w)
	}
	zero := 0
	if again, err := worker.PollWork(ctx, env.ID, client.PollParams{WorkerID: "w2"}); again != nil || err != nil {
		t.Fatalf("second poll inside the reclaim window: %+v %v", again, err)
	}
	stats, err = worker.GetWorkStats(ctx, env.ID)
	if err != nil || stats.Depth != 0 || stats.Pending != 1 || stats.WorkersPolling != 2 {
		t.Fatalf("stats with one delivered: %+v %v", stats, err)
	}

	upd, err := worker.UpdateWork(ctx, env.ID, w.ID, client.UpdateWorkParams{Metadata: map[string]*string{"host": client.String("m1")}})
	if err != nil || !maps.Equal(upd.Metadata, map[string]string{"host": "m1"}) {
		t.Fatalf("update %+v %v", upd, err)
	}

	// Delivered to w1: w2 may neither reclaim it early nor ack it.
	_, err = worker.AckWork(ctx, env.ID, w.ID, client.AckParams{WorkerID: "w2"})
	apiError(t, err, 409, "invalid_request_error")
	if !client.IsConflict(err) {
		t.Errorf("IsConflict(%v) = false", err)
	}
	acked, err := worker.AckWork(ctx, env.ID, w.ID, client.AckParams{WorkerID: "w1"})
	if err != nil || acked.State != client.StateStarting || acked.AcknowledgedAt == nil {
		t.Fatalf("ack %+v %v", acked, err)
	}
	if again, err := worker.AckWork(ctx, env.ID, w.ID, client.AckParams{}); err != nil || again.State != client.StateStarting {
		t.Fatalf("ack again %+v %v", again, err)
	}
	// reclaim_older_than_ms=0 would redeliver a queued item at once; an acknowledged one
	// is not queued any more.
	if again, err := worker.PollWork(ctx, env.ID, client.PollParams{ReclaimOlderThanMS: &zero}); again != nil || err != nil {
		t.Fatalf("poll after ack: %+v %v", again, err)
	}

	hb, err := worker.HeartbeatWork(ctx, env.ID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat, DesiredTTLSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	if hb.Type != "work_heartbeat" || hb.State != client.StateActive || hb.TTLSeconds != 30 || !hb.LeaseExtended || hb.LastHeartbeat == "" {
		t.Fatalf("heartbeat %+v", hb)
	}
	got, err := worker.GetWork(ctx, env.ID, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != client.StateActive || got.StartedAt == nil || got.LatestHeartbeatAtRaw != hb.LastHeartbeat ||
		got.LatestHeartbeatAt.Format(time.RFC3339Nano) != hb.LastHeartbeat {
		t.Fatalf("after heartbeat %+v (raw %q, heartbeat %q)", got, got.LatestHeartbeatAtRaw, hb.LastHeartbeat)
	}

	// Someone else's view of the lease is stale: 412 with the current state.
	_, err = worker.HeartbeatWork(ctx, env.ID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat})
	e := apiError(t, err, 412, "precondition_failed_error")
	if !client.IsPreconditionFailed(err) {
		t.Errorf("IsPreconditionFailed(%v) = false", err)
	}
	want := client.HeartbeatState{State: client.StateActive, TTLSeconds: 30, LastHeartbeat: hb.LastHeartbeat}
	if e.CurrentState == nil || *e.CurrentState != want || len(e.Details) == 0 {
		t.Fatalf("412 current state %+v, details %s; want %+v", e.CurrentState, e.Details, want)
	}

	// The holder echoes last_heartbeat byte for byte.
	b.clock.Advance(1500 * time.Microsecond)
	hb2, err := worker.HeartbeatWork(ctx, env.ID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: hb.LastHeartbeat})
	if err != nil || hb2.LastHeartbeat == hb.LastHeartbeat || hb2.TTLSeconds != 60 {
		t.Fatalf("second heartbeat %+v %v", hb2, err)
	}
	_, err = worker.HeartbeatWork(ctx, env.ID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: hb.LastHeartbeat})
	apiError(t, err, 412, "precondition_failed_error")

	stopping, err := b.admin.StopWork(ctx, env.ID, w.ID, false)
	if err != nil || stopping.State != client.StateStopping || stopping.StopRequestedAt == nil || stopping.StoppedAt != nil {
		t.Fatalf("graceful stop %+v %v", stopping, err)
	}
	hb3, err := worker.HeartbeatWork(ctx, env.ID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: hb2.LastHeartbeat})
	if err != nil || hb3.State != client.StateStopping {
		t.Fatalf("heartbeat while stopping %+v %v", hb3, err)
	}
	if _, err := worker.AckWork(ctx, env.ID, w.ID, client.AckParams{WorkerID: "w1"}); !client.IsConflict(err) {
		t.Fatalf("ack while stopping: %v", err)
	}
	stopped, err := worker.StopWork(ctx, env.ID, w.ID, false)
	if err != nil || stopped.State != client.StateStopped || stopped.StoppedAt == nil {
		t.Fatalf("confirming stop %+v %v", stopped, err)
	}
	if again, err := worker.StopWork(ctx, env.ID, w.ID, true); err != nil || !again.StoppedAt.Equal(*stopped.StoppedAt) {
		t.Fatalf("stop of a stopped item %+v %v", again, err)
	}
	_, err = worker.HeartbeatWork(ctx, env.ID, w.ID, client.HeartbeatParams{})
	apiError(t, err, 409, "invalid_request_error")

	list, err := worker.ListWork(ctx, env.ID, client.ListWorkParams{States: []client.State{client.StateStopped}})
	if err != nil || len(list.Data) != 1 || list.Data[0].ID != w.ID || list.Data[0].LatestHeartbeatAtRaw != hb3.LastHeartbeat {
		t.Fatalf("list stopped %+v %v", list, err)
	}
	list, err = worker.ListWork(ctx, env.ID, client.ListWorkParams{States: []client.State{client.StateQueued, client.StateActive}})
	if err != nil || len(list.Data) != 0 {
		t.Fatalf("list live %+v %v", list, err)
	}
}

func TestForceStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	b.session(env.ID)
	w, err := b.admin.PollWork(b.ctx, env.ID, client.PollParams{})
	if err != nil || w == nil {
		t.Fatalf("poll %+v %v", w, err)
	}
	if _, err := b.admin.AckWork(b.ctx, env.ID, w.ID, client.AckParams{}); err != nil {
		t.Fatal(err)
	}
	stopped, err := b.admin.StopWork(b.ctx, env.ID, w.ID, true)
	if err != nil || stopped.State != client.StateStopped || stopped.StopRequestedAt != nil {
		t.Fatalf("forced stop %+v %v", stopped, err)
	}
}

func TestLongPollWakes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	polled := make(chan *client.Work, 1)
	go func() {
		for {
			w, err := b.admin.PollWork(b.ctx, env.ID, client.PollParams{BlockMS: 999})
			if err != nil || w != nil {
				polled <- w
				return
			}
		}
	}()
	sess := b.session(env.ID)
	if w := <-polled; w == nil || w.Data.ID != sess.ID {
		t.Fatalf("long poll got %+v", w)
	}
}

func TestWorkEndpointsNeedSelfHosted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cloud, err := b.admin.CreateEnvironment(b.ctx, client.CreateEnvironmentParams{Name: "cloud"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.admin.PollWork(b.ctx, cloud.ID, client.PollParams{})
	apiError(t, err, 400, "invalid_request_error")
	_, err = b.admin.GetWork(b.ctx, b.selfHosted("byoc").ID, "work_0000000000000000000000000000000f")
	apiError(t, err, 404, "not_found_error")
}

// Work, Environment and Session re-encode to berth's bytes: keys in the spec's order,
// timestamps as written.
func TestWorkEncodesAsServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	sess, err := b.admin.CreateSession(b.ctx, client.CreateSessionParams{Agent: "a", EnvironmentID: env.ID,
		Metadata: map[string]string{"b": "2", "a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.admin.PollWork(b.ctx, env.ID, client.PollParams{})
	if err != nil || w == nil || w.Data.ID != sess.ID {
		t.Fatalf("poll %+v %v", w, err)
	}
	if _, err := b.admin.AckWork(b.ctx, env.ID, w.ID, client.AckParams{}); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(1230 * time.Microsecond)
	if _, err := b.admin.HeartbeatWork(b.ctx, env.ID, w.ID, client.HeartbeatParams{}); err != nil {
		t.Fatal(err)
	}
	w, err = b.admin.GetWork(b.ctx, env.ID, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	served := rawGet(t, b, "/environments/"+env.ID+"/work/"+w.ID)
	if string(enc) != string(served) {
		t.Fatalf("re-encoded\n%s\nserved\n%s", enc, served)
	}
	gotEnv, err := b.admin.GetEnvironment(b.ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	gotSess, err := b.admin.GetSession(b.ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	for path, v := range map[string]any{"/environments/" + env.ID: gotEnv, "/sessions/" + sess.ID: gotSess} {
		enc, err := json.Marshal(v)
		if served := rawGet(t, b, path); err != nil || string(enc) != string(served) {
			t.Errorf("re-encoded\n%s\nserved\n%s", enc, served)
		}
	}
	var back client.Work
	if err := json.Unmarshal(enc, &back); err != nil || back.LatestHeartbeatAtRaw != w.LatestHeartbeatAtRaw {
		t.Fatalf("decoded again: %+v %v", back, err)
	}
}

// rawGet answers a GET of the API with the admin token, bytes as served.
func rawGet(t *testing.T, b *bundle, path string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(b.ctx, "GET", b.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+b.token("admin", ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s %v", path, resp.StatusCode, body, err)
	}
	return body
}
