package api_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/openapi"
	"github.com/berth-sh/berth/internal/store"
)

// ---------------------------------------------------------------------------------------
// Helpers shared by environments_test.go, sessions_test.go, tokens_test.go, auth_test.go
// and this file. All carry the tc prefix so that they cannot collide with helpers of the
// other test files of the package.
// ---------------------------------------------------------------------------------------

// tcAddHeader adds a header line; repeated calls make repeated lines.
func tcAddHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Add(k, v) } }

// tcDelHeader removes a header the harness would send (e.g. Content-Type).
func tcDelHeader(k string) reqOpt { return func(r *http.Request) { r.Header.Del(k) } }

// tcRawHeader sets a header exactly as given (Authorization without "Bearer ").
func tcRawHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// tcErrBody is an error envelope.
type tcErrBody struct {
	Type      string `json:"type"`
	RequestID string `json:"request_id"`
	Error     struct {
		Type    string          `json:"type"`
		Message string          `json:"message"`
		Param   *string         `json:"param"`
		Details json.RawMessage `json:"details"`
	} `json:"error"`
}

func tcErrOf(r *response) tcErrBody {
	var e tcErrBody
	_ = json.Unmarshal(r.Body, &e)
	return e
}

// tcWantErr asserts an error answer: status, error.type and error.param. With no params
// the param is not checked; otherwise it must be one of them ("" = absent).
func tcWantErr(t *testing.T, label string, r *response, status int, errType string, params ...string) {
	t.Helper()
	e := tcErrOf(r)
	got := ""
	if e.Error.Param != nil {
		got = *e.Error.Param
	}
	okParam := len(params) == 0
	for _, p := range params {
		okParam = okParam || p == got
	}
	if r.Status != status || e.Type != "error" || e.Error.Type != errType || !okParam {
		t.Errorf("%s: got %d %s param=%q, want %d %s param in %q; body %s",
			label, r.Status, e.Error.Type, got, status, errType, params, r.Body)
	}
}

// tcWantStatus asserts a status without stopping the test.
func tcWantStatus(t *testing.T, label string, r *response, status int) bool {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d; body %s", label, r.Status, status, r.Body)
		return false
	}
	return true
}

// tcPage is a list answer.
type tcPage struct {
	Data     []map[string]any `json:"data"`
	FirstID  *string          `json:"first_id"`
	LastID   *string          `json:"last_id"`
	HasMore  bool             `json:"has_more"`
	NextPage *string          `json:"next_page"`
}

func (p tcPage) ids() []string {
	out := make([]string, len(p.Data))
	for i, d := range p.Data {
		out[i], _ = d["id"].(string)
	}
	return out
}

// tcList GETs a list and decodes it; it fails the test unless the answer is 200.
func tcList(t *testing.T, h *harness, path string, opts ...reqOpt) tcPage {
	t.Helper()
	r := h.do("GET", path, "", opts...)
	wantStatus(t, r, 200)
	var p tcPage
	r.decode(t, &p)
	return p
}

// tcQ appends a query to a path that may already have one.
func tcQ(path, q string) string {
	if strings.Contains(path, "?") {
		return path + "&" + q
	}
	return path + "?" + q
}

func tcStr(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// tcSetClock sets the harness clock.
func tcSetClock(h *harness, t time.Time) {
	h.clock.Set(t)
}

// tcTS formats a time as API.md §1 writes it.
func tcTS(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) }

// tcItemsOf lists the work items of a session in a self_hosted env (all states).
func tcItemsOf(t *testing.T, h *harness, env, sess string) []workJSON {
	t.Helper()
	r := h.do("GET", "/environments/"+env+"/work?limit=100", "")
	wantStatus(t, r, 200)
	var page struct {
		Data []workJSON `json:"data"`
	}
	r.decode(t, &page)
	var out []workJSON
	for _, w := range page.Data {
		if w.Data["id"] == sess {
			out = append(out, w)
		}
	}
	return out
}

// tcStoreWorkCount counts the work items of an environment directly in the store (cloud
// environments have no work endpoints).
func tcStoreWorkCount(t *testing.T, h *harness, env string) int {
	t.Helper()
	items, _, err := h.store.ListWork(context.Background(), env, store.Page{Limit: 100}, nil)
	if err != nil {
		t.Fatalf("store.ListWork: %v", err)
	}
	return len(items)
}

// tcCreateEnv creates an environment from a body and returns the decoded object.
func tcCreateEnv(t *testing.T, h *harness, body string) map[string]any {
	t.Helper()
	r := h.do("POST", "/environments", body)
	wantStatus(t, r, 201)
	return r.obj(t)
}

// tcCreateToken creates a token through the API and returns the answer object.
func tcCreateToken(t *testing.T, h *harness, body string) map[string]any {
	t.Helper()
	r := h.do("POST", "/tokens", body)
	wantStatus(t, r, 201)
	return r.obj(t)
}

// tcRepeat returns s repeated n times.
func tcRepeat(s string, n int) string { return strings.Repeat(s, n) }

// tcMetadata returns a metadata object of n keys k0..k(n-1).
func tcMetadata(n int) string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// ---------------------------------------------------------------------------------------
// §1 Auth
// ---------------------------------------------------------------------------------------

// TestConvAuthRejects: missing, malformed, unknown and revoked tokens, and x-api-key
// alone, are 401 authentication_error; none has an effect.
func TestConvAuthRejects(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	revoked := tcCreateToken(t, h, `{"name":"r","role":"admin"}`)
	wantStatus(t, h.do("POST", "/tokens/"+revoked["id"].(string)+"/revoke", ""), 200)
	base62 := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	cases := []struct {
		name string
		opts []reqOpt
	}{
		{"missing", []reqOpt{as("")}},
		{"empty bearer", []reqOpt{tcRawHeader("Authorization", "Bearer ")}},
		{"bearer alone", []reqOpt{tcRawHeader("Authorization", "Bearer")}},
		{"no scheme", []reqOpt{tcRawHeader("Authorization", h.admin)}},
		{"basic scheme", []reqOpt{tcRawHeader("Authorization", "Basic "+h.admin)}},
		{"token scheme", []reqOpt{tcRawHeader("Authorization", "Token "+h.admin)}},
		{"short secret", []reqOpt{as("pt-" + base62[:39])}},
		{"no prefix", []reqOpt{as(base62[:45])}},
		{"wrong prefix", []reqOpt{as("pk-" + base62[:45])}},
		{"upper prefix", []reqOpt{as("PT-" + h.admin[3:])}},
		{"non-base62 char", []reqOpt{as("pt-" + base62[:40] + "-_")}},
		{"admin secret with extra char", []reqOpt{as(h.admin + "x")}},
		{"unknown", []reqOpt{as(api.NewSecret())}},
		{"revoked", []reqOpt{as(revoked["secret"].(string))}},
		{"x-api-key only", []reqOpt{as(""), header("x-api-key", h.admin)}},
		{"x-api-key with bad bearer", []reqOpt{as(api.NewSecret()), header("x-api-key", h.admin)}},
	}
	for _, c := range cases {
		r := h.do("GET", "/environments", "", c.opts...)
		tcWantErr(t, c.name+" GET", r, 401, "authentication_error", "")
		r = h.do("POST", "/environments", `{"name":"x"}`, c.opts...)
		tcWantErr(t, c.name+" POST", r, 401, "authentication_error", "")
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 0 {
		t.Errorf("rejected requests created environments: %v", p.ids())
	}
	// A valid token still works, also with the scheme in another case.
	wantStatus(t, h.do("GET", "/environments", "", tcRawHeader("Authorization", "bearer "+h.admin)), 200)
}

// TestConvAuthMalformedEvenIfStored: a malformed secret is refused as malformed, even when
// a token with that secret's hash exists in the store (so the shape check is observable).
func TestConvAuthMalformedEvenIfStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	base62 := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	good := "pt-" + base62[:40]
	bad := []string{
		"pt-" + base62[:39],
		"pt-" + base62[:20],
		"pt-",
		"pt-" + base62[:39] + "-",
		"pt-" + base62[:39] + "_",
		"pt-" + base62[:39] + "é",
		"pt_" + base62[:43],
		"PT-" + base62[:43],
		"tok-" + base62[:43],
		base62[:43],
	}
	for i, secret := range append(bad, good) {
		tok, _ := api.NewToken(fmt.Sprint("stored-", i), api.RoleAdmin, "", h.clock.Now())
		tok.Hash = api.HashSecret(secret)
		if _, err := h.store.CreateToken(context.Background(), tok); err != nil {
			t.Fatalf("store token: %v", err)
		}
	}
	for _, secret := range bad {
		tcWantErr(t, "stored malformed "+secret, h.do("GET", "/environments", "", as(secret)), 401, "authentication_error", "")
	}
	// The shortest well-formed secret (40 base62 characters) is accepted.
	wantStatus(t, h.do("GET", "/environments", "", as(good)), 200)
}

// ---------------------------------------------------------------------------------------
// §1 Errors and request IDs
// ---------------------------------------------------------------------------------------

// TestConvRequestID: a sent x-request-id is echoed (header and error body); otherwise a
// fresh UUID is made for every request.
func TestConvRequestID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"req-123_abc.DEF:xyz", "0b8e8a9e-3d8c-4a5e-9b55-3f1f0c2d9e11"} {
		r := h.do("GET", "/environments", "", header("x-request-id", id))
		wantStatus(t, r, 200)
		if got := r.Header.Get("x-request-id"); got != id {
			t.Errorf("success: x-request-id %q, want %q echoed", got, id)
		}
		r = h.do("GET", "/environments/env_00000000000000000000000000000000", "", header("x-request-id", id))
		tcWantErr(t, "404 with request id", r, 404, "not_found_error")
		if got := r.Header.Get("x-request-id"); got != id {
			t.Errorf("error: x-request-id %q, want %q echoed", got, id)
		}
		if e := tcErrOf(r); e.RequestID != id {
			t.Errorf("error body request_id %q, want %q", e.RequestID, id)
		}
		r = h.do("GET", "/environments", "", as(""), header("x-request-id", id))
		tcWantErr(t, "401 with request id", r, 401, "authentication_error")
		if e := tcErrOf(r); e.RequestID != id || r.Header.Get("x-request-id") != id {
			t.Errorf("401: request_id %q / header %q, want %q", e.RequestID, r.Header.Get("x-request-id"), id)
		}
	}
	seen := map[string]bool{}
	for i := range 3 {
		for _, r := range []*response{
			h.do("GET", "/environments", ""),
			h.do("GET", "/environments", "", as("")),
			h.doRaw("GET", "/healthz", "", as("")),
			h.doRaw("GET", "/no/such/path", "", as("")),
		} {
			id := r.Header.Get("x-request-id")
			if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
				t.Errorf("round %d: generated x-request-id %q is not a UUID", i, id)
			}
			if seen[id] {
				t.Errorf("x-request-id %q generated twice", id)
			}
			seen[id] = true
			if r.Status >= 400 && tcErrOf(r).RequestID != id {
				t.Errorf("request_id %q differs from header %q", tcErrOf(r).RequestID, id)
			}
		}
	}
}

// TestConvRequestIDEchoedAsSent: API.md §1 "If the request has x-request-id, it is
// echoed" sets no charset or length limit; a printable ID with spaces and a long one are
// echoed like any other.
func TestConvRequestIDEchoedAsSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"my request 1", "req/" + strings.Repeat("x", 300)} {
		r := h.do("GET", "/environments/env_00000000000000000000000000000000", "", header("x-request-id", id))
		tcWantErr(t, "404", r, 404, "not_found_error")
		if got := r.Header.Get("x-request-id"); got != id {
			t.Errorf("x-request-id %.40q (%d chars) came back as %q", id, len(id), got)
		}
		if e := tcErrOf(r); e.RequestID != id {
			t.Errorf("request_id %q, want %.40q", e.RequestID, id)
		}
	}
}

// TestConvUnknownPath: a path the server does not serve is 404 not_found_error with the
// envelope, with or without a token.
func TestConvUnknownPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	paths := []string{
		"/api/v1/cloud/nope",
		"/api/v1/cloud",
		"/api/v1/cloud/",
		"/api/v1/cloud/environments/",
		"/api/v1/cloud/environment",
		"/api/v1/cloud/environments/" + env + "/nope",
		"/api/v1/cloud/environments/" + env + "/work/a/b/c",
		"/api/v1/cloud/sessions/sess_x/events/more",
		"/api/v1/cloud/tokens/tok_x",
		"/api/v1/cloud/healthz",
		"/nope",
		"/",
		"/api/v2/cloud/environments",
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			for _, tok := range []string{h.admin, ""} {
				r := h.doRaw(method, p, "", as(tok))
				tcWantErr(t, method+" "+p, r, 404, "not_found_error")
			}
		}
	}
}

// TestConvMethodNotAllowed: a method not served on an existing path is 405
// invalid_request_error with the envelope (and an Allow header naming what is served).
func TestConvMethodNotAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	cases := []struct {
		method, path string
		allow        []string
	}{
		{"PUT", "/api/v1/cloud/environments", []string{"GET", "POST"}},
		{"DELETE", "/api/v1/cloud/environments", []string{"GET", "POST"}},
		{"PATCH", "/api/v1/cloud/environments/" + env, []string{"GET", "POST", "DELETE"}},
		{"PUT", "/api/v1/cloud/environments/" + env, []string{"GET", "POST", "DELETE"}},
		{"GET", "/api/v1/cloud/environments/" + env + "/archive", []string{"POST"}},
		{"POST", "/api/v1/cloud/environments/" + env + "/work", []string{"GET"}},
		{"POST", "/api/v1/cloud/environments/" + env + "/work/poll", []string{"GET"}},
		{"DELETE", "/api/v1/cloud/sessions", []string{"GET", "POST"}},
		{"PATCH", "/api/v1/cloud/sessions/" + sess, []string{"GET", "POST", "DELETE"}},
		{"GET", "/api/v1/cloud/sessions/" + sess + "/cancel", []string{"POST"}},
		{"DELETE", "/api/v1/cloud/sessions/" + sess + "/events", []string{"GET", "POST"}},
		{"DELETE", "/api/v1/cloud/tokens", []string{"GET", "POST"}},
		{"GET", "/api/v1/cloud/tokens/tok_0/revoke", []string{"POST"}},
		{"POST", "/healthz", []string{"GET"}},
		{"DELETE", "/openapi.json", []string{"GET"}},
	}
	for _, c := range cases {
		r := h.doRaw(c.method, c.path, "", as(h.admin))
		tcWantErr(t, c.method+" "+c.path, r, 405, "invalid_request_error")
		allow := r.Header.Get("Allow")
		for _, m := range c.allow {
			if !strings.Contains(allow, m) {
				t.Errorf("%s %s: Allow %q lacks %s", c.method, c.path, allow, m)
			}
		}
	}
	// Nothing happened to the session or environment.
	wantStatus(t, h.do("GET", "/environments/"+env, ""), 200)
	wantStatus(t, h.do("GET", "/sessions/"+sess, ""), 200)
}

// ---------------------------------------------------------------------------------------
// §1 Bodies
// ---------------------------------------------------------------------------------------

// TestConvMalformedJSON: malformed JSON on every endpoint that reads a body is 400
// invalid_request_error with the message "Request body must be valid JSON.", and has no
// effect.
func TestConvMalformedJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	tok := tcCreateToken(t, h, `{"name":"m","role":"member"}`)["id"].(string)
	paths := []string{
		"/environments",
		"/environments/" + env,
		"/environments/" + env + "/archive",
		"/sessions",
		"/sessions/" + sess,
		"/sessions/" + sess + "/archive",
		"/sessions/" + sess + "/cancel",
		"/sessions/" + sess + "/events",
		"/tokens",
		"/tokens/" + tok + "/revoke",
	}
	bodies := []string{`{"name":`, `{`, `}`, `{'name':'x'}`, `{"name":"x",}`, `{"a":1}{"b":2}`, `nul`, `{"name":"x"} x`, "\x00"}
	for _, p := range paths {
		for _, b := range bodies {
			r := h.do("POST", p, b)
			tcWantErr(t, fmt.Sprintf("POST %s %q", p, b), r, 400, "invalid_request_error")
			if m := tcErrOf(r).Error.Message; m != "Request body must be valid JSON." {
				t.Errorf("POST %s %q: message %q", p, b, m)
			}
		}
	}
	// No effect: the environment, session and token are as they were.
	if o := h.do("GET", "/environments/"+env, "").obj(t); o["archived_at"] != nil {
		t.Errorf("environment archived by a malformed request")
	}
	if o := h.do("GET", "/sessions/"+sess, "").obj(t); o["archived_at"] != nil {
		t.Errorf("session archived by a malformed request")
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 1 {
		t.Errorf("%d environments, want 1", len(p.Data))
	}
	if n := len(tcItemsOf(t, h, env, sess)); n != 1 || tcItemsOf(t, h, env, sess)[0].State != "queued" {
		t.Errorf("work items changed by malformed requests")
	}
	for _, d := range tcList(t, h, "/tokens").Data {
		if d["revoked_at"] != nil {
			t.Errorf("token %v revoked by a malformed request", d["id"])
		}
	}
}

// TestConvBodyNotObject: well-formed JSON that is not an object is a 400 (wrong type).
func TestConvBodyNotObject(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	for _, b := range []string{`[]`, `"x"`, `5`, `null`, `true`, `[{"name":"x"}]`} {
		tcWantErr(t, "POST /environments "+b, h.do("POST", "/environments", b), 400, "invalid_request_error")
		tcWantErr(t, "archive "+b, h.do("POST", "/environments/"+env+"/archive", b), 400, "invalid_request_error")
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 1 || p.Data[0]["archived_at"] != nil {
		t.Errorf("non-object bodies had an effect: %+v", p.Data)
	}
}

// TestConvNoServerErrors: malformed input of every kind is answered below 500 (with the
// envelope, checked by the harness).
func TestConvNoServerErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	long := strings.Repeat("a", 10000)
	cases := []struct {
		method, path, body string
		opts               []reqOpt
	}{
		{"POST", "/environments", "{\"name\":\"\xff\xfe\"}", nil},
		{"POST", "/environments", "\xff\xfe", nil},
		{"POST", "/environments", strings.Repeat("[", 100000), nil},
		{"POST", "/environments", `{"name":"x","metadata":` + strings.Repeat(`{"a":`, 20000) + `"b"` + strings.Repeat("}", 20000) + `}`, nil},
		{"POST", "/environments", `{"name":"x","metadata":{"a":1e999}}`, nil},
		{"POST", "/environments", `{"name":"x","config":{"type":"cloud","packages":{"apt":[null]}}}`, nil},
		{"POST", "/environments", `{"name":"x","config":{"type":"cloud","networking":null,"packages":null,"setup_script":null}}`, nil},
		{"POST", "/environments", `{"name":"x","config":{"type":"self_hosted","setup_script":null}}`, nil},
		{"POST", "/environments", `{"name":"x","name":"y"}`, nil},
		{"POST", "/sessions", `{"agent":{"id":"a","id":"b"},"environment_id":"` + env + `"}`, nil},
		{"POST", "/sessions", `{"agent":{"id":"a","type":{"x":1}},"environment_id":"` + env + `"}`, nil},
		{"POST", "/sessions", `{"agent":"` + long + `","environment_id":"` + env + `"}`, nil},
		{"POST", "/sessions", `{"agent":"a","environment_id":"` + long + `"}`, nil},
		{"POST", "/sessions/" + sess + "/events", `{"events":[{"type":"user.message","type":"user.message"}]}`, nil},
		{"POST", "/sessions/" + sess + "/events", `{"events":[{"type":"user.message","content":"\u0000\ud800"}]}`, nil},
		{"POST", "/sessions/" + sess + "/events", `{"events":[[]]}`, nil},
		{"POST", "/tokens", `{"name":"x","role":"worker","environment_id":"` + long + `"}`, nil},
		{"GET", "/environments/" + long, "", nil},
		{"GET", "/environments/env_%00", "", nil},
		{"GET", "/sessions/%ff%fe", "", nil},
		{"GET", "/environments?limit=%zz&page=%", "", nil},
		{"GET", "/environments?limit=99999999999999999999999", "", nil},
		{"GET", "/sessions?environment_id=" + long, "", nil},
		{"GET", "/environments", "", []reqOpt{tcRawHeader("Authorization", "Bearer pt-"+long)}},
		{"GET", "/environments", "", []reqOpt{tcRawHeader("Authorization", "Bearer pt-\xff\xfe"+long[:50])}},
		{"GET", "/environments", "", []reqOpt{header("x-request-id", long)}},
		{"GET", "/environments", "", []reqOpt{header("x-request-id", "\xff\xfe")}},
		{"POST", "/environments", `{"name":"x"}`, []reqOpt{header("Idempotency-Key", "\xff\xfe")}},
		{"POST", "/environments", `{"name":"x"}`, []reqOpt{header("Idempotency-Key", strings.Repeat("é", 255))}},
	}
	for _, c := range cases {
		r := h.do(c.method, c.path, c.body, c.opts...)
		if r.Status >= 500 {
			t.Errorf("%s %.80s %.40q: %d %s", c.method, c.path, c.body, r.Status, r.Body)
		}
	}
	// A long or non-printable x-request-id is not echoed; a UUID replaces it.
	r := h.do("GET", "/environments", "", header("x-request-id", long))
	if _, err := uuid.Parse(r.Header.Get("x-request-id")); err != nil {
		t.Errorf("a 10000-character x-request-id came back as %.40q", r.Header.Get("x-request-id"))
	}
	wantStatus(t, h.doRaw("GET", "/readyz", ""), 200)
}

// TestConvBodyTooLarge: a body over 32 MiB is 400; one of exactly 32 MiB is read.
func TestConvBodyTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const max = 32 << 20
	obj := `{"name":"big"}`
	exact := obj + strings.Repeat(" ", max-len(obj))
	r := h.do("POST", "/environments", exact)
	wantStatus(t, r, 201)
	over := obj + strings.Repeat(" ", max-len(obj)+1)
	r = h.do("POST", "/environments", over)
	tcWantErr(t, "32 MiB + 1", r, 400, "invalid_request_error")
	if p := tcList(t, h, "/environments"); len(p.Data) != 1 {
		t.Errorf("%d environments, want 1 (the oversized body must not create one)", len(p.Data))
	}
	// The same without a Content-Length (chunked): the limit holds on what is read.
	chunked := func(r *http.Request) { r.ContentLength = -1 }
	r = h.do("POST", "/environments", over, chunked)
	tcWantErr(t, "chunked 32 MiB + 1", r, 400, "invalid_request_error")
	r = h.do("POST", "/environments", exact, chunked)
	wantStatus(t, r, 201)
	if p := tcList(t, h, "/environments"); len(p.Data) != 2 {
		t.Errorf("%d environments, want 2", len(p.Data))
	}
	// Also on a POST whose body is otherwise optional.
	env := h.env(false)
	r = h.do("POST", "/environments/"+env+"/archive", `{}`+strings.Repeat(" ", max-1))
	tcWantErr(t, "archive 32 MiB + 1", r, 400, "invalid_request_error")
	if o := h.do("GET", "/environments/"+env, "").obj(t); o["archived_at"] != nil {
		t.Errorf("oversized archive request archived the environment")
	}
}

// TestConvEmptyBodiesEquivalent: on bodiless POSTs an empty body, {} and {}\n are the same
// (the Go SDK sends {}\n with a JSON content type); Content-Type is optional.
func TestConvEmptyBodiesEquivalent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bodies := []struct {
		name string
		body string
		opts []reqOpt
	}{
		{"empty", "", nil},
		{"{}", "{}", nil},
		{"{}\\n", "{}\n", nil},
		{"{}\\n no content type", "{}\n", []reqOpt{tcDelHeader("Content-Type")}},
		{"{} text/plain", "{}", []reqOpt{header("Content-Type", "text/plain")}},
		{"whitespace", " \n", nil},
	}
	for _, b := range bodies {
		env := h.env(true)
		r := h.do("POST", "/environments/"+env+"/archive", b.body, b.opts...)
		if !tcWantStatus(t, "env archive "+b.name, r, 200) {
			continue
		}
		at := r.obj(t)["archived_at"]
		if at == nil {
			t.Errorf("env archive %s: archived_at null", b.name)
		}
		h.clock.Advance(time.Second)
		r = h.do("POST", "/environments/"+env+"/archive", b.body, b.opts...)
		if tcWantStatus(t, "second env archive "+b.name, r, 200) && r.obj(t)["archived_at"] != at {
			t.Errorf("env archive %s again: archived_at %v, want %v", b.name, r.obj(t)["archived_at"], at)
		}
	}
}

// TestConvEmptyBodiesEquivalentSessions is the same for session archive and cancel,
// environment update and token revoke.
func TestConvEmptyBodiesEquivalentSessions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bodies := []struct {
		name string
		body string
		opts []reqOpt
	}{
		{"empty", "", nil},
		{"{}", "{}", nil},
		{"{}\\n", "{}\n", nil},
		{"{}\\n no content type", "{}\n", []reqOpt{tcDelHeader("Content-Type")}},
	}
	for _, b := range bodies {
		env := h.env(true)
		sess := h.session(env)
		// cancel with a live (queued) item: 202, the item is stopped.
		r := h.do("POST", "/sessions/"+sess+"/cancel", b.body, b.opts...)
		if tcWantStatus(t, "cancel "+b.name, r, 202) {
			want := map[string]any{"id": sess, "type": "session", "status": "canceling"}
			if got := r.obj(t); !reflect.DeepEqual(got, want) {
				t.Errorf("cancel %s: %v, want %v", b.name, got, want)
			}
		}
		// cancel again, no live item: 200.
		r = h.do("POST", "/sessions/"+sess+"/cancel", b.body, b.opts...)
		tcWantStatus(t, "second cancel "+b.name, r, 200)
		r = h.do("POST", "/sessions/"+sess+"/archive", b.body, b.opts...)
		if tcWantStatus(t, "session archive "+b.name, r, 200) && r.obj(t)["archived_at"] == nil {
			t.Errorf("session archive %s: archived_at null", b.name)
		}
		before := h.do("GET", "/environments/"+env, "")
		r = h.do("POST", "/environments/"+env, b.body, b.opts...)
		if tcWantStatus(t, "env update "+b.name, r, 200) && !bytes.Equal(r.Body, before.Body) {
			t.Errorf("env update %s with no fields changed it:\n%s\n%s", b.name, before.Body, r.Body)
		}
		tok := tcCreateToken(t, h, `{"name":"x","role":"member"}`)["id"].(string)
		r = h.do("POST", "/tokens/"+tok+"/revoke", b.body, b.opts...)
		if tcWantStatus(t, "revoke "+b.name, r, 200) && r.obj(t)["revoked_at"] == nil {
			t.Errorf("revoke %s: revoked_at null", b.name)
		}
	}
}

// TestConvBodyIgnoredOnGetAndDelete: a body sent with GET or DELETE is ignored, even when
// it is not JSON (Python sends {} with DELETE).
func TestConvBodyIgnoredOnGetAndDelete(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	for _, b := range []string{"{}", "{}\n", "not json", `{"name":`, `[1,2]`} {
		wantStatus(t, h.do("GET", "/environments", b), 200)
		wantStatus(t, h.do("GET", "/environments/"+env, b), 200)
		wantStatus(t, h.do("GET", "/sessions/"+sess+"/events", b), 200)
		wantStatus(t, h.do("GET", "/tokens", b), 200)
	}
	r := h.do("DELETE", "/sessions/"+sess, "{}")
	wantStatus(t, r, 200)
	if got := r.obj(t); !reflect.DeepEqual(got, map[string]any{"id": sess, "type": "session_deleted"}) {
		t.Errorf("delete session with {}: %v", got)
	}
	r = h.do("DELETE", "/environments/"+env, "not json")
	wantStatus(t, r, 200)
	if got := r.obj(t); !reflect.DeepEqual(got, map[string]any{"id": env, "type": "environment_deleted"}) {
		t.Errorf("delete environment with a non-JSON body: %v", got)
	}
}

// TestConvUnknownFieldsAndHeaders: unknown body fields and the SDKs' extra headers are
// ignored.
func TestConvUnknownFieldsAndHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	hdrs := []reqOpt{
		tcAddHeader("x-qoder-beta", "beta-one-2026-01-01"),
		tcAddHeader("x-qoder-beta", "beta-two-2026-02-02"),
		tcAddHeader("x-qoder-beta", "beta-three,beta-four"),
		header("qoder-workspace-id", "ws_123"),
		header("X-Qoder-Timeout", "30"),
		header("X-Qoder-Retry-Count", "0"),
		header("X-Qoder-Lang", "go"),
		header("X-Qoder-Package-Version", "0.1.0"),
		header("X-Qoder-OS", "Linux"),
		header("X-Qoder-Arch", "amd64"),
		header("X-Qoder-Runtime", "go"),
		header("X-Qoder-Runtime-Version", "go1.26"),
		header("User-Agent", "Qoder/Go"),
		header("Accept", "application/json"),
		header("anthropic-version", "2023-06-01"),
		header("anthropic-beta", "something-2025"),
		header("X-Stainless-Lang", "python"),
	}
	r := h.do("POST", "/environments", `{"name":"x","unknown":{"a":[1,2]},"extra":true,"config":{"type":"self_hosted"},"metadata":{"k":"v"}}`, hdrs...)
	wantStatus(t, r, 201)
	env := r.obj(t)
	if _, ok := env["unknown"]; ok {
		t.Errorf("unknown field echoed: %s", r.Body)
	}
	id := env["id"].(string)
	wantStatus(t, h.do("GET", "/environments/"+id, "", hdrs...), 200)
	wantStatus(t, h.do("GET", "/environments", "", hdrs...), 200)
	r = h.do("POST", "/sessions", `{"agent":"a","environment_id":"`+id+`","whatever":1,"stream":false}`, hdrs...)
	wantStatus(t, r, 201)
	sess := r.str(t, "id")
	r = h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","content":"hi"}],"extra":1}`, hdrs...)
	wantStatus(t, r, 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/cancel", "{}\n", hdrs...), 202)
	wantStatus(t, h.do("DELETE", "/sessions/"+sess, "{}", hdrs...), 200)
	wantStatus(t, h.do("POST", "/environments/"+id+"/archive", "{}\n", hdrs...), 200)
	// x-api-key next to a valid bearer token is simply ignored.
	wantStatus(t, h.do("GET", "/environments", "", header("x-api-key", "sk-whatever")), 200)
	// x-qoder-beta comma-joined in one line.
	wantStatus(t, h.do("GET", "/environments", "", header("x-qoder-beta", "a,b,c")), 200)
	wantStatus(t, h.do("POST", "/tokens", `{"name":"t","role":"member","scopes":["x"]}`, hdrs...), 201)
}

// ---------------------------------------------------------------------------------------
// §1 Path IDs
// ---------------------------------------------------------------------------------------

// TestConvPercentEncodedIDs: path IDs may arrive percent-encoded; each segment is decoded
// on its own and %2F does not split a segment.
func TestConvPercentEncodedIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	enc := func(s string, i int) string { return s[:i] + fmt.Sprintf("%%%02X", s[i]) + s[i+1:] }
	for _, p := range []string{enc(env, 3), enc(env, 4), enc(env, len(env)-1), url.PathEscape(env)} {
		r := h.do("GET", "/environments/"+p, "")
		if tcWantStatus(t, "GET env "+p, r, 200) && r.str(t, "id") != env {
			t.Errorf("GET %s: id %q, want %q", p, r.str(t, "id"), env)
		}
	}
	r := h.do("POST", "/environments/"+enc(env, 10), `{"name":"renamed"}`)
	if tcWantStatus(t, "update encoded", r, 200) && r.str(t, "name") != "renamed" {
		t.Errorf("update via encoded ID: %s", r.Body)
	}
	r = h.do("GET", "/sessions/"+enc(sess, 5), "")
	if tcWantStatus(t, "GET session encoded", r, 200) && r.str(t, "id") != sess {
		t.Errorf("GET session via encoded ID: %s", r.Body)
	}
	wantStatus(t, h.do("GET", "/sessions/"+enc(sess, 7)+"/events", ""), 200)
	tok := tcCreateToken(t, h, `{"name":"x","role":"member"}`)["id"].(string)
	r = h.do("POST", "/tokens/"+enc(tok, 20)+"/revoke", "")
	if tcWantStatus(t, "revoke encoded", r, 200) && (r.str(t, "id") != tok || r.obj(t)["revoked_at"] == nil) {
		t.Errorf("revoke via encoded ID: %s", r.Body)
	}
	// A worker bound to env reaches it through an encoded ID too.
	worker := h.token(api.RoleWorker, env)
	wantStatus(t, h.do("GET", "/environments/"+enc(env, 12), "", as(worker)), 200)
	wantStatus(t, h.do("GET", "/environments/"+enc(env, 12)+"/work", "", as(worker)), 200)

	// The contract test's ID: escaped as one segment; a 404, never a crash or a split.
	weird := "segment%20%2F%3F%25%23"
	for _, c := range []struct{ method, path string }{
		{"GET", "/environments/" + weird},
		{"POST", "/environments/" + weird},
		{"DELETE", "/environments/" + weird},
		{"POST", "/environments/" + weird + "/archive"},
		{"GET", "/sessions/" + weird},
		{"POST", "/sessions/" + weird},
		{"DELETE", "/sessions/" + weird},
		{"POST", "/sessions/" + weird + "/archive"},
		{"POST", "/sessions/" + weird + "/cancel"},
		{"GET", "/sessions/" + weird + "/events"},
		{"POST", "/sessions/" + weird + "/events"},
		{"POST", "/tokens/" + weird + "/revoke"},
		{"GET", "/environments/" + weird + "/work"},
		{"GET", "/environments/" + env + "/work/" + weird},
	} {
		body := ""
		if c.method == "POST" {
			body = `{"events":[{"type":"user.message"}],"name":"x"}`
		}
		tcWantErr(t, c.method+" "+c.path, h.do(c.method, c.path, body), 404, "not_found_error")
	}

	// %2F keeps the segment whole: "<env>%2Fwork" is one environment ID (that does not
	// exist), not the work list of <env>; "<sess>%2Farchive" is no session either.
	tcWantErr(t, "env%2Fwork", h.do("GET", "/environments/"+env+"%2Fwork", ""), 404, "not_found_error")
	tcWantErr(t, "env%2Fwork%2Fpoll", h.do("GET", "/environments/"+env+"%2Fwork%2Fpoll", ""), 404, "not_found_error")
	tcWantErr(t, "sess%2Farchive", h.do("POST", "/sessions/"+sess+"%2Farchive", ""), 404, "not_found_error")
	tcWantErr(t, "sess%2Fcancel", h.do("POST", "/sessions/"+sess+"%2Fcancel", ""), 404, "not_found_error")
	tcWantErr(t, "env%2Farchive", h.do("POST", "/environments/"+env+"%2Farchive", "{}"), 404, "not_found_error")
	if o := h.do("GET", "/sessions/"+sess, "").obj(t); o["archived_at"] != nil {
		t.Errorf("session archived through a %%2F path")
	}
	if o := h.do("GET", "/environments/"+env, "").obj(t); o["archived_at"] != nil {
		t.Errorf("environment archived through a %%2F path")
	}
	if items := tcItemsOf(t, h, env, sess); len(items) != 1 || items[0].State != "queued" {
		t.Errorf("session's item changed through a %%2F path: %+v", items)
	}
}

// TestConvWrongPrefixIDs: a path ID with the wrong prefix or shape is 404, even when its
// hex digits are those of an existing resource.
func TestConvWrongPrefixIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	tok := tcCreateToken(t, h, `{"name":"x","role":"member"}`)["id"].(string)
	envHex := strings.TrimPrefix(env, "env_")
	sessHex := strings.TrimPrefix(sess, "sess_")
	tokHex := strings.TrimPrefix(tok, "tok_")
	cases := []struct{ method, path string }{
		{"GET", "/environments/sess_" + envHex},
		{"GET", "/environments/ENV_" + envHex},
		{"GET", "/environments/env_" + strings.ToUpper(envHex)},
		{"GET", "/environments/env" + envHex},
		{"GET", "/environments/env-" + envHex},
		{"GET", "/environments/" + envHex},
		{"GET", "/environments/env_" + envHex[:31]},
		{"GET", "/environments/" + env + "0"},
		{"GET", "/environments/env_" + envHex + "%20"},
		{"GET", "/environments/%20" + env},
		{"GET", "/environments/env_nope"},
		{"POST", "/environments/sess_" + envHex},
		{"POST", "/environments/sess_" + envHex + "/archive"},
		{"DELETE", "/environments/tok_" + envHex},
		{"GET", "/sessions/env_" + sessHex},
		{"GET", "/sessions/SESS_" + sessHex},
		{"GET", "/sessions/sess_" + strings.ToUpper(sessHex)},
		{"GET", "/sessions/" + sess + "f"},
		{"POST", "/sessions/env_" + sessHex},
		{"DELETE", "/sessions/env_" + sessHex},
		{"POST", "/sessions/env_" + sessHex + "/archive"},
		{"POST", "/sessions/env_" + sessHex + "/cancel"},
		{"GET", "/sessions/env_" + sessHex + "/events"},
		{"POST", "/sessions/env_" + sessHex + "/events"},
		{"POST", "/tokens/env_" + tokHex + "/revoke"},
		{"POST", "/tokens/TOK_" + tokHex + "/revoke"},
		{"POST", "/tokens/" + tok + "0/revoke"},
		{"GET", "/environments/sess_" + envHex + "/work"},
	}
	for _, c := range cases {
		body := ""
		if c.method == "POST" {
			body = `{"events":[{"type":"user.message"}]}`
		}
		tcWantErr(t, c.method+" "+c.path, h.do(c.method, c.path, body), 404, "not_found_error")
	}
	// Nothing was touched.
	wantStatus(t, h.do("GET", "/environments/"+env, ""), 200)
	if o := h.do("GET", "/sessions/"+sess, "").obj(t); o["archived_at"] != nil {
		t.Errorf("session archived")
	}
	if p := tcList(t, h, "/sessions/"+sess+"/events"); len(p.Data) != 0 {
		t.Errorf("events stored through a wrong-prefix path: %v", p.ids())
	}
	for _, d := range tcList(t, h, "/tokens").Data {
		if d["revoked_at"] != nil {
			t.Errorf("token %v revoked through a wrong-prefix path", d["id"])
		}
	}
}

// ---------------------------------------------------------------------------------------
// §1 Timestamps
// ---------------------------------------------------------------------------------------

var tcTimestampRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,5}[1-9])?Z$`)

// TestConvTimestamps: RFC 3339 in UTC with Z, microsecond precision, trailing zeros
// dropped; nullable timestamps are an explicit null.
func TestConvTimestamps(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	plus2 := time.FixedZone("X", 2*3600)
	cases := []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 7, 1, 10, 15, 0, 123450000, plus2), "2026-07-01T08:15:00.12345Z"},
		{time.Date(2026, 7, 1, 8, 15, 0, 0, time.UTC), "2026-07-01T08:15:00Z"},
		{time.Date(2026, 7, 1, 8, 15, 6, 120394000, time.UTC), "2026-07-01T08:15:06.120394Z"},
		{time.Date(2026, 7, 1, 8, 15, 6, 123456789, time.UTC), "2026-07-01T08:15:06.123456Z"},
		{time.Date(2026, 7, 1, 8, 15, 6, 100000000, time.UTC), "2026-07-01T08:15:06.1Z"},
		{time.Date(2026, 7, 1, 8, 15, 6, 999, time.UTC), "2026-07-01T08:15:06Z"},
		{time.Date(2026, 12, 31, 23, 59, 59, 1000, time.FixedZone("Y", -5*3600)), "2027-01-01T04:59:59.000001Z"},
	}
	for _, c := range cases {
		tcSetClock(h, c.at)
		env := tcCreateEnv(t, h, `{"name":"t","config":{"type":"self_hosted"}}`)
		if env["created_at"] != c.want || env["updated_at"] != c.want {
			t.Errorf("clock %v: environment created_at %v updated_at %v, want %s", c.at, env["created_at"], env["updated_at"], c.want)
		}
		if v, ok := env["archived_at"]; !ok || v != nil {
			t.Errorf("archived_at must be an explicit null: %v (present %t)", v, ok)
		}
		envID := env["id"].(string)
		r := h.do("POST", "/sessions", `{"agent":"a","environment_id":"`+envID+`","initial_events":[{"type":"user.message"}]}`)
		wantStatus(t, r, 201)
		sess := r.obj(t)
		if sess["created_at"] != c.want {
			t.Errorf("session created_at %v, want %s", sess["created_at"], c.want)
		}
		if p := tcList(t, h, "/sessions/"+sess["id"].(string)+"/events"); len(p.Data) != 1 || p.Data[0]["created_at"] != c.want {
			t.Errorf("event created_at %v, want %s", p.Data, c.want)
		}
		tok := tcCreateToken(t, h, `{"name":"t","role":"member"}`)
		if tok["created_at"] != c.want || tok["last_used_at"] != nil || tok["revoked_at"] != nil {
			t.Errorf("token timestamps %v %v %v, want %s null null", tok["created_at"], tok["last_used_at"], tok["revoked_at"], c.want)
		}
		items := tcItemsOf(t, h, envID, sess["id"].(string))
		if len(items) != 1 || items[0].CreatedAt == nil || *items[0].CreatedAt != c.want || items[0].AcknowledgedAt != nil {
			t.Errorf("work item timestamps: %+v", items)
		}
		r = h.do("POST", "/environments/"+envID+"/archive", "")
		wantStatus(t, r, 200)
		if got := r.obj(t)["archived_at"]; got != c.want || !tcTimestampRE.MatchString(got.(string)) {
			t.Errorf("archived_at %v, want %s", got, c.want)
		}
	}
}

// ---------------------------------------------------------------------------------------
// §1 Pagination, on every list
// ---------------------------------------------------------------------------------------

// tcLister is one paginated list: setup prepares it and returns its path, a function
// adding n items (their IDs in creation order) and the IDs listed before any was added.
type tcLister struct {
	name   string
	prefix string
	setup  func(t *testing.T, h *harness) (path string, add func(n int) []string, existing []string)
	// maxLimit is the list's largest page when it is not 100 (the event history's 1000).
	maxLimit int
}

var tcListers = []tcLister{
	{"environments", "env", func(t *testing.T, h *harness) (string, func(int) []string, []string) {
		return "/environments", func(n int) []string {
			var ids []string
			for i := range n {
				ids = append(ids, tcCreateEnv(t, h, fmt.Sprintf(`{"name":"e%d"}`, i))["id"].(string))
			}
			return ids
		}, nil
	}, 0},
	{"sessions", "sess", func(t *testing.T, h *harness) (string, func(int) []string, []string) {
		env := h.env(false)
		return "/sessions", func(n int) []string {
			var ids []string
			for range n {
				ids = append(ids, h.session(env))
			}
			return ids
		}, nil
	}, 0},
	{"sessions filtered", "sess", func(t *testing.T, h *harness) (string, func(int) []string, []string) {
		env, other := h.env(false), h.env(false)
		return "/sessions?environment_id=" + env, func(n int) []string {
			var ids []string
			for range n {
				ids = append(ids, h.session(env))
				h.session(other) // interleaved, filtered out
			}
			return ids
		}, nil
	}, 0},
	{"events", "evt", func(t *testing.T, h *harness) (string, func(int) []string, []string) {
		env := h.env(true)
		sess := h.session(env)
		return "/sessions/" + sess + "/events", func(n int) []string {
			var ids []string
			for n > 0 {
				k := min(n, 50)
				n -= k
				evs := make([]map[string]any, k)
				for i := range evs {
					evs[i] = map[string]any{"type": "user.message", "content": i}
				}
				r := h.do("POST", "/sessions/"+sess+"/events", jsonBody(map[string]any{"events": evs}))
				wantStatus(t, r, 200)
				var out tcPage
				r.decode(t, &out)
				ids = append(ids, out.ids()...)
			}
			return ids
		}, nil
	}, 1000},
	{"tokens", "tok", func(t *testing.T, h *harness) (string, func(int) []string, []string) {
		toks, _, err := h.store.ListTokens(context.Background(), store.Page{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var existing []string
		for _, tk := range toks {
			existing = append(existing, tk.ID)
		}
		return "/tokens", func(n int) []string {
			var ids []string
			for i := range n {
				ids = append(ids, tcCreateToken(t, h, fmt.Sprintf(`{"name":"t%d","role":"member"}`, i))["id"].(string))
			}
			return ids
		}, existing
	}, 0},
}

// tcWantPage asserts a page's content and links.
func tcWantPage(t *testing.T, label string, p tcPage, ids []string, hasMore bool, next *string) {
	t.Helper()
	got := p.ids()
	if !slicesEqual(got, ids) {
		t.Errorf("%s: ids %v, want %v", label, got, ids)
	}
	first, last := (*string)(nil), (*string)(nil)
	if len(ids) > 0 {
		first, last = &ids[0], &ids[len(ids)-1]
	}
	if tcStr(p.FirstID) != tcStr(first) || tcStr(p.LastID) != tcStr(last) {
		t.Errorf("%s: first_id %s last_id %s, want %s %s", label, tcStr(p.FirstID), tcStr(p.LastID), tcStr(first), tcStr(last))
	}
	if p.HasMore != hasMore {
		t.Errorf("%s: has_more %t, want %t", label, p.HasMore, hasMore)
	}
	if tcStr(p.NextPage) != tcStr(next) {
		t.Errorf("%s: next_page %s, want %s", label, tcStr(p.NextPage), tcStr(next))
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestConvPagination runs the pagination rules of API.md §1 on every list.
func TestConvPagination(t *testing.T) {
	t.Parallel()
	for _, l := range tcListers {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			path, add, existing := l.setup(t, h)
			all := append(append([]string{}, existing...), add(105-len(existing))...)
			if len(all) != 105 {
				t.Fatalf("%d items", len(all))
			}
			sorted := append([]string{}, all...)
			sort.Strings(sorted)
			if !slicesEqual(sorted, all) {
				t.Fatalf("IDs are not increasing in creation order: %v", all)
			}

			// Default limit 20; page = next_page continues.
			p := tcList(t, h, path)
			tcWantPage(t, "first page", p, all[:20], true, &all[19])
			p = tcList(t, h, tcQ(path, "page="+*p.NextPage))
			tcWantPage(t, "second page", p, all[20:40], true, &all[39])

			// Walking with limit 7 sees everything once, in order.
			var walked []string
			q := tcQ(path, "limit=7")
			for pages := 0; ; pages++ {
				if pages > 30 {
					t.Fatalf("paging does not end")
				}
				p := tcList(t, h, q)
				walked = append(walked, p.ids()...)
				if !p.HasMore {
					if p.NextPage != nil {
						t.Errorf("last page has next_page %s", *p.NextPage)
					}
					break
				}
				if p.NextPage == nil || *p.NextPage != *p.LastID {
					t.Fatalf("has_more page: next_page %s, last_id %s", tcStr(p.NextPage), tcStr(p.LastID))
				}
				q = tcQ(path, "limit=7&page="+*p.NextPage)
			}
			if !slicesEqual(walked, all) {
				t.Errorf("walk with limit 7: %d items %v, want %d", len(walked), walked, len(all))
			}
			// The last page exactly at the end.
			p = tcList(t, h, tcQ(path, "limit=5&page="+all[99]))
			tcWantPage(t, "exact last page", p, all[100:105], false, nil)

			// limit: 1000 → the largest page (100, or 1000 where the list allows it), 100,
			// 101 → 100 or 101; bad values → 400 param limit.
			maxLimit := cmp.Or(l.maxLimit, 100)
			for _, asked := range []int{1000, 100, 101} {
				n, name := min(asked, maxLimit), fmt.Sprintf("limit=%d", asked)
				if n >= len(all) {
					tcWantPage(t, name, tcList(t, h, tcQ(path, name)), all, false, nil)
				} else {
					tcWantPage(t, name, tcList(t, h, tcQ(path, name)), all[:n], true, &all[n-1])
				}
			}
			tcWantPage(t, "limit=1", tcList(t, h, tcQ(path, "limit=1")), all[:1], true, &all[0])
			for _, bad := range []string{"0", "-1", "x", "1.5", "", "-100", "1e2", "0x10", "20abc"} {
				r := h.do("GET", tcQ(path, "limit="+url.QueryEscape(bad)), "")
				tcWantErr(t, "limit="+bad, r, 400, "invalid_request_error", "limit")
			}

			// after_id.
			tcWantPage(t, "after_id", tcList(t, h, tcQ(path, "limit=5&after_id="+all[10])), all[11:16], true, &all[15])
			tcWantPage(t, "after_id near end", tcList(t, h, tcQ(path, "after_id="+all[100])), all[101:], false, nil)
			tcWantPage(t, "after_id last", tcList(t, h, tcQ(path, "after_id="+all[104])), nil, false, nil)

			// before_id: the items immediately before, ascending; has_more = more before;
			// next_page always null.
			tcWantPage(t, "before_id", tcList(t, h, tcQ(path, "limit=10&before_id="+all[50])), all[40:50], true, nil)
			tcWantPage(t, "before_id default limit", tcList(t, h, tcQ(path, "before_id="+all[104])), all[84:104], true, nil)
			tcWantPage(t, "before_id near start", tcList(t, h, tcQ(path, "limit=10&before_id="+all[5])), all[:5], false, nil)
			tcWantPage(t, "before_id exactly start", tcList(t, h, tcQ(path, "limit=5&before_id="+all[5])), all[:5], false, nil)
			tcWantPage(t, "before_id first", tcList(t, h, tcQ(path, "before_id="+all[0])), nil, false, nil)
			// Walking backwards with before_id=<first_id> sees everything once.
			var back []string
			q = tcQ(path, "limit=9")
			p = tcList(t, h, tcQ(path, "limit=9&before_id="+all[104]))
			back = append(p.ids(), all[104])
			for p.HasMore {
				p = tcList(t, h, tcQ(q, "before_id="+*p.FirstID))
				back = append(p.ids(), back...)
			}
			if !slicesEqual(back, all) {
				t.Errorf("backward walk: %d items, want %d", len(back), len(all))
			}

			// More than one cursor → 400; malformed cursors → 400.
			for _, qs := range []string{
				"page=" + all[3] + "&after_id=" + all[4],
				"page=" + all[3] + "&before_id=" + all[4],
				"before_id=" + all[3] + "&after_id=" + all[4],
				"page=" + all[3] + "&before_id=" + all[4] + "&after_id=" + all[5],
			} {
				tcWantErr(t, qs, h.do("GET", tcQ(path, qs), ""), 400, "invalid_request_error", "page", "before_id", "after_id")
			}
			other := "env"
			if l.prefix == "env" {
				other = "sess"
			}
			hex := strings.TrimPrefix(all[3], l.prefix+"_")
			for _, name := range []string{"page", "before_id", "after_id"} {
				for _, v := range []string{"garbage", "", other + "_" + hex, l.prefix + "_" + strings.ToUpper(hex), l.prefix + "_" + hex[:10], "%00"} {
					r := h.do("GET", tcQ(path, name+"="+url.QueryEscape(v)), "")
					tcWantErr(t, name+"="+v, r, 400, "invalid_request_error", name)
				}
			}
		})
	}
}

// TestConvPaginationWritesBetweenPages: items added while paging appear once, at the
// end; nothing is skipped or repeated.
func TestConvPaginationWritesBetweenPages(t *testing.T) {
	t.Parallel()
	for _, l := range tcListers {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			path, add, existing := l.setup(t, h)
			all := append(append([]string{}, existing...), add(25-len(existing))...)
			p := tcList(t, h, tcQ(path, "limit=10"))
			seen := p.ids()
			extra := add(3)
			all = append(all, extra...)
			for p.HasMore {
				p = tcList(t, h, tcQ(path, "limit=10&page="+*p.NextPage))
				seen = append(seen, p.ids()...)
				if len(seen) > 100 {
					break
				}
			}
			if !slicesEqual(seen, all) {
				t.Errorf("paged with writes between pages: %v, want %v", seen, all)
			}
		})
	}
}

// TestConvPaginationEmpty: an empty list has data [], null first_id, last_id and
// next_page, and has_more false.
func TestConvPaginationEmpty(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	toks, _, err := h.store.ListTokens(context.Background(), store.Page{Limit: 1})
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens: %v %v", toks, err)
	}
	paths := []string{
		"/environments?include_archived=false&environment_id_unused=1",
		"/sessions?environment_id=" + h.env(false),
		"/sessions?after_id=" + sess,
		"/sessions/" + sess + "/events",
		"/tokens?after_id=" + toks[0].ID,
		"/tokens?before_id=" + toks[0].ID,
	}
	// The environments list is not empty here; archive both to empty it.
	for _, d := range tcList(t, h, "/environments").Data {
		wantStatus(t, h.do("POST", "/environments/"+d["id"].(string)+"/archive", ""), 200)
	}
	for _, p := range paths {
		r := h.do("GET", p, "")
		wantStatus(t, r, 200)
		var raw map[string]json.RawMessage
		r.decode(t, &raw)
		want := map[string]string{"data": "[]", "first_id": "null", "last_id": "null", "has_more": "false", "next_page": "null"}
		if len(raw) != len(want) {
			t.Errorf("GET %s: keys %v", p, raw)
		}
		for k, v := range want {
			if got, ok := raw[k]; !ok || string(got) != v {
				t.Errorf("GET %s: %s = %s (present %t), want %s", p, k, got, ok, v)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------
// §1 Idempotency
// ---------------------------------------------------------------------------------------

// TestConvIdempotencyReplay: the same key, token, method, path and body replays the first
// response byte for byte with Idempotent-Replayed: true, with no second effect.
func TestConvIdempotencyReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	body := `{"name":"once","config":{"type":"self_hosted"}}`
	r1 := h.do("POST", "/environments", body, header("Idempotency-Key", "k-1"))
	wantStatus(t, r1, 201)
	if r1.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("first answer carries Idempotent-Replayed: %q", r1.Header.Get("Idempotent-Replayed"))
	}
	h.clock.Advance(time.Hour)
	r2 := h.do("POST", "/environments", body, header("Idempotency-Key", "k-1"))
	if r2.Status != 201 || !bytes.Equal(r1.Body, r2.Body) {
		t.Errorf("replay: %d %s, want 201 %s", r2.Status, r2.Body, r1.Body)
	}
	if r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: Idempotent-Replayed %q, want true", r2.Header.Get("Idempotent-Replayed"))
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 1 {
		t.Errorf("%d environments after a replay, want 1", len(p.Data))
	}
	env := r1.str(t, "id")

	// POST /sessions in a self_hosted environment: one session, one work item.
	sbody := `{"agent":"a","environment_id":"` + env + `"}`
	s1 := h.do("POST", "/sessions", sbody, header("Idempotency-Key", "k-2"))
	wantStatus(t, s1, 201)
	s2 := h.do("POST", "/sessions", sbody, header("Idempotency-Key", "k-2"))
	if s2.Status != 201 || !bytes.Equal(s1.Body, s2.Body) || s2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("session replay: %d %s (replayed %q)", s2.Status, s2.Body, s2.Header.Get("Idempotent-Replayed"))
	}
	if p := tcList(t, h, "/sessions"); len(p.Data) != 1 {
		t.Errorf("%d sessions after a replay, want 1", len(p.Data))
	}
	if items := tcList(t, h, "/environments/"+env+"/work"); len(items.Data) != 1 {
		t.Errorf("%d work items after a replayed session create, want 1", len(items.Data))
	}
	sess := s1.str(t, "id")

	// Events: a replayed send stores nothing more.
	ebody := `{"events":[{"type":"system.message","content":"x"}]}`
	e1 := h.do("POST", "/sessions/"+sess+"/events", ebody, header("Idempotency-Key", "k-3"))
	wantStatus(t, e1, 200)
	e2 := h.do("POST", "/sessions/"+sess+"/events", ebody, header("Idempotency-Key", "k-3"))
	if !bytes.Equal(e1.Body, e2.Body) || e2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("events replay: %s vs %s", e1.Body, e2.Body)
	}
	if p := tcList(t, h, "/sessions/"+sess+"/events"); len(p.Data) != 1 {
		t.Errorf("%d events after a replayed send, want 1", len(p.Data))
	}

	// DELETE: the replay answers the first 200, not a 404.
	d1 := h.do("DELETE", "/sessions/"+sess, "", header("Idempotency-Key", "k-4"))
	wantStatus(t, d1, 200)
	d2 := h.do("DELETE", "/sessions/"+sess, "", header("Idempotency-Key", "k-4"))
	if d2.Status != 200 || !bytes.Equal(d1.Body, d2.Body) || d2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("delete replay: %d %s", d2.Status, d2.Body)
	}

	// Bodiless POSTs: "", {} and {}\n are the same request.
	a1 := h.do("POST", "/environments/"+env+"/archive", "", header("Idempotency-Key", "k-5"))
	wantStatus(t, a1, 200)
	h.clock.Advance(time.Minute)
	a2 := h.do("POST", "/environments/"+env+"/archive", "{}\n", header("Idempotency-Key", "k-5"))
	if a2.Status != 200 || !bytes.Equal(a1.Body, a2.Body) || a2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("archive replay with {}\\n after an empty body: %d %s (replayed %q)", a2.Status, a2.Body, a2.Header.Get("Idempotent-Replayed"))
	}

	// A request without the key is never replayed.
	n1 := h.do("POST", "/environments", body)
	n2 := h.do("POST", "/environments", body)
	if n1.str(t, "id") == n2.str(t, "id") || n2.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("requests without a key were merged")
	}
}

// TestConvIdempotencyConflict: the same key with another body, path or method is 409
// conflict_error "Idempotency key reused with a different request body.", without effect.
func TestConvIdempotencyConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	wantStatus(t, h.do("POST", "/environments", `{"name":"a"}`, header("Idempotency-Key", "same")), 201)
	env := h.env(false)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/environments", `{"name":"b"}`},
		{"POST", "/environments", `{"name":"a","description":"x"}`},
		{"POST", "/environments", `{"name": "a"}`},
		{"POST", "/environments?x=1", `{"name":"a"}`},
		{"POST", "/environments/" + env, `{"name":"a"}`},
		{"POST", "/environments/" + env + "/archive", ``},
		{"DELETE", "/environments/" + env, ``},
	} {
		r := h.do(c.method, c.path, c.body, header("Idempotency-Key", "same"))
		tcWantErr(t, c.method+" "+c.path+" "+c.body, r, 409, "conflict_error")
		if m := tcErrOf(r).Error.Message; m != "Idempotency key reused with a different request body." {
			t.Errorf("%s %s: message %q", c.method, c.path, m)
		}
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("a conflict is marked replayed")
		}
	}
	p := tcList(t, h, "/environments")
	if len(p.Data) != 2 || p.Data[1]["archived_at"] != nil || p.Data[1]["name"] != "test" {
		t.Errorf("conflicting requests had an effect: %+v", p.Data)
	}
}

// TestConvIdempotencyPerToken: a key is scoped to its token.
func TestConvIdempotencyPerToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	other := h.token(api.RoleAdmin, "")
	member := h.token(api.RoleMember, "")
	body := `{"name":"x"}`
	r1 := h.do("POST", "/environments", body, header("Idempotency-Key", "shared"))
	wantStatus(t, r1, 201)
	r2 := h.do("POST", "/environments", body, header("Idempotency-Key", "shared"), as(other))
	wantStatus(t, r2, 201)
	if r2.Header.Get("Idempotent-Replayed") != "" || r2.str(t, "id") == r1.str(t, "id") {
		t.Errorf("another token's request was replayed: %s", r2.Body)
	}
	// Another token with the same key and a different body is no conflict either.
	r3 := h.do("POST", "/environments", `{"name":"y"}`, header("Idempotency-Key", "shared"), as(member))
	wantStatus(t, r3, 201)
	// Each token still replays its own.
	r4 := h.do("POST", "/environments", body, header("Idempotency-Key", "shared"), as(other))
	if !bytes.Equal(r4.Body, r2.Body) || r4.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("other token's replay: %s, want %s", r4.Body, r2.Body)
	}
	r5 := h.do("POST", "/environments", body, header("Idempotency-Key", "shared"))
	if !bytes.Equal(r5.Body, r1.Body) || r5.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("first token's replay: %s, want %s", r5.Body, r1.Body)
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 3 {
		t.Errorf("%d environments, want 3", len(p.Data))
	}
}

// TestConvIdempotencyKeyLength: a key of up to 255 characters is accepted; a longer one is
// 400 without effect.
func TestConvIdempotencyKeyLength(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	wantStatus(t, h.do("POST", "/environments", `{"name":"x"}`, header("Idempotency-Key", strings.Repeat("k", 255))), 201)
	for _, k := range []string{strings.Repeat("k", 256), strings.Repeat("k", 1000)} {
		r := h.do("POST", "/environments", `{"name":"y"}`, header("Idempotency-Key", k))
		tcWantErr(t, fmt.Sprintf("key of %d", len(k)), r, 400, "invalid_request_error")
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 1 {
		t.Errorf("%d environments, want 1", len(p.Data))
	}
}

// TestConvIdempotencyReplaysErrors: an error answer (here a 400) is replayed too.
//
// The replay is byte for byte, so its request_id is the first request's; both requests
// carry the same x-request-id so that the envelope rule (request_id == x-request-id) can
// hold as well.
func TestConvIdempotencyReplaysErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opts := []reqOpt{header("Idempotency-Key", "bad-1"), header("x-request-id", "req-bad-1")}
	r1 := h.do("POST", "/environments", `{"name":""}`, opts...)
	tcWantErr(t, "first", r1, 400, "invalid_request_error", "name")
	r2 := h.do("POST", "/environments", `{"name":""}`, opts...)
	if r2.Status != 400 || !bytes.Equal(r1.Body, r2.Body) || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("error replay: %d %s (replayed %q), want %s", r2.Status, r2.Body, r2.Header.Get("Idempotent-Replayed"), r1.Body)
	}
	// A 404 is replayed as well.
	missing := "sess_00000000000000000000000000000000"
	opts = []reqOpt{header("Idempotency-Key", "bad-2"), header("x-request-id", "req-bad-2")}
	r1 = h.do("POST", "/sessions/"+missing+"/cancel", "", opts...)
	tcWantErr(t, "404 first", r1, 404, "not_found_error")
	r2 = h.do("POST", "/sessions/"+missing+"/cancel", "", opts...)
	if r2.Status != 404 || !bytes.Equal(r1.Body, r2.Body) || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("404 replay: %d %s", r2.Status, r2.Body)
	}
}

// ---------------------------------------------------------------------------------------
// §6 Service endpoints and the route table
// ---------------------------------------------------------------------------------------

// TestServiceEndpoints: /healthz, /readyz, /openapi.json and /metrics answer without a
// token (and ignore a bad one), at the root and not under the base path.
func TestServiceEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tok := range []string{"", "pt-bad"} {
		for _, p := range []string{"/healthz", "/readyz"} {
			r := h.doRaw("GET", p, "", as(tok))
			wantStatus(t, r, 200)
			if got := r.str(t, "status"); got != "ok" {
				t.Errorf("%s: status %q", p, got)
			}
		}
		r := h.doRaw("GET", "/openapi.json", "", as(tok))
		wantStatus(t, r, 200)
		if !bytes.Equal(r.Body, openapi.Document()) {
			t.Errorf("/openapi.json is not the document")
		}
		var doc map[string]any
		r.decode(t, &doc)
		if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
			t.Errorf("openapi version %q", v)
		}
		r = h.doRaw("GET", "/metrics", "", as(tok))
		wantStatus(t, r, 200)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("/metrics Content-Type %q", ct)
		}
		if !bytes.Contains(r.Body, []byte("berth_http_requests_total")) || !bytes.Contains(r.Body, []byte("# TYPE")) {
			t.Errorf("/metrics body is not Prometheus text with berth metrics:\n%.500s", r.Body)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		tcWantErr(t, "under base path "+p, h.do("GET", p, ""), 404, "not_found_error")
	}
}

// TestRoutesMatchOpenAPI: the server's route table and the document's operations are the
// same set, both ways.
func TestRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	server := map[string]bool{}
	for _, r := range h.srv.Routes() {
		k := r.Method + " " + r.Pattern
		if server[k] {
			t.Errorf("server route %s listed twice", k)
		}
		server[k] = true
	}
	doc := map[string]bool{}
	for _, r := range openapi.Routes() {
		doc[r.Method+" "+r.Path] = true
	}
	for k := range server {
		if !doc[k] {
			t.Errorf("server serves %s, which openapi.json does not describe", k)
		}
	}
	for k := range doc {
		if !server[k] {
			t.Errorf("openapi.json describes %s, which the server does not serve", k)
		}
	}
	if len(server) < 30 || len(doc) != len(server) {
		t.Errorf("%d server routes, %d document routes", len(server), len(doc))
	}
}
