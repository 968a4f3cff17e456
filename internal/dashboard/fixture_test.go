package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/dashboard"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
)

// fixture is the dashboard around a real API server on a fresh SQLite store, behind a real
// loopback HTTP listener, with an admin token.
type fixture struct {
	t     *testing.T
	store store.Store
	api   *api.Server
	dash  *dashboard.Handler
	srv   *httptest.Server
	url   string
	admin string
	// stop ends the dashboard's context, as a server that shuts down does.
	stop context.CancelFunc
}

type fixtureOpt struct {
	interval time.Duration
	tls      bool
	// server, when set, adjusts the http.Server before it starts.
	server func(*http.Server)
	// api, when set, wraps the API handler that the dashboard is given (its in-process
	// requests, and the requests it passes on).
	api func(http.Handler) http.Handler
	// store, when set, wraps the store that the dashboard is given.
	store func(store.Store) store.Store
	// now, when set, is the API's clock.
	now func() time.Time
}

func newFixture(t *testing.T, o fixtureOpt) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := api.New(api.Config{Store: st, Logger: log, Now: o.now})
	ctx, stop := context.WithCancel(context.Background())
	if o.interval == 0 {
		o.interval = 20 * time.Millisecond
	}
	var apiHandler http.Handler = srv
	if o.api != nil {
		apiHandler = o.api(srv)
	}
	var dashStore store.Store = st
	if o.store != nil {
		dashStore = o.store(st)
	}
	dash := dashboard.New(dashboard.Config{API: apiHandler, Store: dashStore, Logger: log, Interval: o.interval, Context: ctx})
	ts := httptest.NewUnstartedServer(dash)
	if o.server != nil {
		o.server(ts.Config)
	}
	if o.tls {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	f := &fixture{t: t, store: st, api: srv, dash: dash, srv: ts, url: ts.URL, stop: stop}
	t.Cleanup(func() {
		stop()
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	f.admin = f.token(api.RoleAdmin, "")
	return f
}

// token creates a token in the store and returns its secret.
func (f *fixture) token(role, environmentID string) string {
	f.t.Helper()
	tok, secret := api.NewToken("test-"+role, role, environmentID, time.Now())
	if _, err := f.store.CreateToken(context.Background(), tok); err != nil {
		f.t.Fatalf("create token: %v", err)
	}
	return secret
}

// reply is an HTTP answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
	res    *http.Response
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// errorMessage returns error.message of an error envelope.
func (r reply) errorMessage(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

// do sends method url path with body; headers come in name, value pairs.
func (f *fixture) do(method, path, body string, headers ...string) reply {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: b, res: res}
}

// apiDo calls the API (through the dashboard handler, which passes it on) as the holder
// of secret, and fails the test unless the answer has status want.
func (f *fixture) apiDo(secret, method, path, body string, want int, headers ...string) map[string]any {
	f.t.Helper()
	hs := append([]string{"Authorization", "Bearer " + secret, "Content-Type", "application/json"}, headers...)
	r := f.do(method, api.BasePath+path, body, hs...)
	if r.status != want {
		f.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, want)
	}
	if string(r.body) == "null" {
		return nil
	}
	return r.json(f.t)
}

// environment creates a self_hosted environment and returns its ID.
func (f *fixture) environment(name string) string {
	f.t.Helper()
	e := f.apiDo(f.admin, "POST", "/environments", `{"name":"`+name+`","config":{"type":"self_hosted"}}`, 201)
	return e["id"].(string)
}

// session creates a session in env and returns its ID and its work item's ID.
func (f *fixture) session(env string) (sessionID, workID string) {
	f.t.Helper()
	s := f.apiDo(f.admin, "POST", "/sessions", `{"agent":"agent_test","environment_id":"`+env+`"}`, 201)
	list := f.apiDo(f.admin, "GET", "/environments/"+env+"/work?limit=100", "", 200)
	for _, it := range list["data"].([]any) {
		w := it.(map[string]any)
		if w["data"].(map[string]any)["id"] == s["id"] {
			return s["id"].(string), w["id"].(string)
		}
	}
	f.t.Fatalf("no work item for session %s", s["id"])
	return "", ""
}

// cookie is the Cookie header of a dashboard session holding secret.
func cookie(secret string) string { return "berth_token=" + secret }

// patience is a context for waiting on something that should come: it ends margin before
// the test binary's -timeout would, so that a wait that never ends fails with its own
// message and not with the binary's panic. Nothing else bounds a wait: how long a busy
// machine takes is not a failure.
func patience(t *testing.T, margin time.Duration) context.Context {
	t.Helper()
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		c, cancel := context.WithDeadline(ctx, dl.Add(-margin))
		t.Cleanup(cancel)
		ctx = c
	}
	return ctx
}

// sse is a server-sent event stream read by a goroutine.
type sse struct {
	res *http.Response
	// events carries the stream's events in order, and is closed when the stream has
	// ended and every event it carried was received.
	events chan sseEvent
	// patience bounds the waits for the stream's events.
	patience context.Context
}

type sseEvent struct {
	name string
	id   string
	data string
}

// stream opens /ui/stream with query q as the holder of secret; the stream is closed when
// the test ends.
func (f *fixture) stream(secret, q string) *sse {
	f.t.Helper()
	return f.sse("/ui/stream?"+q, secret)
}

// sse opens a server-sent event stream at path as the holder of secret ("": no cookie),
// with headers in name, value pairs; the stream is closed when the test ends.
func (f *fixture) sse(path, secret string, headers ...string) *sse {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", f.url+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Cookie", cookie(secret))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatalf("stream: %v", err)
	}
	s := &sse{res: res, events: make(chan sseEvent, 64), patience: patience(f.t, 10*time.Second)}
	go func() {
		defer close(s.events)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next returns the next view event, failing the test if the stream ends first. An event
// sent just before the stream ended is still returned: the end is seen only after it.
func (s *sse) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatalf("the stream ended")
		}
		if ev.name != "view" {
			t.Fatalf("event %q, want view", ev.name)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		return m
	case <-s.patience.Done():
		t.Fatalf("no event before the test's deadline")
	}
	return nil
}

// until reads view events until ok holds for one.
func (s *sse) until(t *testing.T, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	for {
		if v := s.next(t); ok(v) {
			return v
		}
	}
}

// waitEnd reads the stream's events until it ends.
func (s *sse) waitEnd(t *testing.T) {
	t.Helper()
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-s.patience.Done():
			t.Fatalf("the stream did not end before the test's deadline")
		}
	}
}
