package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/testserver"
	"github.com/berth-sh/berth/worker"
)

// The tests of this package run a real worker against a real berth server (SQLite in a
// temporary directory, behind httptest) whose clock the test moves by hand. Leases
// therefore never expire by themselves: a test expires them by advancing the clock and
// calling ExpireLeases. Between the worker and the server sits a recorder that notes
// every request the worker makes (the worker token's requests only), and can hold, fail
// or rewrite them.

// testClock is the shared clock that the test moves by hand.
type testClock = testserver.Clock

// call is one request of the worker, as the recorder saw it.
type call struct {
	Op       string // poll, ack, heartbeat, stop, update, get, other
	WorkID   string // "" for a poll
	Query    url.Values
	WorkerID string // the Worker-ID header
	Body     []byte
	Status   int    // 0 when the worker gave up before an answer
	Resp     []byte // the answer's body
	Start    time.Time
	End      time.Time
}

// force reports whether a stop call asked for force=true.
func (c call) force() bool {
	var b struct{ Force bool }
	json.Unmarshal(c.Body, &b)
	return b.Force
}

// interceptor may answer a worker's request itself (true) instead of the server; next
// serves it from the server. It runs before the request is recorded as answered.
type interceptor func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool

// recorder is the middleware between the worker and the server.
type recorder struct {
	next   http.Handler
	secret string // the worker token: only its requests are recorded and intercepted

	mu        sync.Mutex
	calls     []*call
	intercept interceptor
	changed   chan struct{} // closed and replaced whenever a call is answered
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+rc.secret || strings.HasSuffix(r.URL.Path, "/events/stream") {
		// Not the worker's, or a stream, which goes on for as long as it lasts.
		rc.next.ServeHTTP(w, r)
		return
	}
	body := new(bytes.Buffer)
	body.ReadFrom(r.Body)
	r.Body.Close()
	c := &call{Query: r.URL.Query(), WorkerID: r.Header.Get("Worker-ID"), Body: body.Bytes(), Start: time.Now()}
	c.Op, c.WorkID = classify(r.Method, r.URL.Path)
	rc.mu.Lock()
	rc.calls = append(rc.calls, c)
	icpt := rc.intercept
	rc.mu.Unlock()

	r.Body = readCloser{bytes.NewReader(c.Body)}
	rw := httptest.NewRecorder()
	if icpt == nil || !icpt(c, rw, r, rc.next) {
		rc.next.ServeHTTP(rw, r)
	}
	if r.Context().Err() == nil {
		for k, v := range rw.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rw.Code)
		w.Write(rw.Body.Bytes())
	}
	rc.mu.Lock()
	c.End = time.Now()
	if r.Context().Err() == nil {
		c.Status, c.Resp = rw.Code, rw.Body.Bytes()
	}
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// classify names a work endpoint from its path.
func classify(method, path string) (op, workID string) {
	parts := strings.Split(strings.TrimPrefix(path, api.BasePath+"/"), "/")
	// environments/{env}/work[/{id}[/{action}]]
	if len(parts) < 4 || parts[0] != "environments" || parts[2] != "work" {
		return "other", ""
	}
	switch {
	case parts[3] == "poll":
		return "poll", ""
	case len(parts) == 5:
		return parts[4], parts[3]
	case method == "POST":
		return "update", parts[3]
	case method == "GET":
		return "get", parts[3]
	}
	return "other", parts[3]
}

// setIntercept installs f (nil removes it).
func (rc *recorder) setIntercept(f interceptor) {
	rc.mu.Lock()
	rc.intercept = f
	rc.mu.Unlock()
}

// snapshot returns copies of the calls that match (all when match is nil), in arrival
// order.
func (rc *recorder) snapshot(match func(call) bool) []call {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []call
	for _, c := range rc.calls {
		if match == nil || match(*c) {
			out = append(out, *c)
		}
	}
	return out
}

// of returns the answered calls of op on workID ("" op: every op).
func (rc *recorder) of(workID, op string) []call {
	return rc.snapshot(func(c call) bool {
		return c.WorkID == workID && (op == "" || c.Op == op) && !c.End.IsZero()
	})
}

// waitCalls waits until at least n answered calls match, and returns them.
func (rc *recorder) waitCalls(t *testing.T, n int, what string, match func(call) bool) []call {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		ch := rc.changed
		rc.mu.Unlock()
		got := rc.snapshot(func(c call) bool { return !c.End.IsZero() && match(c) })
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d %s; have %d", n, what, len(got))
		}
	}
}

// waitAnswered waits until no recorded call on workID is still unanswered.
func (rc *recorder) waitAnswered(t testing.TB, workID string, deadline time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		rc.mu.Lock()
		ch := rc.changed
		rc.mu.Unlock()
		open := rc.snapshot(func(c call) bool { return c.WorkID == workID && c.End.IsZero() })
		if len(open) == 0 {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("%d calls on %s still unanswered, the first %s", len(open), workID, open[0].Op)
		}
	}
}

// logSink collects a worker's log (one Write per record) and tells waiters of new lines.
type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// lines returns the log's records, decoded.
func (s *logSink) lines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits until the log contains substr.
func (s *logSink) waitFor(t testing.TB, substr string) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := strings.Contains(s.buf.String(), substr), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("log never showed %q:\n%s", substr, s.String())
		}
	}
}

// bench is one server with a self_hosted environment, an admin client and a worker
// token, and the recorder in front of it.
type bench struct {
	t      testing.TB
	srv    *api.Server
	store  store.Store
	clock  *testClock
	base   string // API base URL
	admin  *client.Client
	env    string
	secret string // worker token of env
	rec    *recorder
	log    *logSink     // what the bench's workers log, as JSON
	logger *slog.Logger // writes to log
	api    *testserver.API
	hc     *http.Client // when set, carries every client's requests (newInProcessBench)
}

func newBench(t testing.TB) *bench {
	t.Helper()
	return newBenchWith(t, false)
}

// newInProcessBench is newBench with no network in between: the clients call the
// recorder's ServeHTTP themselves, so that a test in a testing/synctest bubble runs the
// worker and the server together on the bubble's clock.
func newInProcessBench(t *testing.T) *bench {
	t.Helper()
	return newBenchWith(t, true)
}

func newBenchWith(t testing.TB, inProcess bool) *bench {
	t.Helper()
	a := testserver.NewAPI(t, nil)
	st, clock, srv := a.Store, a.Clock, a.Server
	b := &bench{t: t, srv: srv, store: st, clock: clock, api: a, log: newLogSink()}
	b.logger = slog.New(slog.NewJSONHandler(b.log, nil))
	b.rec = &recorder{next: srv, changed: make(chan struct{})}
	if inProcess {
		b.hc = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			// The request as a server would see it.
			sr := r.Clone(r.Context())
			if sr.Body == nil {
				sr.Body = http.NoBody
			}
			sr.RequestURI, sr.RemoteAddr = r.URL.RequestURI(), "192.0.2.1:1234"
			rw := httptest.NewRecorder()
			b.rec.ServeHTTP(rw, sr)
			return rw.Result(), nil
		})}
		b.base = "http://berth.invalid" + api.BasePath
	} else {
		ts := httptest.NewServer(b.rec)
		t.Cleanup(ts.Close)
		b.base = ts.URL + api.BasePath
	}
	b.admin = b.client(a.Admin)
	env, err := b.admin.CreateEnvironment(context.Background(), client.CreateEnvironmentParams{
		Name: "workers", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatalf("create environment: %v", err)
	}
	b.env = env.ID
	b.secret = b.token(api.RoleWorker, b.env)
	b.rec.secret = b.secret
	return b
}

// token creates a token in the store and returns its secret.
func (b *bench) token(role, env string) string {
	b.t.Helper()
	return b.api.Token(role, env)
}

func (b *bench) client(secret string, opts ...client.Option) *client.Client {
	b.t.Helper()
	if b.hc != nil {
		opts = append([]client.Option{client.WithHTTPClient(b.hc)}, opts...)
	}
	c, err := client.New(b.base, secret, opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

// session creates a session (with metadata, optional) and returns it with its queued item.
func (b *bench) session(metadata map[string]string) (*client.Session, client.Work) {
	b.t.Helper()
	ctx := context.Background()
	s, err := b.admin.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_test", EnvironmentID: b.env, Metadata: metadata})
	if err != nil {
		b.t.Fatalf("create session: %v", err)
	}
	items := b.itemsOf(s.ID)
	if len(items) != 1 {
		b.t.Fatalf("session %s has %d items, want 1", s.ID, len(items))
	}
	return s, items[0]
}

// itemsOf lists every work item of a session, oldest first.
func (b *bench) itemsOf(sessionID string) []client.Work {
	b.t.Helper()
	var out []client.Work
	for w, err := range b.admin.AllWork(context.Background(), b.env, client.ListWorkParams{ListParams: client.ListParams{Limit: 100}}) {
		if err != nil {
			b.t.Fatalf("list work: %v", err)
		}
		if w.Data.ID == sessionID {
			out = append(out, w)
		}
	}
	return out
}

// get reads an item.
func (b *bench) get(workID string) *client.Work {
	b.t.Helper()
	w, err := b.admin.GetWork(context.Background(), b.env, workID)
	if err != nil {
		b.t.Fatalf("get work %s: %v", workID, err)
	}
	return w
}

// waitState reads the item until it is in state, or fails the test after a deadline.
// Then it waits until every worker call on the item that the recorder has seen has been
// answered: the server's state is visible before the recorder has finished the call that
// set it, and callers go on to inspect the recorded calls.
func (b *bench) waitState(workID string, state client.State) *client.Work {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		w := b.get(workID)
		if w.State == state {
			b.rec.waitAnswered(b.t, workID, deadline)
			return w
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("item %s is %s, never became %s", workID, w.State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running is a worker whose Run is under way.
type running struct {
	w      *worker.Worker
	id     string // its Worker-ID
	log    *logSink
	cancel context.CancelFunc // the first signal: drain
	done   chan struct{}      // closed when Run has returned; err is set then
	err    error
}

// start makes a worker with cfg (its client, environment, worker ID and logger filled in
// when unset) and runs it until the test ends.
func (b *bench) start(cfg worker.Config) *running {
	b.t.Helper()
	if cfg.Client == nil {
		cfg.Client = b.client(b.secret)
	}
	if cfg.EnvironmentID == "" {
		cfg.EnvironmentID = b.env
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID = "worker-" + strings.ReplaceAll(b.t.Name(), "/", "-")
	}
	r := &running{id: cfg.WorkerID, log: b.log, done: make(chan struct{})}
	if cfg.Logger == nil {
		cfg.Logger = b.logger
	}
	if e, ok := cfg.Handler.(*worker.Exec); ok && e.Logger == nil {
		e.Logger = cfg.Logger
	}
	w, err := worker.New(cfg)
	if err != nil {
		b.t.Fatalf("worker.New: %v", err)
	}
	r.w = w
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.err = w.Run(ctx)
	}()
	b.t.Cleanup(func() {
		cancel()
		w.Force()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			b.t.Errorf("worker did not stop")
		}
	})
	return r
}

// wait waits for Run to return and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return\n%s", r.log)
		return nil
	}
}

// returned reports whether Run has returned.
func (r *running) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// causeOf is what a handler saw: when its context ended and why.
type causeOf struct {
	at    time.Time
	cause error
}

// waitCtx blocks until ctx ends and reports when and why.
func waitCtx(ctx context.Context) causeOf {
	<-ctx.Done()
	return causeOf{at: time.Now(), cause: context.Cause(ctx)}
}

// heartbeatAnswer decodes a recorded heartbeat's answer.
func heartbeatAnswer(t *testing.T, c call) client.Heartbeat {
	t.Helper()
	var hb client.Heartbeat
	if err := json.Unmarshal(c.Resp, &hb); err != nil {
		t.Fatalf("heartbeat answer %q: %v", c.Resp, err)
	}
	return hb
}

// grantTTL rewrites the ttl_seconds of successful heartbeat answers to secs: a server
// that grants short leases, without waiting for berth's 10 s minimum.
func grantTTL(secs int, w http.ResponseWriter, r *http.Request, next http.Handler) {
	rw := httptest.NewRecorder()
	next.ServeHTTP(rw, r)
	body := rw.Body.Bytes()
	if rw.Code == 200 {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			m["ttl_seconds"] = secs
			body, _ = json.Marshal(m)
		}
	}
	for k, v := range rw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.Code)
	w.Write(body)
}

// fail answers a request with status and the API's error envelope.
func fail(w http.ResponseWriter, status int, typ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"type":"error","request_id":"test","error":{"type":"` + typ + `","message":"injected by the test"}}`))
}

// isErr reports whether err is, or wraps, target.
func isErr(err, target error) bool { return errors.Is(err, target) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
