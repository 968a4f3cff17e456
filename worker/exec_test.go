package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/worker"
)

// The child gets BERTH_WORK_ID, BERTH_SESSION_ID, BERTH_ENVIRONMENT_ID and
// BERTH_WORKER_ID, the work item's JSON on stdin (the bytes the poll answered), and
// Exec.Env; each line of its stdout and stderr goes to the worker's log with the work ID.
func TestChildGetsItsEnvironmentStdinAndLogsItsOutput(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	sess, item := b.session(map[string]string{"team": "blue"})
	out := t.TempDir()
	script := `env | grep '^BERTH_' > "$OUT/env"; echo "EXTRA=$EXTRA" >> "$OUT/env"; cat > "$OUT/stdin"
echo "hello from $BERTH_WORK_ID"; echo "complaint from $BERTH_WORK_ID" >&2`
	run := b.start(worker.Config{WorkerID: "wk-child-env", Handler: &worker.Exec{
		Command: script, Env: []string{"OUT=" + out, "EXTRA=given"}}})
	final := b.waitState(item.ID, client.StateStopped)
	if final.Metadata["exit_code"] != "0" {
		t.Fatalf("exit_code %q\n%s", final.Metadata["exit_code"], run.log)
	}

	env := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	for k, want := range map[string]string{
		"BERTH_WORK_ID": item.ID, "BERTH_SESSION_ID": sess.ID, "BERTH_ENVIRONMENT_ID": b.env,
		"BERTH_WORKER_ID": "wk-child-env", "EXTRA": "given",
	} {
		if env[k] != want {
			t.Errorf("child's %s = %q, want %q", k, env[k], want)
		}
	}

	stdin, err := os.ReadFile(filepath.Join(out, "stdin"))
	if err != nil {
		t.Fatal(err)
	}
	var polled []byte
	for _, p := range b.rec.snapshot(func(c call) bool { return c.Op == "poll" && c.Status == 200 }) {
		if strings.Contains(string(p.Resp), item.ID) {
			polled = p.Resp
		}
	}
	if string(stdin) != string(polled) {
		t.Errorf("child's stdin:\n%s\nwant the polled item:\n%s", stdin, polled)
	}
	var w client.Work
	if err := json.Unmarshal(stdin, &w); err != nil || w.ID != item.ID || w.Data.ID != sess.ID ||
		w.EnvironmentID != b.env || w.Metadata["team"] != "blue" {
		t.Errorf("child's stdin decodes to %+v (%v)", w, err)
	}

	found := map[string]bool{}
	for _, l := range run.log.lines() {
		if l["work_id"] != item.ID {
			continue
		}
		switch l["msg"] {
		case "hello from " + item.ID:
			found["stdout"] = l["stream"] == "stdout"
		case "complaint from " + item.ID:
			found["stderr"] = l["stream"] == "stderr"
		}
	}
	if !found["stdout"] || !found["stderr"] {
		t.Errorf("child's output not in the log with the work ID and stream (%v):\n%s", found, run.log)
	}
}

// When the handler returns, its exit code goes into the item's metadata and the item is
// stopped: a graceful request (→ stopping) and then the confirmation (→ stopped). A
// child killed by a signal records 128+signal, a command that cannot be found sh's 127,
// and a handler that could not run its work -1.
func TestExitCodeIsRecordedThenTheItemIsStopped(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	cases := map[string]string{ // script → exit_code
		"exit 0":                      "0",
		"exit 3":                      "3",
		"kill -KILL $$":               "137",
		"no-such-command-for-berth":   "127",
		"handler error (not a child)": "-1",
	}
	items := map[string]string{} // work ID → want
	for script, want := range cases {
		s, w := b.session(map[string]string{"case": script})
		items[w.ID] = want
		if err := os.WriteFile(filepath.Join(dir, s.ID+".sh"), []byte(script+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec := &worker.Exec{Command: `. "$DIR/$BERTH_SESSION_ID.sh"`, Env: []string{"DIR=" + dir}, Logger: b.logger}
	b.start(worker.Config{Capacity: len(cases), Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
		if strings.HasPrefix(job.Work.Metadata["case"], "handler error") {
			return 0, errors.New("cannot run this work")
		}
		return exec.Handle(ctx, job)
	})})
	for id, want := range items {
		w := b.waitState(id, client.StateStopped)
		if w.Metadata["exit_code"] != want || w.StopRequestedAt == nil {
			t.Errorf("%q: exit_code %q (want %s), stop_requested_at %v", w.Metadata["case"], w.Metadata["exit_code"], want, w.StopRequestedAt)
		}
		var ops []string
		var stops []call
		for _, c := range b.rec.of(id, "") {
			if c.Op != "heartbeat" && c.Op != "get" {
				ops = append(ops, c.Op)
			}
			if c.Op == "stop" {
				stops = append(stops, c)
			}
		}
		if strings.Join(ops, " ") != "ack update stop stop" {
			t.Errorf("%q: calls %v, want ack update stop stop", w.Metadata["case"], ops)
			continue
		}
		if stops[0].force() || stops[1].force() ||
			!strings.Contains(string(stops[0].Resp), `"state":"stopping"`) || !strings.Contains(string(stops[1].Resp), `"state":"stopped"`) {
			t.Errorf("%q: stops %s → %s, %s → %s; want graceful, stopping then stopped", w.Metadata["case"],
				stops[0].Body, stops[0].Resp, stops[1].Body, stops[1].Resp)
		}
	}
}

// handlerTimes records, per work item, when the handler's context ended (and why) and
// when the handler returned.
type handlerTimes struct {
	mu       sync.Mutex
	ended    map[string]causeOf
	returned map[string]time.Time
}

func (h *handlerTimes) wrap(next worker.Handler) worker.Handler {
	h.ended, h.returned = map[string]causeOf{}, map[string]time.Time{}
	return worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
		stop := context.AfterFunc(ctx, func() {
			h.mu.Lock()
			h.ended[job.Work.ID] = causeOf{at: time.Now(), cause: context.Cause(ctx)}
			h.mu.Unlock()
		})
		defer stop()
		code, err := next.Handle(ctx, job)
		h.mu.Lock()
		h.returned[job.Work.ID] = time.Now()
		h.mu.Unlock()
		return code, err
	})
}

func (h *handlerTimes) get(id string) (causeOf, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ended[id], h.returned[id]
}

// An operator's stop (a graceful stop call, or a session cancel): the next heartbeat
// answers stopping, the child gets SIGTERM, and SIGKILL after KillGrace if it is still
// there; its exit code is recorded and the stop confirmed with one call.
func TestOperatorStopTerminatesThenKillsAfterGrace(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	scripts := map[string]string{
		// Ends on SIGTERM, with a code of its own.
		"polite": `trap 'echo "got TERM"; exit 7' TERM; echo "ready $BERTH_WORK_ID"; sleep 60 & wait`,
		// Ignores SIGTERM (and so does its sleep): only SIGKILL ends it.
		"stubborn": `trap '' TERM; echo "ready $BERTH_WORK_ID"; sleep 60`,
	}
	sess := map[string]*client.Session{}
	item := map[string]client.Work{}
	for name, script := range scripts {
		sess[name], item[name] = b.session(nil)
		if err := os.WriteFile(filepath.Join(dir, sess[name].ID+".sh"), []byte(script+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const grace = 500 * time.Millisecond
	var times handlerTimes
	run := b.start(worker.Config{Capacity: 2, TTL: 10, HeartbeatInterval: 50 * time.Millisecond,
		Handler: times.wrap(&worker.Exec{Command: `. "$DIR/$BERTH_SESSION_ID.sh"`, KillGrace: grace, Env: []string{"DIR=" + dir}, Logger: b.logger})})
	for _, w := range item {
		run.log.waitFor(t, "ready "+w.ID)
	}
	ctx := context.Background()
	if _, err := b.admin.StopWork(ctx, b.env, item["polite"].ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.CancelSession(ctx, sess["stubborn"].ID); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]string{"polite": "7", "stubborn": "137"} {
		id := item[name].ID
		w := b.waitState(id, client.StateStopped)
		if w.Metadata["exit_code"] != want {
			t.Errorf("%s: exit_code %q, want %s", name, w.Metadata["exit_code"], want)
		}
		ended, returned := times.get(id)
		if !isErr(ended.cause, worker.ErrStopRequested) {
			t.Errorf("%s: handler cancelled with %v, want ErrStopRequested", name, ended.cause)
		}
		// The polite child's exit code (7, not 137) shows that SIGTERM ended it.
		if took := returned.Sub(ended.at); name == "stubborn" && took < grace {
			t.Errorf("stubborn child ended %v after the stop, before the %v kill grace", took, grace)
		}
		stops := b.rec.of(id, "stop")
		if len(stops) != 1 || stops[0].force() || !strings.Contains(string(stops[0].Resp), `"state":"stopped"`) {
			t.Errorf("%s: worker's stop calls %d (%v), want one graceful confirmation", name, len(stops), stops)
		}
	}
	log := run.log.String()
	for _, want := range []string{`"msg":"got TERM"`, `"msg":"child outlived its kill grace; killing it"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// A child that ignores SIGTERM is in its kill grace (an operator asked for a stop) when
// the work must end at once: the lease is lost (the operator forced the stop, so the
// next heartbeat gets 409), or the worker is forced (the second signal). Either cuts the
// grace short: SIGKILL at once, not a minute later.
func TestLeaseLossOrForceDuringKillGraceKillsAtOnce(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	var ids []string
	for range 2 {
		s, w := b.session(nil)
		ids = append(ids, w.ID)
		script := `trap '' TERM; echo "ready $BERTH_WORK_ID"; sleep 120`
		if err := os.WriteFile(filepath.Join(dir, s.ID+".sh"), []byte(script+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lost, forced := ids[0], ids[1]
	var times handlerTimes
	run := b.start(worker.Config{Capacity: 2, TTL: 10, HeartbeatInterval: 50 * time.Millisecond, DrainTimeout: time.Minute,
		Handler: times.wrap(&worker.Exec{Command: `. "$DIR/$BERTH_SESSION_ID.sh"`, KillGrace: time.Minute,
			Env: []string{"DIR=" + dir}, Logger: b.logger})})
	ctx := context.Background()
	for _, id := range ids {
		run.log.waitFor(t, "ready "+id)
		if _, err := b.admin.StopWork(ctx, b.env, id, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		run.log.waitFor(t, `"msg":"terminating child","work_id":"`+id+`"`)
	}

	// The operator forces the stop of the first: the lease is gone.
	if _, err := b.admin.StopWork(ctx, b.env, lost, true); err != nil {
		t.Fatal(err)
	}
	run.log.waitFor(t, "abandoning the item without stopping it")
	if _, returned := times.get(lost); returned.IsZero() {
		t.Fatalf("handler of %s has not returned", lost)
	}
	noFinishCalls(t, b, lost)

	// The worker is forced while the second is in its grace.
	run.cancel()
	run.w.Force()
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	w := b.get(forced)
	if w.Metadata["exit_code"] != "137" || w.State != client.StateStopped {
		t.Errorf("forced item: %s, exit_code %q", w.State, w.Metadata["exit_code"])
	}
	if stops := b.rec.of(forced, "stop"); len(stops) != 1 || !stops[0].force() {
		t.Errorf("forced item: stop calls %v, want one with force=true", stops)
	}
	for _, id := range ids {
		ended, returned := times.get(id)
		if d := returned.Sub(ended.at); d > 30*time.Second {
			t.Errorf("%s: handler returned %v after its stop request: the kill grace was waited out", id, d)
		}
	}
	if n := strings.Count(run.log.String(), "told to stop at once during the kill grace"); n != 2 {
		t.Errorf("%d grace periods cut short, want 2:\n%s", n, run.log)
	}
}

// With Events, the child's stdin is the item's JSON line, then the session's events as
// JSON lines: its history, then each new one live, in the history's order.
func TestChildFollowsItsSessionWithEvents(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	sess, item := b.session(nil)
	if _, err := b.admin.SendEvents(context.Background(), sess.ID, []any{client.UserMessage("before the run")}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	script := `while read -r line; do
  printf '%s\n' "$line" >> "$OUT/stdin"
  case "$line" in *'"type":"agent.message"'*) echo "got the agent's message" ;; *'"type":"user.interrupt"'*) exit 0 ;; esac
done
exit 3`
	run := b.start(worker.Config{WorkerID: "wk-events", Handler: &worker.Exec{Command: script, Env: []string{"OUT=" + out}, Events: true, Logger: b.logger}})
	msg := map[string]any{"type": "agent.message", "content": []map[string]string{{"type": "text", "text": "working"}}}
	if _, err := b.admin.SendEvents(context.Background(), sess.ID, []any{msg}); err != nil {
		t.Fatal(err)
	}
	b.log.waitFor(t, "got the agent's message")
	if _, err := b.admin.SendEvents(context.Background(), sess.ID, []any{map[string]any{"type": "user.interrupt"}}); err != nil {
		t.Fatal(err)
	}
	final := b.waitState(item.ID, client.StateStopped)
	if final.Metadata["exit_code"] != "0" {
		t.Fatalf("exit_code %q\n%s", final.Metadata["exit_code"], run.log)
	}
	raw, err := os.ReadFile(filepath.Join(out, "stdin"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	var first client.Work
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.ID != item.ID {
		t.Fatalf("first line %q: %v", lines[0], err)
	}
	var want []string
	for e, err := range b.admin.AllEvents(context.Background(), sess.ID, client.ListEventsParams{ListParams: client.ListParams{Limit: 1000}}) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(e.Raw))
		if e.Type == "user.interrupt" {
			break
		}
	}
	if got := lines[1:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events on stdin:\n%s\nwant the history:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
