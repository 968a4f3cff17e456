package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/openapi/openapitest"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/testserver"
)

// validator is shared: it is immutable and compiling it takes a while.
var validator = sync.OnceValue(func() *openapitest.Validator {
	v, err := openapitest.NewValidator()
	if err != nil {
		panic(err)
	}
	return v
})

// testClock and openTestStore are the shared test package's.
type testClock = testserver.Clock

func openTestStore(t *testing.T) store.Store {
	t.Helper()
	st := testserver.OpenStore(t)
	return st
}

// harness is one server on a fresh store (testserver.OpenStore) behind a real HTTP
// listener, with a clock the test moves, and an admin token. Under testing/synctest
// (newSyncHarness) it runs in-process on the bubble's clock instead.
type harness struct {
	t      *testing.T
	srv    *api.Server
	store  store.Store
	clock  *testClock // nil under synctest: time.Sleep moves the bubble's clock
	url    string
	client *http.Client
	admin  string // admin token secret
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with the server's configuration changed by mod first.
func newHarnessWith(t *testing.T, mod func(*api.Config)) *harness {
	t.Helper()
	return newHarnessWrapped(t, mod, nil)
}

// newHarnessWrapped is newHarnessWith with the listener's handler made by wrap from the
// server (nil: the server itself), e.g. to learn when a request's handling has ended.
func newHarnessWrapped(t *testing.T, mod func(*api.Config), wrap func(http.Handler) http.Handler) *harness {
	t.Helper()
	st := openTestStore(t)
	clock := testserver.NewClock()
	cfg := api.Config{Store: st, Now: clock.Now, Logger: discardLogger()}
	if mod != nil {
		mod(&cfg)
	}
	srv := api.New(cfg)
	var handler http.Handler = srv
	if wrap != nil {
		handler = wrap(srv)
	}
	ts := httptest.NewUnstartedServer(handler)
	ts.Listener = srv.Listener(ts.Listener) // as berth serve does
	ts.Start()
	h := &harness{t: t, srv: srv, store: st, clock: clock, url: ts.URL, client: http.DefaultClient}
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	h.admin = h.token(api.RoleAdmin, "")
	return h
}

// newSyncHarness is newHarness for a test inside synctest.Test: the server runs on the
// bubble's clock (time.Now, moved by time.Sleep) and is reached in-process, so that
// synctest.Wait returns once every request has done all it can. The test ends it with
// the function it returns, inside the bubble.
func newSyncHarness(t *testing.T) (*harness, func()) {
	t.Helper()
	return newSyncHarnessWith(t, nil)
}

// newSyncHarnessWith is newSyncHarness with the server's configuration changed by mod.
func newSyncHarnessWith(t *testing.T, mod func(*api.Config)) (*harness, func()) {
	t.Helper()
	st := openTestStore(t)
	cfg := api.Config{Store: st, Logger: discardLogger()}
	if mod != nil {
		mod(&cfg)
	}
	srv := api.New(cfg)
	h := &harness{t: t, srv: srv, store: st, url: "http://berth.test",
		client: &http.Client{Transport: &testserver.Transport{Handler: srv}}}
	h.admin = h.token(api.RoleAdmin, "")
	return h, func() {
		srv.Shutdown()
		synctest.Wait()
		st.Close()
	}
}

// httpClient is the client the harness's requests go through.
func (h *harness) httpClient() *http.Client {
	if h.client == nil {
		return http.DefaultClient
	}
	return h.client
}

// now is the server's clock.
func (h *harness) now() time.Time {
	if h.clock == nil {
		return time.Now()
	}
	return h.clock.Now()
}

// token creates a token directly in the store and returns its secret.
func (h *harness) token(role, environmentID string) string {
	h.t.Helper()
	tok, secret := api.NewToken("test-"+role, role, environmentID, h.now())
	if _, err := h.store.CreateToken(context.Background(), tok); err != nil {
		h.t.Fatalf("create token: %v", err)
	}
	return secret
}

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// decode unmarshals the body into v, failing the test if it cannot.
func (r *response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// obj returns the body as a JSON object.
func (r *response) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.decode(t, &m)
	return m
}

// str returns a top-level string field of the body.
func (r *response) str(t *testing.T, key string) string {
	t.Helper()
	s, _ := r.obj(t)[key].(string)
	return s
}

// request options
type reqOpt func(*http.Request)

// as sends the request with the given token secret ("" sends no Authorization).
func as(secret string) reqOpt {
	return func(r *http.Request) {
		if secret == "" {
			r.Header.Del("Authorization")
		} else {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
	}
}

// header sets a request header.
func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// do sends method path (relative to the base path when it starts with "/", as given
// otherwise, e.g. "/healthz" must be passed as root("/healthz")) with body ("" for
// none), as the admin unless an option says otherwise. Every answer is checked against the
// OpenAPI document: a route it does not describe must be a 404 with the error envelope.
func (h *harness) do(method, path, body string, opts ...reqOpt) *response {
	h.t.Helper()
	return h.doRaw(method, api.BasePath+path, body, opts...)
}

// doRaw is do with a path taken as it is.
func (h *harness) doRaw(method, path, body string, opts ...reqOpt) *response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+h.admin)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	res, err := h.httpClient().Do(req.WithContext(ctx))
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if isEventStream(res) {
		// A stream that opened: its headers are the answer (openStream reads streams).
		return &response{Status: res.StatusCode, Header: res.Header}
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := &response{Status: res.StatusCode, Header: res.Header, Body: b}
	h.check(method, req.URL, r)
	return r
}

// isEventStream reports whether res is an event stream that opened (API.md §7).
func isEventStream(res *http.Response) bool {
	return res.StatusCode == http.StatusOK && res.Header.Get("Content-Type") == "text/event-stream"
}

// check asserts what holds for every answer: x-request-id is set; JSON content type
// (except /metrics); never x-should-retry: true on success; the body matches the OpenAPI
// document, or, off the document's routes, is a 404 envelope.
func (h *harness) check(method string, u *url.URL, r *response) {
	h.t.Helper()
	if r.Header.Get("x-request-id") == "" {
		h.t.Errorf("%s %s: no x-request-id header", method, u.Path)
	}
	if r.Status < 300 && strings.EqualFold(r.Header.Get("x-should-retry"), "true") {
		h.t.Errorf("%s %s: x-should-retry: true on a success", method, u.Path)
	}
	if u.Path != "/metrics" && r.Header.Get("Content-Type") != "application/json" {
		h.t.Errorf("%s %s: Content-Type %q", method, u.Path, r.Header.Get("Content-Type"))
	}
	path := u.EscapedPath()
	if _, ok := validator().Match(method, path); !ok && !validator().KnownPath(path) {
		if r.Status != http.StatusNotFound {
			h.t.Errorf("%s %s: off the document, want 404, got %d", method, path, r.Status)
		}
		checkEnvelope(h.t, r)
		return
	}
	if err := validator().ValidateResponse(method, path, r.Status, r.Body); err != nil {
		h.t.Errorf("response does not match openapi.json: %v\nbody: %s", err, r.Body)
	}
	if r.Status >= 400 {
		checkEnvelope(h.t, r)
	}
}

// checkEnvelope asserts the error envelope of API.md §1, with request_id equal to the
// x-request-id header.
func checkEnvelope(t *testing.T, r *response) {
	t.Helper()
	var env struct {
		Type      string `json:"type"`
		RequestID string `json:"request_id"`
		Error     *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Type != "error" || env.Error == nil ||
		env.Error.Type == "" || env.Error.Message == "" {
		t.Errorf("status %d: not an error envelope: %s", r.Status, r.Body)
		return
	}
	if env.RequestID != r.Header.Get("x-request-id") {
		t.Errorf("request_id %q differs from x-request-id %q", env.RequestID, r.Header.Get("x-request-id"))
	}
}

// wantError asserts an error answer: status, error.type and error.param ("" = absent).
func wantError(t *testing.T, r *response, status int, errType, param string) {
	t.Helper()
	var env struct {
		Error struct {
			Type  string  `json:"type"`
			Param *string `json:"param"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &env)
	gotParam := ""
	if env.Error.Param != nil {
		gotParam = *env.Error.Param
	}
	if r.Status != status || env.Error.Type != errType || gotParam != param {
		t.Errorf("got %d %s param=%q, want %d %s param=%q; body %s",
			r.Status, env.Error.Type, gotParam, status, errType, param, r.Body)
	}
}

// wantStatus asserts a status.
func wantStatus(t *testing.T, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
}

// env creates an environment (self_hosted or cloud) and returns its ID.
func (h *harness) env(selfHosted bool) string {
	h.t.Helper()
	cfg := `{"type":"cloud"}`
	if selfHosted {
		cfg = `{"type":"self_hosted"}`
	}
	r := h.do("POST", "/environments", `{"name":"test","config":`+cfg+`}`)
	wantStatus(h.t, r, 201)
	return r.str(h.t, "id")
}

// session creates a session in env and returns its ID.
func (h *harness) session(env string) string {
	h.t.Helper()
	r := h.do("POST", "/sessions", `{"agent":"agent_test","environment_id":"`+env+`"}`)
	wantStatus(h.t, r, 201)
	return r.str(h.t, "id")
}

// workJSON is a work object as served.
type workJSON struct {
	ID                string            `json:"id"`
	Type              string            `json:"type"`
	EnvironmentID     string            `json:"environment_id"`
	Data              map[string]string `json:"data"`
	State             string            `json:"state"`
	CreatedAt         *string           `json:"created_at"`
	AcknowledgedAt    *string           `json:"acknowledged_at"`
	StartedAt         *string           `json:"started_at"`
	LatestHeartbeatAt *string           `json:"latest_heartbeat_at"`
	StopRequestedAt   *string           `json:"stop_requested_at"`
	StoppedAt         *string           `json:"stopped_at"`
	Metadata          map[string]string `json:"metadata"`
}

// poll polls env once without waiting, as worker, and returns the item (nil for null).
func (h *harness) poll(env, worker string, opts ...reqOpt) *workJSON {
	h.t.Helper()
	if worker != "" {
		opts = append(opts, header("Worker-ID", worker))
	}
	r := h.do("GET", "/environments/"+env+"/work/poll", "", opts...)
	wantStatus(h.t, r, 200)
	if string(r.Body) == "null" {
		return nil
	}
	var w workJSON
	r.decode(h.t, &w)
	return &w
}

// work reads an item.
func (h *harness) work(env, id string) workJSON {
	h.t.Helper()
	r := h.do("GET", "/environments/"+env+"/work/"+id, "")
	wantStatus(h.t, r, 200)
	var w workJSON
	r.decode(h.t, &w)
	return w
}

// workPath is the path of an item's endpoint ("" for the item itself, or "/ack", …).
func workPath(env, id, suffix string) string {
	return "/environments/" + env + "/work/" + id + suffix
}

// queuedItem creates a session in env and returns its queued item, as listed.
func (h *harness) queuedItem(env string) workJSON {
	h.t.Helper()
	sess := h.session(env)
	r := h.do("GET", "/environments/"+env+"/work?state=queued&limit=100", "")
	wantStatus(h.t, r, 200)
	var page struct {
		Data []workJSON `json:"data"`
	}
	r.decode(h.t, &page)
	for _, w := range page.Data {
		if w.Data["id"] == sess {
			return w
		}
	}
	h.t.Fatalf("no queued item for session %s", sess)
	return workJSON{}
}

// itemIn drives a fresh item of env into state (queued, starting, active, stopping,
// stopped) through the API and returns it.
func (h *harness) itemIn(env, state string) workJSON {
	h.t.Helper()
	w := h.queuedItem(env)
	steps := map[string][]string{
		"queued":   nil,
		"starting": {"/ack"},
		"active":   {"/ack", "/heartbeat"},
		"stopping": {"/ack", "/heartbeat", "/stop"},
		"stopped":  {"/ack", "/heartbeat", "/stop", "/stop"},
	}[state]
	for _, s := range steps {
		wantStatus(h.t, h.do("POST", workPath(env, w.ID, s), ""), 200)
	}
	got := h.work(env, w.ID)
	if got.State != state {
		h.t.Fatalf("item %s is %s, want %s", w.ID, got.State, state)
	}
	return got
}

func jsonBody(v any) string {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		panic(err)
	}
	return b.String()
}
