package api_test

// Anthropic's Go SDK (github.com/anthropics/anthropic-sdk-go/v2, lib/environments), its own
// code unchanged, against a real berth in the Anthropic dialect (API.md §8): the raw work
// service decoded with the SDK's types, the WorkPoller, and the EnvironmentWorker. Every
// answer the SDK gets is also checked against the OpenAPI document (sdkRecorder).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/lib/environments"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/param"

	"github.com/berth-sh/berth/internal/api"
)

// sdkCall is one HTTP exchange the SDK made.
type sdkCall struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Status                 int
	Body                   []byte // nil for a stream
}

// sdkRecorder is an SDK middleware (it wraps each attempt, retries included): it records
// every exchange, checks each answer as the harness checks its own (OpenAPI document,
// x-request-id, JSON), and tells watchers of each exchange.
type sdkRecorder struct {
	h       *harness
	mu      sync.Mutex
	calls   []sdkCall
	watches []func(sdkCall)
}

func (r *sdkRecorder) middleware(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	res, err := next(req)
	if err != nil {
		return res, err
	}
	c := sdkCall{Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery,
		Header: req.Header.Clone(), Status: res.StatusCode}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, rerr := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(b))
		if rerr != nil {
			return res, nil // the SDK sees the short body; the exchange is not recorded
		}
		c.Body = b
		r.h.check(req.Method, req.URL, &response{Status: res.StatusCode, Header: res.Header, Body: b})
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	watches := slices.Clone(r.watches)
	r.mu.Unlock()
	for _, w := range watches {
		w(c)
	}
	return res, nil
}

// watch calls fn with every exchange from now on.
func (r *sdkRecorder) watch(fn func(sdkCall)) {
	r.mu.Lock()
	r.watches = append(r.watches, fn)
	r.mu.Unlock()
}

// since returns the exchanges after the first n.
func (r *sdkRecorder) since(n int) []sdkCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[n:])
}

func (r *sdkRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// sdkClient is an SDK client for h's server root, with no credentials of its own but
// the options given (the environment helpers bring the environment key), and no
// configuration from the environment of the test process.
func sdkClient(h *harness, opts ...option.RequestOption) (anthropic.Client, *sdkRecorder) {
	rec := &sdkRecorder{h: h}
	base := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(h.url + "/"),
		option.WithHTTPClient(h.httpClient()),
		option.WithMiddleware(rec.middleware),
	}
	return anthropic.NewClient(append(base, opts...)...), rec
}

// sdkTime parses a timestamp the SDK decoded.
func sdkTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("timestamp %q: %v", s, err)
	}
	return tm
}

// sdkStatus is the HTTP status of an SDK error (0 when it is not an API error).
func sdkStatus(err error) int {
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// TestAnthropicSDKWorkService drives one item through every work operation of the SDK's
// BetaEnvironmentWorkService, decoding berth's answers with the SDK's own types: poll,
// stats, ack, heartbeat NO_HEARTBEAT then echo, a stale echo (412 with its error_code),
// get, update metadata, list (paged on next_page alone), stop graceful (the heartbeat
// then reports stopping without extending the lease) then confirm, a 409 sent once
// (x-should-retry: false), and an empty poll (null, which the SDK reads as no item).
func TestAnthropicSDKWorkService(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	worker := h.token(api.RoleWorker, env)
	sess := h.session(env)
	client, rec := sdkClient(h, option.WithAuthToken(worker))
	work := client.Beta.Environments.Work
	ctx := context.Background()

	st, err := work.Stats(ctx, env, anthropic.BetaEnvironmentWorkStatsParams{})
	if err != nil || st.Depth != 1 || st.Pending != 0 || st.OldestQueuedAt == "" || st.Type != "work_queue_stats" {
		t.Fatalf("stats before the poll: %+v, %v", st, err)
	}

	polled, err := work.Poll(ctx, env, anthropic.BetaEnvironmentWorkPollParams{
		BlockMs: param.NewOpt(int64(999)), AnthropicWorkerID: param.NewOpt("sdk-worker-1")})
	if err != nil || polled == nil {
		t.Fatalf("poll: %v, %v", polled, err)
	}
	if polled.ID == "" || polled.EnvironmentID != env || polled.Data.ID != sess || polled.Data.Type != "session" ||
		polled.State != anthropic.BetaSelfHostedWorkStateQueued || polled.Type != "work" || polled.Secret != "" {
		t.Errorf("polled item %s", polled.RawJSON())
	}
	if !strings.Contains(polled.RawJSON(), `"metadata":{},"secret":null}`) {
		t.Errorf(`the work object does not end with "secret": null: %s`, polled.RawJSON())
	}
	wid := polled.ID
	st, err = work.Stats(ctx, env, anthropic.BetaEnvironmentWorkStatsParams{})
	if err != nil || st.Depth != 0 || st.Pending != 1 || st.WorkersPolling != 1 {
		t.Errorf("stats after the poll: %s, %v", st.RawJSON(), err)
	}

	acked, err := work.Ack(ctx, wid, anthropic.BetaEnvironmentWorkAckParams{EnvironmentID: env})
	if err != nil || acked.State != anthropic.BetaSelfHostedWorkStateStarting || acked.AcknowledgedAt == "" {
		t.Fatalf("ack: %v, %v", acked, err)
	}
	if it, err := h.store.GetWork(ctx, env, wid); err != nil || it.AckedBy != "sdk-worker-1" {
		t.Errorf("acknowledged by %q (%v), want the Anthropic-Worker-ID of the poll", it.AckedBy, err)
	}

	beat := func(expected string) (*anthropic.BetaSelfHostedWorkHeartbeatResponse, error) {
		return work.Heartbeat(ctx, wid, anthropic.BetaEnvironmentWorkHeartbeatParams{
			EnvironmentID: env, ExpectedLastHeartbeat: param.NewOpt(expected)})
	}
	first, err := beat("NO_HEARTBEAT")
	if err != nil || !first.LeaseExtended || first.State != "active" || first.TTLSeconds != 60 || first.LastHeartbeat == "" {
		t.Fatalf("first heartbeat: %v, %v", first, err)
	}
	second, err := beat(first.LastHeartbeat)
	if err != nil || !second.LeaseExtended || second.State != "active" || !sdkTime(t, second.LastHeartbeat).After(sdkTime(t, first.LastHeartbeat)) {
		t.Fatalf("echoed heartbeat: %v, %v", second, err)
	}
	n := rec.count()
	_, err = beat(first.LastHeartbeat) // stale: second took its place
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 412 || apiErr.Details.ErrorCode != "heartbeat_precondition_failed" ||
		apiErr.Details.CurrentState.State != "active" || apiErr.Details.CurrentState.LastHeartbeat != second.LastHeartbeat {
		t.Errorf("stale heartbeat: %v", err)
	}
	if calls := rec.since(n); len(calls) != 1 {
		t.Errorf("the 412 was sent %d times, want once", len(calls))
	}

	got, err := work.Get(ctx, wid, anthropic.BetaEnvironmentWorkGetParams{EnvironmentID: env})
	if err != nil || got.State != "active" || got.StartedAt == "" || got.LatestHeartbeatAt != second.LastHeartbeat {
		t.Errorf("get: %v, %v", got, err)
	}
	upd, err := work.Update(ctx, wid, anthropic.BetaEnvironmentWorkUpdateParams{EnvironmentID: env,
		BetaSelfHostedWorkUpdateRequest: anthropic.BetaSelfHostedWorkUpdateRequestParam{Metadata: map[string]string{"exit_code": "0"}}})
	if err != nil || upd.Metadata["exit_code"] != "0" {
		t.Errorf("update metadata: %v, %v", upd, err)
	}

	// Two more items, listed two at a time: the SDK pages on next_page alone.
	h.session(env)
	h.session(env)
	var listed []string
	pager := work.ListAutoPaging(ctx, env, anthropic.BetaEnvironmentWorkListParams{Limit: param.NewOpt(int64(2))})
	for pager.Next() {
		listed = append(listed, pager.Current().ID)
	}
	if err := pager.Err(); err != nil || len(listed) != 3 || listed[0] != wid || !slices.IsSorted(listed) {
		t.Errorf("listed %v, %v; want 3 items from %s, ascending", listed, err, wid)
	}
	page, err := work.List(ctx, env, anthropic.BetaEnvironmentWorkListParams{Limit: param.NewOpt(int64(1000))})
	if err != nil || len(page.Data) != 3 || page.NextPage != "" || page.Data[0].Metadata["exit_code"] != "0" {
		t.Errorf("list with limit 1000: %v, %v", page, err)
	}

	// Graceful stop: stopping. The heartbeat reports it, extending nothing, whatever it
	// expects; the worker confirms, and the heartbeat reports stopped.
	stop := func(force bool) (*anthropic.BetaSelfHostedWork, error) {
		p := anthropic.BetaEnvironmentWorkStopParams{EnvironmentID: env}
		if force {
			p.BetaSelfHostedWorkStopRequest.Force = param.NewOpt(true)
		}
		return work.Stop(ctx, wid, p)
	}
	stopping, err := stop(false)
	if err != nil || stopping.State != "stopping" || stopping.StopRequestedAt == "" {
		t.Fatalf("graceful stop: %v, %v", stopping, err)
	}
	for _, exp := range []string{second.LastHeartbeat, first.LastHeartbeat, "NO_HEARTBEAT"} {
		hb, err := beat(exp)
		if err != nil || hb.State != "stopping" || hb.LeaseExtended || hb.LastHeartbeat != second.LastHeartbeat || hb.TTLSeconds != 60 {
			t.Errorf("heartbeat expecting %s on a stopping item: %v, %v", exp, hb, err)
		}
	}
	stopped, err := stop(false)
	if err != nil || stopped.State != "stopped" || stopped.StoppedAt == "" {
		t.Fatalf("confirming stop: %v, %v", stopped, err)
	}
	if hb, err := beat(second.LastHeartbeat); err != nil || hb.State != "stopped" || hb.LeaseExtended {
		t.Errorf("heartbeat on a stopped item: %v, %v", hb, err)
	}
	if again, err := stop(true); err != nil || again.State != "stopped" || again.StoppedAt != stopped.StoppedAt {
		t.Errorf("force stop of a stopped item: %v, %v", again, err)
	}

	// A 409 says x-should-retry: false, so the SDK sends it once.
	n = rec.count()
	if _, err := work.Ack(ctx, wid, anthropic.BetaEnvironmentWorkAckParams{EnvironmentID: env}); sdkStatus(err) != 409 {
		t.Errorf("ack of a stopped item: %v, want 409", err)
	}
	if calls := rec.since(n); len(calls) != 1 || calls[0].Status != 409 {
		t.Errorf("the 409 was sent %d times, want once", len(calls))
	}

	// The SDK's requests, as it sends them: Bearer, its beta header, the worker id on the
	// poll, no beta=true query.
	for _, c := range rec.since(0) {
		if c.Header.Get("Authorization") != "Bearer "+worker || c.Header.Get("X-Api-Key") != "" ||
			!strings.Contains(c.Header.Get("anthropic-beta"), environments.ManagedAgentsBeta) ||
			strings.Contains(c.RawQuery, "beta=") {
			t.Errorf("%s %s?%s: headers %v", c.Method, c.Path, c.RawQuery, c.Header)
		}
		if strings.HasSuffix(c.Path, "/work/poll") != (c.Header.Get("Anthropic-Worker-ID") != "") {
			t.Errorf("%s %s: Anthropic-Worker-ID %q", c.Method, c.Path, c.Header.Get("Anthropic-Worker-ID"))
		}
	}

	// The two other items are delivered, then the queue is empty: null, no item.
	for range 2 {
		if it, err := work.Poll(ctx, env, anthropic.BetaEnvironmentWorkPollParams{}); err != nil || it == nil || it.ID == "" {
			t.Fatalf("poll: %v, %v", it, err)
		}
	}
	if it, err := work.Poll(ctx, env, anthropic.BetaEnvironmentWorkPollParams{}); err != nil || (it != nil && it.ID != "") {
		t.Errorf("poll of an empty queue: %v, %v; want no item", it, err)
	}
}

// TestAnthropicSDKWorkPoller runs the SDK's WorkPoller, as a long-running worker would, over
// several items with an empty poll between them: it claims and acknowledges each item in
// queue order with its WorkerID, asks for a graceful stop of each once the next Next is
// called, and of the last one on Close. Then a draining poller ends at its first empty
// poll without an error.
func TestAnthropicSDKWorkPoller(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	worker := h.token(api.RoleWorker, env)
	client, rec := sdkClient(h)
	ctx := context.Background()
	sessions := []string{h.session(env), h.session(env), h.session(env)}

	emptyPoll := make(chan struct{}, 1)
	rec.watch(func(c sdkCall) {
		if strings.HasSuffix(c.Path, "/work/poll") && string(c.Body) == "null" {
			select {
			case emptyPoll <- struct{}{}:
			default:
			}
		}
	})

	poller := environments.NewWorkPoller(ctx, client, environments.WorkPollerOptions{
		EnvironmentID: env, EnvironmentKey: worker, WorkerID: "poller-1", Logger: discardLogger(),
		BlockMs: param.NewOpt(int64(1)), // an empty poll answers at once
	})
	var claimed []string
	next := func() string {
		t.Helper()
		if !poller.Next() {
			t.Fatalf("Next: false, %v", poller.Err())
		}
		w := poller.Current()
		if w.State != "queued" || w.Data.Type != "session" || w.EnvironmentID != env {
			t.Errorf("claimed %s", w.RawJSON())
		}
		claimed = append(claimed, w.ID)
		return w.Data.ID
	}
	for i, sess := range sessions {
		if got := next(); got != sess {
			t.Errorf("item %d is of session %s, want %s (queue order)", i, got, sess)
		}
		if it := h.work(env, claimed[i]); it.State != "starting" {
			t.Errorf("claimed item %s is %s, want starting (acknowledged)", it.ID, it.State)
		}
		if i > 0 {
			if prev := h.work(env, claimed[i-1]); prev.State != "stopping" {
				t.Errorf("previous item %s is %s after Next, want stopping", prev.ID, prev.State)
			}
		}
	}

	// The queue is empty now; the fourth item is queued once the poller has been told so.
	done := make(chan string)
	go func() {
		<-emptyPoll
		done <- h.session(env)
	}()
	fourth := next()
	if want := <-done; fourth != want {
		t.Errorf("item after the empty poll is of session %s, want %s", fourth, want)
	}
	if err := poller.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, id := range claimed {
		it := h.work(env, id)
		if it.State != "stopping" {
			t.Errorf("item %s is %s after Close, want stopping", id, it.State)
		}
		if w, _ := h.store.GetWork(ctx, env, id); w.AckedBy != "poller-1" {
			t.Errorf("item %s acknowledged by %q, want poller-1", id, w.AckedBy)
		}
	}
	if poller.Next() {
		t.Error("Next after Close: true")
	}

	// Draining: the queued item is claimed; the first empty poll ends the iteration, with
	// no error; AutoStop off leaves the item to its consumer.
	h.session(env)
	drain := environments.NewWorkPoller(ctx, client, environments.WorkPollerOptions{
		EnvironmentID: env, EnvironmentKey: worker, WorkerID: "drainer", Logger: discardLogger(),
		Drain: true, BlockMs: param.Null[int64](), AutoStop: param.NewOpt(false),
	})
	defer drain.Close()
	var drained []*anthropic.BetaSelfHostedWork
	for w, err := range drain.All() {
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		drained = append(drained, w)
	}
	if len(drained) != 1 {
		t.Fatalf("drained %d items, want 1", len(drained))
	}
	if it := h.work(env, drained[0].ID); it.State != "starting" {
		t.Errorf("drained item is %s, want starting", it.State)
	}
}

// sessionItem creates a session in env and returns its work item's ID, whatever the
// item's state by the time it is read (a running worker may have claimed it already).
func sessionItem(h *harness, env string) (sess, item string) {
	h.t.Helper()
	sess = h.session(env)
	r := h.do("GET", "/environments/"+env+"/work?limit=100", "")
	wantStatus(h.t, r, 200)
	var page struct{ Data []workJSON }
	r.decode(h.t, &page)
	for _, w := range page.Data {
		if w.Data["id"] == sess {
			return sess, w.ID
		}
	}
	h.t.Fatalf("no work item for session %s", sess)
	return "", ""
}

// hasRoute reports whether the server serves method pattern.
func hasRoute(h *harness, method, pattern string) bool {
	for _, rt := range h.srv.Routes() {
		if rt.Method == method && rt.Pattern == pattern {
			return true
		}
	}
	return false
}

// await returns a channel that receives the first exchange from now on that match
// accepts.
func (r *sdkRecorder) await(match func(sdkCall) bool) <-chan sdkCall {
	ch := make(chan sdkCall, 1)
	var once sync.Once
	r.watch(func(c sdkCall) {
		if match(c) {
			once.Do(func() { ch <- c })
		}
	})
	return ch
}

// TestAnthropicSDKEnvironmentWorker runs the SDK's EnvironmentWorker (its WorkPoller, lease
// heartbeat and SessionToolRunner with the standard agent toolset) against berth:
//
//   - it claims a session's item and heartbeats it; an agent.tool_use for bash, posted to
//     the session through berth by an admin, is run by the SDK's bash tool, and its
//     user.tool_result lands in the session's history;
//   - a graceful stop asked through berth reaches it through the heartbeat's state: the
//     run of the item ends and the SDK force-stops it, so the item ends stopped;
//   - a lost lease (another heartbeat took its place: 412) makes it leave the item alone,
//     without stopping it, and poll again;
//   - when Run's context ends with an item in hand, the item is force-stopped.
//
// The worker asks for a 10 s lease (desired_ttl_seconds, through the worker's
// RequestOptions), so that it heartbeats every 5 s rather than every 30 s: the stop and
// the lost lease reach it at its next heartbeat.
func TestAnthropicSDKEnvironmentWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if !hasRoute(h, "GET", api.AnthropicBasePath+"/sessions/{session_id}/events/stream") {
		t.Skip("the session event stream (API.md §7) is not served yet")
	}
	env := h.env(true)
	worker := h.token(api.RoleWorker, env)
	client, rec := sdkClient(h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	workPrefix := api.AnthropicBasePath + "/environments/" + env + "/work/"
	is := func(method, suffix string, status int) func(sdkCall) bool {
		return func(c sdkCall) bool {
			return c.Method == method && strings.HasSuffix(c.Path, suffix) && c.Status == status
		}
	}
	sess, item := sessionItem(h, env)
	firstBeat := rec.await(is("POST", item+"/heartbeat", 200))
	historyRead := rec.await(is("GET", "/sessions/"+sess+"/events", 200))

	w := environments.NewEnvironmentWorker(client, environments.EnvironmentWorkerOptions{
		EnvironmentID: env, EnvironmentKey: worker, WorkerID: "env-worker", Workdir: t.TempDir(),
		Logger:         discardLogger(),
		RequestOptions: []option.RequestOption{option.WithQuery("desired_ttl_seconds", "10")},
	})
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()

	<-firstBeat
	if it := h.work(env, item); it.State != "active" {
		t.Fatalf("item %s after the worker's first heartbeat", it.State)
	}
	<-historyRead // the runner follows the session now: the tool use comes on the stream

	// The agent's side, as whoever drives the session posts it.
	resultPosted := rec.await(is("POST", "/sessions/"+sess+"/events", 200))
	r := h.do("POST", "/sessions/"+sess+"/events",
		`{"events":[{"type":"agent.tool_use","name":"bash","input":{"command":"echo hi from berth"}}]}`)
	wantStatus(t, r, 200)
	var posted struct{ Data []struct{ ID string } }
	r.decode(t, &posted)
	toolUse := posted.Data[0].ID
	<-resultPosted

	var result map[string]any
	for _, ev := range tcList(t, h, "/sessions/"+sess+"/events?limit=1000").Data {
		if ev["type"] == "user.tool_result" && ev["tool_use_id"] == toolUse {
			result = ev
		}
	}
	content, _ := json.Marshal(result["content"])
	if result == nil || result["is_error"] != false || !strings.Contains(string(content), "hi from berth") {
		t.Fatalf("user.tool_result for %s: %v", toolUse, result)
	}

	// Graceful stop through berth: the next heartbeat says stopping; the SDK ends the run
	// and force-stops the item.
	forced := rec.await(func(c sdkCall) bool {
		return is("POST", item+"/stop", 200)(c)
	})
	wantStatus(t, h.do("POST", workPath(env, item, "/stop"), `{}`), 200)
	stopCall := <-forced
	if it := h.work(env, item); it.State != "stopped" || it.StopRequestedAt == nil {
		t.Errorf("item after the graceful stop: %s, stop_requested_at %v", it.State, it.StopRequestedAt)
	}
	if !strings.Contains(string(stopCall.Body), `"state":"stopped"`) {
		t.Errorf("the SDK's stop answered %s", stopCall.Body)
	}

	// A lost lease: someone else's heartbeat takes the item's; the worker's next one gets
	// 412, and it lets the item go without stopping it, and polls again.
	_, lost := sessionItem(h, env)
	beaten := rec.await(is("POST", lost+"/heartbeat", 200))
	<-beaten
	refused := rec.await(is("POST", lost+"/heartbeat", 412))
	wantStatus(t, h.do("POST", workPath(env, lost, "/heartbeat"), ""), 200)
	<-refused
	<-rec.await(func(c sdkCall) bool { return c.Method == "GET" && strings.HasSuffix(c.Path, "/work/poll") })
	for _, c := range rec.since(0) {
		if c.Method == "POST" && c.Path == workPrefix+lost+"/stop" {
			t.Errorf("the worker stopped the item whose lease it lost")
		}
	}
	if it := h.work(env, lost); it.State != "active" {
		t.Errorf("item whose lease was lost: %s, want active (left alone)", it.State)
	}

	// Force stop on exit: Run's context ends while the worker holds an item.
	_, last := sessionItem(h, env)
	<-rec.await(is("POST", last+"/heartbeat", 200))
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	if it := h.work(env, last); it.State != "stopped" || it.StopRequestedAt != nil {
		t.Errorf("item held when Run ended: %s, stop_requested_at %v; want force-stopped", it.State, it.StopRequestedAt)
	}
}
