package api_test

// Fuzz targets for the HTTP surface (API.md §1): FuzzHandler drives the whole handler with
// fuzzed methods, paths (IDs raw, percent-encoded or made up), queries, headers and
// bodies; FuzzBodies the JSON bodies of every create and update; FuzzPagination the list
// parameters, against an exact oracle of the page each query must give. Every answer must
// hold to §1: never a 5xx, never a dropped connection, every answer with x-request-id
// (echoed when the caller sent a usable one), the error envelope on every 4xx (request_id
// equal to x-request-id, error.type one of §1's types and the one its status calls for),
// valid JSON on every 2xx, and every answer as openapi.json describes it.
//
// Each target starts one server (api.New over SQLite in a temporary directory, behind
// httptest.NewServer) per process and reuses it for every input. Plain `go test` runs the
// seed corpora (testdata/fuzz/<target>/ and the f.Add seeds).

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/testserver"
)

// fzServer is one server for a fuzz target, with the fixtures its inputs address.
type fzServer struct {
	st     store.Store
	url    string
	client *http.Client
	clock  *testClock
	admin  string
	member string

	// Fixtures (rebuilt when an input deletes, archives, revokes or stops one).
	env, cloudEnv, otherEnv string // self_hosted, cloud, and another self_hosted environment
	work, otherWork         string // queued items of env and otherEnv
	sess, otherSess         string // the sessions of those items
	tok                     string // a member token's ID (revocable without harm)
	worker, otherWorker     string // worker token secrets bound to env and otherEnv
	revoked                 string // a revoked token's secret
}

func newFzServer(f *testing.F) *fzServer {
	f.Helper()
	st, err := sqlite.Open(context.Background(), f.TempDir())
	if err != nil {
		f.Fatalf("open store: %v", err)
	}
	clock := testserver.NewClock()
	srv := api.New(api.Config{Store: st, Now: clock.Now, Logger: discardLogger()})
	ts := httptest.NewServer(srv)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	s := &fzServer{st: st, url: ts.URL, clock: clock, client: &http.Client{
		Transport: tr,
		Timeout:   30 * time.Second,
		// A redirect is an answer to check, not one to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	f.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	s.admin = s.token(f, api.RoleAdmin, "")
	s.member = s.token(f, api.RoleMember, "")
	s.rebuild(f)
	return s
}

// token creates a token in the store and returns its secret.
func (s *fzServer) token(tb testing.TB, role, env string) string {
	tb.Helper()
	tok, secret := api.NewToken("fuzz-"+role, role, env, s.clock.Now())
	if _, err := s.st.CreateToken(context.Background(), tok); err != nil {
		tb.Fatalf("create token: %v", err)
	}
	return secret
}

// setup sends a request the fixtures need, as the admin, and returns its answer's object.
func (s *fzServer) setup(tb testing.TB, method, path, body string, want int) map[string]any {
	tb.Helper()
	req, err := http.NewRequest(method, s.url+api.BasePath+path, strings.NewReader(body))
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.admin)
	res, err := s.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// item creates a session in env and returns it and its queued item.
func (s *fzServer) item(tb testing.TB, env string) (sess, work string) {
	tb.Helper()
	sess = s.setup(tb, "POST", "/sessions", `{"agent":"agent_fuzz","environment_id":"`+env+`"}`, 201)["id"].(string)
	page := s.setup(tb, "GET", "/environments/"+env+"/work?state=queued&limit=100", "", 200)
	for _, w := range page["data"].([]any) {
		if w := w.(map[string]any); w["data"].(map[string]any)["id"] == sess {
			return sess, w["id"].(string)
		}
	}
	tb.Fatalf("no queued item for session %s", sess)
	return "", ""
}

// rebuild makes fresh fixtures.
func (s *fzServer) rebuild(tb testing.TB) {
	tb.Helper()
	newEnv := func(cfg string) string {
		return s.setup(tb, "POST", "/environments", `{"name":"fuzz","config":{"type":"`+cfg+`"}}`, 201)["id"].(string)
	}
	s.env, s.cloudEnv, s.otherEnv = newEnv("self_hosted"), newEnv("cloud"), newEnv("self_hosted")
	s.sess, s.work = s.item(tb, s.env)
	s.otherSess, s.otherWork = s.item(tb, s.otherEnv)
	s.setup(tb, "POST", "/sessions/"+s.sess+"/events", `{"events":[{"type":"user.message","content":"hi"}]}`, 200)
	s.tok = s.setup(tb, "POST", "/tokens", `{"name":"victim","role":"member"}`, 201)["id"].(string)
	s.worker = s.token(tb, api.RoleWorker, s.env)
	s.otherWorker = s.token(tb, api.RoleWorker, s.otherEnv)
	revoked := s.setup(tb, "POST", "/tokens", `{"name":"revoked","role":"member"}`, 201)
	s.setup(tb, "POST", "/tokens/"+revoked["id"].(string)+"/revoke", "", 200)
	s.revoked = revoked["secret"].(string)
}

// fzAnswer is a request as sent and its answer.
type fzAnswer struct {
	method string
	url    *url.URL
	reqID  string // the x-request-id sent ("" none)
	*response
}

// send sends req and checks the answer against API.md §1 (see the top of this file). It
// returns nil, having skipped the input, when the Go client refuses to send the request.
func (s *fzServer) send(t *testing.T, req *http.Request) *fzAnswer {
	t.Helper()
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: no answer: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	a := &fzAnswer{method: req.Method, url: req.URL, reqID: req.Header.Get("x-request-id"),
		response: &response{Status: res.StatusCode, Header: res.Header, Body: b}}
	s.check(t, a)
	return a
}

// knownErrorTypes maps each 4xx status berth answers to the error.type values API.md §1
// gives it.
var knownErrorTypes = map[int][]string{
	400: {"invalid_request_error"},
	401: {"authentication_error"},
	403: {"permission_error"},
	404: {"not_found_error"},
	405: {"invalid_request_error"},
	409: {"invalid_request_error", "conflict_error"},
	412: {"precondition_failed_error"},
}

// fzErrorBody is the error envelope.
type fzErrorBody struct {
	Type      string `json:"type"`
	RequestID string `json:"request_id"`
	Error     *struct {
		Type    string  `json:"type"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
	} `json:"error"`
}

func (s *fzServer) check(t *testing.T, a *fzAnswer) {
	t.Helper()
	where := a.method + " " + a.url.String()
	if a.Status >= 500 {
		t.Fatalf("%s: %d: %s", where, a.Status, a.Body)
	}
	if a.Status >= 300 && a.Status < 400 {
		// Only net/http's ServeMux answers a 3xx, before any berth code runs: it redirects
		// a path that is not clean (// or dot segments). Reported in RELIABILITY.md.
		return
	}
	// x-request-id: echoed when usable (1–1024 printable ASCII characters after the
	// whitespace HTTP trims around a header value), a fresh UUID otherwise.
	got := a.Header.Get("x-request-id")
	sent := strings.Trim(a.reqID, " \t")
	usable := sent != "" && len(sent) <= 1024 && !strings.ContainsFunc(sent, func(r rune) bool { return r < 0x20 || r > 0x7e })
	switch {
	case usable && got != sent:
		t.Errorf("%s: x-request-id %q, want the one sent, %q", where, got, sent)
	case !usable:
		if _, err := uuid.Parse(got); err != nil {
			t.Errorf("%s: x-request-id %q is not a UUID (sent %q)", where, got, a.reqID)
		}
	}
	if a.method == "HEAD" { // no body to check
		if a.Status < 400 && a.Status != 200 {
			t.Errorf("%s: status %d", where, a.Status)
		}
		return
	}
	if a.Status >= 400 {
		var e fzErrorBody
		if err := json.Unmarshal(a.Body, &e); err != nil || e.Type != "error" || e.Error == nil || e.Error.Message == "" {
			t.Fatalf("%s: %d without the error envelope: %s", where, a.Status, a.Body)
		}
		if !slices.Contains(knownErrorTypes[a.Status], e.Error.Type) {
			t.Errorf("%s: status %d with error.type %q", where, a.Status, e.Error.Type)
		}
		// A replay under Idempotency-Key is the first answer byte for byte, request_id
		// included; every other error carries its own request's ID.
		if e.RequestID != got && a.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: request_id %q, x-request-id %q", where, e.RequestID, got)
		}
	} else if a.url.Path != "/metrics" && !json.Valid(a.Body) {
		t.Fatalf("%s: %d with a body that is not JSON: %q", where, a.Status, a.Body)
	}
	// The harness's checks: content type, x-should-retry, and openapi.json.
	h := &harness{t: t, store: s.st, clock: s.clock, url: s.url, admin: s.admin}
	h.check(a.method, a.url, a.response)
}

// fzEscape makes s usable in a URL as it is: every byte that may not appear in a request
// target (controls, space, non-ASCII, #) is percent-encoded; everything else, including
// '%', '/', '?' and '&', is left alone.
func fzEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '#' || c == '"' || c == '<' || c == '>' || c == '\\' ||
			c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// fzHeader makes s a header value the Go client sends: controls other than tab become
// '?'; other bytes, invalid UTF-8 included, stay as they are.
func fzHeader(s string) string {
	b := []byte(s)
	for i, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// fzPercent percent-encodes every byte of s.
func fzPercent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// fzPlaceholder matches a placeholder of fzRoutes.
var fzPlaceholder = regexp.MustCompile(`\{[a-z]+\}`)

var fzMethods = []string{"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}

// fzRoutes are path templates: {e} {w} {s} {t} are an environment, work item, session and
// token ID; {raw} is the fuzzed path itself; a leading ! puts the path at the server root.
var fzRoutes = []string{
	"/environments", "/environments/{e}", "/environments/{e}/archive",
	"/environments/{e}/work", "/environments/{e}/work/poll", "/environments/{e}/work/stats",
	"/environments/{e}/work/{w}", "/environments/{e}/work/{w}/ack", "/environments/{e}/work/{w}/heartbeat",
	"/environments/{e}/work/{w}/stop",
	"/sessions", "/sessions/{s}", "/sessions/{s}/archive", "/sessions/{s}/cancel", "/sessions/{s}/events",
	"/tokens", "/tokens/{t}/revoke",
	"!/healthz", "!/readyz", "!/metrics", "!/openapi.json",
	"/{raw}", "!/{raw}",
}

// segment is the path segment for placeholder kind (e, w, s, t) in mode, from the
// fuzzed string v.
func (s *fzServer) segment(kind byte, mode uint8, v string) string {
	real := map[byte]string{'e': s.env, 'w': s.work, 's': s.sess, 't': s.tok}[kind]
	other := map[byte]string{'e': s.sess, 'w': s.env, 's': s.work, 't': s.env}[kind]
	switch mode % 8 {
	case 0:
		return real
	case 1:
		return fzPercent(real) // API.md §1: path IDs may arrive percent-encoded
	case 2:
		return url.PathEscape(v)
	case 3:
		return fzEscape(v)
	case 4:
		return other // an ID with the wrong prefix
	case 5:
		return real + url.PathEscape(v)
	case 6:
		if kind == 'e' {
			return s.cloudEnv
		}
		return strings.ToUpper(real)
	default:
		return map[byte]string{'e': s.otherEnv, 'w': s.otherWork, 's': s.otherSess, 't': s.tok}[kind]
	}
}

func FuzzHandler(f *testing.F) {
	type seed struct {
		method, route, modes            uint8
		seg1, seg2, query               string
		auth                            uint8
		cred, worker, idem, reqID, body string
	}
	route := func(tmpl string) uint8 { return uint8(slices.Index(fzRoutes, tmpl)) }
	m := func(method string) uint8 { return uint8(slices.Index(fzMethods, method)) }
	seeds := []seed{
		{m("GET"), route("/environments"), 0, "", "", "", 0, "", "", "", "", ""},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "req-1", `{"name":"x","config":{"type":"self_hosted"}}`},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "key-1", "", `{"name":"x"}`},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "key-1", "", `{"name":"y"}`},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "", `null`},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "", "{\"name\":\"\xff\"}"},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "", `{"name":"a\u0000b"}`},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "", `{"name":"x","name":"y"}`},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "", strings.Repeat("[", 10000) + strings.Repeat("]", 10000)},
		{m("POST"), route("/environments"), 0, "", "", "", 0, "", "", "", "", `{"name":"x","metadata":{"a":1e999}}`},
		{m("GET"), route("/environments/{e}"), 0, "", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}"), 1, "", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}"), 2, "env_0190b0a0a0a0a0a0a0a0a0a0a0a0a0a0/x", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}"), 3, "env_x%2Fwork", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}"), 3, "%zz", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}"), 3, "..", "", "", 0, "", "", "", "", ""},
		{m("DELETE"), route("/environments/{e}"), 0, "", "", "", 1, "", "", "", "", ""},
		{m("DELETE"), route("/environments/{e}"), 0, "", "", "", 0, "", "", "", "", "{}"},
		{m("PUT"), route("/environments/{e}"), 0, "", "", "", 0, "", "", "", "", "{}"},
		{m("HEAD"), route("/environments/{e}"), 0, "", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}/work"), 0, "", "", "limit=0&page=x&before_id=y", 2, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}/work"), 6, "", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}/work/poll"), 0, "", "", "block_ms=1&reclaim_older_than_ms=0", 2, "", "w1", "", "", ""},
		{m("GET"), route("/environments/{e}/work/poll"), 7, "", "", "block_ms=1000", 2, "", "w\xff", "", "", ""},
		{m("GET"), route("/environments/{e}/work/poll"), 0, "", "", "reclaim_older_than_ms=99999999999999999999", 3, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}/work/stats"), 0, "", "", "", 2, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}/work/{w}"), 0o20, "", "poll", "", 0, "", "", "", "", ""},
		{m("GET"), route("/environments/{e}/work/{w}"), 0o30, "", "work_x%2F..%2Fstats", "", 0, "", "", "", "", ""},
		{m("POST"), route("/environments/{e}/work/{w}/ack"), 0, "", "", "", 2, "", "w1", "", "", "{}"},
		{m("POST"), route("/environments/{e}/work/{w}/heartbeat"), 0, "", "", "expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=1", 2, "", "", "", "", ""},
		{m("POST"), route("/environments/{e}/work/{w}/heartbeat"), 0, "", "", "expected_last_heartbeat=2026-07-01T08:15:00%2B00:00", 2, "", "", "", "", ""},
		{m("POST"), route("/environments/{e}/work/{w}/heartbeat"), 0, "", "", "expected_last_heartbeat=2026-07-01T08:15:00+00:00", 2, "", "", "", "", ""},
		{m("POST"), route("/environments/{e}/work/{w}/heartbeat"), 0, "", "", "desired_ttl_seconds=18446744073709551616", 2, "", "", "", "", "[]"},
		{m("POST"), route("/environments/{e}/work/{w}/stop"), 0, "", "", "", 2, "", "", "", "", `{"force":"yes"}`},
		{m("POST"), route("/environments/{e}/work/{w}/stop"), 0, "", "", "", 0, "", "", "", "", `{"force":true}`},
		{m("POST"), route("/environments/{e}/work/{w}"), 0, "", "", "", 0, "", "", "", "", `{"metadata":{"a":"b","c":null}}`},
		{m("POST"), route("/sessions"), 0, "", "", "", 1, "", "", "", "", `{"agent":{"id":"a"},"environment_id":"env_00000000000000000000000000000000"}`},
		{m("POST"), route("/sessions/{s}/events"), 0, "", "", "", 2, "", "", "", "", `{"events":[{"type":"user.message"}]}`},
		{m("POST"), route("/sessions/{s}/cancel"), 0, "", "", "", 0, "", "", "", "", ""},
		{m("DELETE"), route("/sessions/{s}"), 0, "", "", "", 0, "", "", "", "", ""},
		{m("POST"), route("/tokens"), 0, "", "", "", 0, "", "", "", "", `{"name":"t","role":"worker"}`},
		{m("POST"), route("/tokens/{t}/revoke"), 0, "", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("/tokens"), 0, "", "", "", 5, "pt-" + strings.Repeat("a", 40), "", "", "", ""},
		{m("GET"), route("/tokens"), 0, "", "", "", 9, "Basic YWRtaW46YWRtaW4=", "", "", "", ""},
		{m("GET"), route("/tokens"), 0, "", "", "", 7, "", "", "", "", ""},
		{m("GET"), route("/tokens"), 0, "", "", "", 8, "", "", "", "", ""},
		{m("GET"), route("!/healthz"), 0, "", "", "", 4, "", "", "", "", ""},
		{m("POST"), route("!/metrics"), 0, "", "", "", 4, "", "", "", "", ""},
		{m("GET"), route("/{raw}"), 0, "environments//x/../", "", "", 0, "", "", "", "", ""},
		{m("GET"), route("!/{raw}"), 0, "api/v1/cloud/environments/%2e%2e/tokens", "", "", 0, "", "", "", "", ""},
		{m("OPTIONS"), route("/{raw}"), 0, "*", "", "", 0, "", "", "", strings.Repeat("r", 1025), ""},
		{m("GET"), route("/environments"), 0, "", "", "limit=%FF&limit=1", 0, "", "", "", "\x00", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.route, s.modes, s.seg1, s.seg2, s.query, s.auth, s.cred, s.worker, s.idem, s.reqID, []byte(s.body))
	}
	srv := newFzServer(f)
	f.Fuzz(func(t *testing.T, method, route, modes uint8, seg1, seg2, query string, auth uint8,
		cred, worker, idem, reqID string, body []byte) {
		tmpl := fzRoutes[int(route)%len(fzRoutes)]
		root := strings.HasPrefix(tmpl, "!")
		tmpl = strings.TrimPrefix(tmpl, "!")
		segs := []string{seg1, seg2}
		n := 0
		path := fzPlaceholder.ReplaceAllStringFunc(tmpl, func(ph string) string {
			v, mode := segs[min(n, 1)], modes>>(3*min(n, 1))
			n++
			if ph == "{raw}" {
				return fzEscape(v)
			}
			return srv.segment(ph[1], mode, v)
		})
		if !root {
			path = api.BasePath + path
		}
		u := srv.url + path
		if query != "" {
			u += "?" + fzEscape(query)
		}
		var rd io.Reader
		if len(body) > 0 {
			rd = bytes.NewReader(body)
		}
		verb := fzMethods[int(method)%len(fzMethods)]
		req, err := http.NewRequest(verb, u, rd)
		if err != nil {
			t.Skipf("the Go client cannot send this request: %v", err)
		}
		switch auth % 10 {
		case 0:
			req.Header.Set("Authorization", "Bearer "+srv.admin)
		case 1:
			req.Header.Set("Authorization", "Bearer "+srv.member)
		case 2:
			req.Header.Set("Authorization", "Bearer "+srv.worker)
		case 3:
			req.Header.Set("Authorization", "Bearer "+srv.otherWorker)
		case 4: // none
		case 5:
			req.Header.Set("Authorization", "Bearer "+fzHeader(cred))
		case 6:
			req.Header.Set("Authorization", "Bearer pt-"+fzHeader(cred))
		case 7:
			req.Header.Set("x-api-key", srv.admin)
		case 8:
			req.Header.Set("Authorization", "Bearer "+srv.revoked)
		case 9:
			req.Header.Set("Authorization", fzHeader(cred))
		}
		switch (auth >> 4) % 4 {
		case 1:
			req.Header.Set("Content-Type", "application/json")
		case 2:
			req.Header.Set("Content-Type", "text/plain")
		case 3:
			req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		}
		for _, h := range []struct{ name, v string }{{"Worker-ID", worker}, {"Idempotency-Key", idem}, {"x-request-id", reqID}} {
			if h.v != "" {
				req.Header.Set(h.name, fzHeader(h.v))
			}
		}
		a := srv.send(t, req)
		// Keep the fixtures usable: an input that deleted, archived, revoked or stopped
		// one gets fresh ones.
		if a.Status < 300 && (verb == "DELETE" || verb == "POST" &&
			(strings.HasSuffix(path, "/archive") || strings.HasSuffix(path, "/revoke") ||
				strings.HasSuffix(path, "/stop") || strings.HasSuffix(path, "/cancel"))) {
			srv.rebuild(t)
		}
		// An ID that is not one of ours, as one path segment, is a 404 for the admin.
		if verb == "GET" && auth%10 == 0 && len(query) == 0 && modes%8 == 2 && seg1 != "" && seg1 != "." && seg1 != ".." &&
			(tmpl == "/environments/{e}" || tmpl == "/sessions/{s}") && seg1 != srv.env && seg1 != srv.sess &&
			a.Status != 404 {
			t.Errorf("GET %s: %d, want 404", path, a.Status)
		}
	})
}

// fzBodyTargets are the endpoints whose JSON bodies FuzzBodies sends; $ENV, $CLOUD, $SESS
// and $WORK in a body become the fixtures' IDs, so that seeds can name them.
var fzBodyTargets = []string{
	"/environments", "/environments/$ENV", "/sessions", "/sessions/$SESS", "/sessions/$SESS/events",
	"/environments/$ENV/work/$WORK", "/environments/$ENV/work/$WORK/stop", "/tokens",
	"/environments/$ENV/work/$WORK/ack", "/environments/$ENV/work/$WORK/heartbeat", "/sessions/$SESS/cancel",
}

func FuzzBodies(f *testing.F) {
	add := func(target, body string) {
		f.Add(uint8(slices.Index(fzBodyTargets, target)), []byte(body))
	}
	for _, t := range fzBodyTargets {
		for _, b := range []string{"", " ", "{}", "{}\n", "null", "[]", `""`, "0", "{", `{"a":1}x`, "\xff", "\x00",
			`{"metadata":null}`, `{"metadata":{"a":"b","a":null}}`, strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)} {
			add(t, b)
		}
	}
	add("/environments", `{"name":"n","description":"d","config":{"type":"self_hosted","setup_script":"echo"},"metadata":{"k":"v"}}`)
	add("/environments", `{"name":"n","config":{"type":"cloud","packages":{"apt":["x"]},"networking":{"type":"limited"}}}`)
	add("/environments", `{"name":"n","config":{"type":"self_hosted","packages":{}}}`)
	add("/environments", `{"name":"  "}`)
	add("/environments", `{"name":"n","config":null}`)
	add("/environments", `{"name":1e999}`)
	add("/environments", `{"name":"n","metadata":{"k1":"v","k2":"v","k3":"v","k4":"v","k5":"v","k6":"v","k7":"v","k8":"v","k9":"v","k10":"v","k11":"v","k12":"v","k13":"v","k14":"v","k15":"v","k16":"v","k17":"v"}}`)
	add("/environments/$ENV", `{"config":{"type":"cloud"}}`)
	add("/environments/$ENV", `{"name":"renamed","metadata":{"a":"1"}}`)
	add("/sessions", `{"agent":"a","environment_id":"$ENV","title":"t","metadata":{"a":"b"},"initial_events":[{"type":"user.message"}]}`)
	add("/sessions", `{"agent":{"id":"a","type":"agent"},"environment_id":"$CLOUD"}`)
	add("/sessions", `{"agent":"","environment_id":"$ENV"}`)
	add("/sessions", `{"agent":"a","environment_id":"env_zz"}`)
	add("/sessions/$SESS", `{"title":"t","metadata":{"a":null}}`)
	add("/sessions/$SESS/events", `{"events":[{"type":"user.message","content":[{"type":"text","text":"hi"}]},{"type":"system.message"}]}`)
	add("/sessions/$SESS/events", `{"events":[{"type":"assistant.message"}]}`)
	add("/sessions/$SESS/events", `{"events":{}}`)
	add("/environments/$ENV/work/$WORK", `{"metadata":{"`+strings.Repeat("k", 65)+`":"v"}}`)
	add("/environments/$ENV/work/$WORK/stop", `{"force":true}`)
	add("/environments/$ENV/work/$WORK/stop", `{"force":null}`)
	add("/environments/$ENV/work/$WORK/stop", `{"force":1}`)
	add("/tokens", `{"name":"t","role":"worker","environment_id":"$ENV"}`)
	add("/tokens", `{"name":"t","role":"admin","environment_id":"$ENV"}`)
	add("/tokens", `{"name":"t","role":"root"}`)
	srv := newFzServer(f)
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		path := fzBodyTargets[int(target)%len(fzBodyTargets)]
		fill := strings.NewReplacer("$ENV", srv.env, "$CLOUD", srv.cloudEnv, "$SESS", srv.sess, "$WORK", srv.work)
		path = fill.Replace(path)
		body = []byte(fill.Replace(string(body)))
		req, err := http.NewRequest("POST", srv.url+api.BasePath+path, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("new request: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+srv.admin)
		a := srv.send(t, req)
		// Body errors API.md names: invalid UTF-8, malformed JSON, not an object.
		trimmed := bytes.TrimSpace(body)
		var e fzErrorBody
		_ = json.Unmarshal(a.Body, &e)
		switch {
		case len(trimmed) == 0:
		case !utf8.Valid(body):
			if a.Status != 400 {
				t.Errorf("POST %s with invalid UTF-8: %d, want 400", path, a.Status)
			}
		case !json.Valid(body):
			if a.Status != 400 || e.Error == nil || e.Error.Message != "Request body must be valid JSON." {
				t.Errorf("POST %s with malformed JSON %q: %d %s, want 400 %q", path, body, a.Status, a.Body, "Request body must be valid JSON.")
			}
		case trimmed[0] != '{':
			if a.Status != 400 {
				t.Errorf("POST %s with a body that is no object: %d, want 400", path, a.Status)
			}
		}
		// Whatever was accepted holds to the metadata limits.
		if a.Status < 300 {
			var obj struct {
				Metadata map[string]string `json:"metadata"`
			}
			_ = json.Unmarshal(a.Body, &obj)
			if len(obj.Metadata) > 16 {
				t.Errorf("POST %s: metadata of %d keys", path, len(obj.Metadata))
			}
			for k, v := range obj.Metadata {
				if n := utf8.RuneCountInString(k); n < 1 || n > 64 || utf8.RuneCountInString(v) > 512 {
					t.Errorf("POST %s: metadata %q: %q", path, k, v)
				}
			}
		}
		if a.Status < 300 && (strings.HasSuffix(path, "/stop") || strings.HasSuffix(path, "/cancel")) {
			srv.rebuild(t) // keep a live item to send bodies to
		}
	})
}

// fzLists are the lists FuzzPagination pages through, and their IDs' prefixes.
var fzLists = []struct{ path, prefix string }{
	{"/environments", id.Environment},
	{"/sessions", id.Session},
	{"/environments/$ENV/work", id.Work},
	{"/sessions/$SESS/events", id.Event},
	{"/tokens", id.Token},
}

func FuzzPagination(f *testing.F) {
	// flags: bit 0 limit present; bits 1–3 page, before_id, after_id present; bits 4–5 how
	// a cursor is made: the fuzzed string, an existing ID (index idx), or a well-formed ID
	// that does not exist.
	for list := range fzLists {
		for _, in := range []struct {
			limit string
			flags uint8
			cur   string
			idx   uint8
		}{
			{"", 0, "", 0}, {"1", 1, "", 0}, {"100", 1, "", 0}, {"101", 1, "", 0}, {"0", 1, "", 0},
			{"-1", 1, "", 0}, {"+5", 1, "", 0}, {"1.5", 1, "", 0}, {"99999999999999999999", 1, "", 0},
			{"", 1, "", 0}, {" 5", 1, "", 0}, {"5", 1 | 2 | 0o20, "", 3}, {"5", 1 | 4 | 0o20, "", 3},
			{"5", 1 | 8 | 0o20, "", 3}, {"", 2 | 4, "", 0}, {"", 4 | 8, "x", 0}, {"", 2 | 4 | 8, "x", 0},
			{"", 2, "", 0}, {"", 4, "env_x", 0}, {"", 8, "%2F", 0}, {"", 8 | 0o40, "seed", 0},
			{"3", 1 | 4 | 0o40, "zzz", 0}, {"", 2 | 0o20, "", 255}, {"2", 1 | 4 | 0o20, "", 0},
		} {
			f.Add(uint8(list), in.limit, in.flags, in.cur, in.idx)
		}
	}
	srv := newFzServer(f)
	// Enough of everything to page through: over 100 environments, sessions and items.
	for range 105 {
		srv.setup(f, "POST", "/environments", `{"name":"page"}`, 201)
	}
	for range 24 {
		srv.item(f, srv.env)
	}
	for range 5 {
		srv.setup(f, "POST", "/sessions/"+srv.sess+"/events", `{"events":[{"type":"system.message"},{"type":"user.interrupt"}]}`, 200)
	}
	for range 3 {
		srv.setup(f, "POST", "/tokens", `{"name":"page","role":"member"}`, 201)
	}
	fill := strings.NewReplacer("$ENV", srv.env, "$SESS", srv.sess)
	all := make([][]string, len(fzLists)) // every list's IDs, in order
	for i, l := range fzLists {
		after := ""
		for {
			q := "?limit=100"
			if after != "" {
				q += "&after_id=" + after
			}
			page := srv.setup(f, "GET", fill.Replace(l.path)+q, "", 200)
			for _, d := range page["data"].([]any) {
				all[i] = append(all[i], d.(map[string]any)["id"].(string))
			}
			if page["has_more"] != true {
				break
			}
			after = page["last_id"].(string)
		}
		if !slices.IsSorted(all[i]) || len(all[i]) < 3 {
			f.Fatalf("%s: %d IDs, sorted %v", l.path, len(all[i]), slices.IsSorted(all[i]))
		}
	}
	plainDigits := regexp.MustCompile(`^[0-9]+$`) // an integer parameter takes no sign
	f.Fuzz(func(t *testing.T, list uint8, limit string, flags uint8, cur string, idx uint8) {
		l := fzLists[int(list)%len(fzLists)]
		ids := all[int(list)%len(fzLists)]
		q := url.Values{}
		if flags&1 != 0 {
			q.Set("limit", limit)
		}
		cursor := cur
		switch (flags >> 4) % 4 {
		case 1:
			cursor = ids[int(idx)%len(ids)]
		case 2:
			sum := md5.Sum([]byte(cur))
			cursor = l.prefix + "_" + hex.EncodeToString(sum[:])
		}
		var given []string
		for i, name := range []string{"page", "before_id", "after_id"} {
			if flags&(2<<i) != 0 {
				q.Set(name, cursor)
				given = append(given, name)
			}
		}
		path := fill.Replace(l.path)
		req, err := http.NewRequest("GET", srv.url+api.BasePath+path+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatalf("new request: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+srv.admin)
		a := srv.send(t, req)
		var e fzErrorBody
		_ = json.Unmarshal(a.Body, &e)
		param := ""
		if e.Error != nil && e.Error.Param != nil {
			param = *e.Error.Param
		}
		where := fmt.Sprintf("GET %s?%s", path, q.Encode())

		// The oracle: which answer API.md §1 asks for.
		want := 20
		if flags&1 != 0 {
			n, err := strconv.Atoi(limit)
			switch {
			case err == nil && n > 0 && plainDigits.MatchString(limit):
				want = min(n, 100)
			case err != nil && plainDigits.MatchString(limit):
				// A positive integer beyond int's range: API.md says "above 100 → treated
				// as 100", berth answers 400 (reported in RELIABILITY.md). Either passes.
				if a.Status == 400 && param == "limit" {
					return
				}
				want = 100
			default:
				if a.Status != 400 || param != "limit" {
					t.Fatalf("%s: %d %s, want 400 with param limit", where, a.Status, a.Body)
				}
				return
			}
		}
		if len(given) > 1 {
			if a.Status != 400 || !slices.Contains(given, param) {
				t.Fatalf("%s: %d %s, want 400 naming a cursor", where, a.Status, a.Body)
			}
			return
		}
		if len(given) == 1 && !id.Valid(l.prefix, cursor) {
			if a.Status != 400 || param != given[0] {
				t.Fatalf("%s: %d %s, want 400 with param %s", where, a.Status, a.Body, given[0])
			}
			return
		}
		if a.Status != 200 {
			t.Fatalf("%s: %d %s, want 200", where, a.Status, a.Body)
		}
		var page struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
			FirstID  *string `json:"first_id"`
			LastID   *string `json:"last_id"`
			HasMore  bool    `json:"has_more"`
			NextPage *string `json:"next_page"`
		}
		a.decode(t, &page)
		// The page each cursor must give, out of the whole list.
		var rest []string
		var wantIDs []string
		backward := len(given) == 1 && given[0] == "before_id"
		switch {
		case len(given) == 0:
			rest = ids
		case backward:
			for _, v := range ids {
				if v < cursor {
					rest = append(rest, v)
				}
			}
		default:
			for _, v := range ids {
				if v > cursor {
					rest = append(rest, v)
				}
			}
		}
		wantMore := len(rest) > want
		if backward {
			wantIDs = rest[max(0, len(rest)-want):]
		} else {
			wantIDs = rest[:min(want, len(rest))]
		}
		got := make([]string, len(page.Data))
		for i, d := range page.Data {
			got[i] = d.ID
		}
		if !slices.Equal(got, wantIDs) || page.HasMore != wantMore {
			t.Fatalf("%s: %d items %v has_more %v, want %d items %v has_more %v", where, len(got), got, page.HasMore, len(wantIDs), wantIDs, wantMore)
		}
		str := func(p *string) string {
			if p == nil {
				return "null"
			}
			return *p
		}
		wantFirst, wantLast, wantNext := "null", "null", "null"
		if len(got) > 0 {
			wantFirst, wantLast = got[0], got[len(got)-1]
			if wantMore && !backward {
				wantNext = wantLast
			}
		}
		if str(page.FirstID) != wantFirst || str(page.LastID) != wantLast || str(page.NextPage) != wantNext {
			t.Errorf("%s: first_id %s last_id %s next_page %s, want %s %s %s", where,
				str(page.FirstID), str(page.LastID), str(page.NextPage), wantFirst, wantLast, wantNext)
		}
	})
}
