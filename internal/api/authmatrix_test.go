package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/testserver"
)

// This file is the authentication and authorization matrix of API.md §1 ("Who gets in"),
// generated from the server's own route table (Server.Routes), so that a route added to
// the table is covered without anyone writing a row for it: every route × every
// credential below gets exactly the 401 or 403 its Access level implies, or, for a
// credential the route admits, an answer that is neither. A route whose Access the
// matrix does not know, or whose path has a parameter the matrix cannot fill, fails the
// test.

// amKind is what a credential is, as far as authorization goes.
type amKind int

const (
	amNobody      amKind = iota // no valid token at all: 401 on every non-public route
	amAdmin                     // admin token
	amMember                    // member token
	amWorkerBound               // worker token bound to the environment the path names
	amWorkerOther               // worker token bound to another environment
)

// amCred is one way of calling a route.
type amCred struct {
	name string
	kind amKind
	opts func(f *amFixture) []reqOpt
}

// amBase62 is the token alphabet.
const amBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// amCreds are the credentials every route is called with.
var amCreds = []amCred{
	{"no token", amNobody, func(*amFixture) []reqOpt { return []reqOpt{as("")} }},
	{"malformed empty bearer", amNobody, func(*amFixture) []reqOpt { return []reqOpt{header("Authorization", "Bearer ")} }},
	{"malformed basic scheme", amNobody, func(f *amFixture) []reqOpt { return []reqOpt{header("Authorization", "Basic "+f.h.admin)} }},
	{"malformed no scheme", amNobody, func(f *amFixture) []reqOpt { return []reqOpt{header("Authorization", f.h.admin)} }},
	{"malformed short secret", amNobody, func(*amFixture) []reqOpt { return []reqOpt{as("pt-" + amBase62[:39])} }},
	{"malformed bad character", amNobody, func(f *amFixture) []reqOpt { return []reqOpt{as(f.h.admin[:len(f.h.admin)-1] + "!")} }},
	{"malformed oversized secret", amNobody, func(*amFixture) []reqOpt { return []reqOpt{as("pt-" + strings.Repeat(amBase62, 5))} }},
	{"unknown", amNobody, func(*amFixture) []reqOpt { return []reqOpt{as(api.NewSecret())} }},
	{"revoked admin", amNobody, func(f *amFixture) []reqOpt { return []reqOpt{as(f.revokedAdmin)} }},
	{"revoked bound worker", amNobody, func(f *amFixture) []reqOpt { return []reqOpt{as(f.revokedWorker)} }},
	{"x-api-key only", amNobody, func(f *amFixture) []reqOpt { return []reqOpt{as(""), header("x-api-key", f.h.admin)} }},
	{"admin", amAdmin, func(f *amFixture) []reqOpt { return []reqOpt{as(f.h.admin)} }},
	{"member", amMember, func(f *amFixture) []reqOpt { return []reqOpt{as(f.member)} }},
	{"worker bound here", amWorkerBound, func(f *amFixture) []reqOpt { return []reqOpt{as(f.workerA)} }},
	{"worker of another environment", amWorkerOther, func(f *amFixture) []reqOpt { return []reqOpt{as(f.workerB)} }},
}

// amOutcome is what a route answers a credential.
type amOutcome int

const (
	amPass      amOutcome = iota // passes authentication and authorization
	amPublic                     // public route: 200, whoever calls
	amUnauth                     // 401 authentication_error
	amForbidden                  // 403 permission_error
)

// amExpect is the access rule of API.md §1 as a function of the route's Access and the
// credential. ok is false for an Access the matrix does not know.
func amExpect(access api.Access, kind amKind) (out amOutcome, ok bool) {
	if access == api.Public {
		return amPublic, true
	}
	if kind == amNobody {
		switch access {
		case api.AdminOnly, api.Members, api.WorkerEnvironment, api.WorkerSession:
			return amUnauth, true
		}
		return 0, false
	}
	switch access {
	case api.AdminOnly:
		// Environment delete and token management: admin only.
		if kind == amAdmin {
			return amPass, true
		}
		return amForbidden, true
	case api.Members:
		// Everything else but the worker's routes: admin and member, never a worker.
		if kind == amAdmin || kind == amMember {
			return amPass, true
		}
		return amForbidden, true
	case api.WorkerEnvironment, api.WorkerSession:
		// Also the worker bound to the path's environment (or the session's), no other.
		if kind == amWorkerOther {
			return amForbidden, true
		}
		return amPass, true
	}
	return 0, false
}

// amBodies are request bodies that make an admitted request succeed, by "METHOD pattern"
// (the pattern without the base path; "{environment_id}" in a body stands for environment
// A). A route not listed is sent without a body.
var amBodies = map[string]string{
	"POST /environments":                                      `{"name":"m","config":{"type":"self_hosted"}}`,
	"POST /environments/{environment_id}":                     `{"name":"renamed"}`,
	"POST /environments/{environment_id}/work/{work_id}":      `{"metadata":{"k":"v"}}`,
	"POST /sessions":                                          `{"agent":"agent_m","environment_id":"{environment_id}"}`,
	"POST /sessions/{session_id}":                             `{"title":"t"}`,
	"POST /sessions/{session_id}/events":                      `{"events":[{"type":"user.message","content":"hi"}]}`,
	"POST /tokens":                                            `{"name":"m","role":"member"}`,
	"POST /environments/{environment_id}/work/{work_id}/stop": `{"force":false}`,
	"POST /environments/{environment_id}/webhooks":            `{"url":"https://hooks.example/scale","description":"m"}`,
}

// amNon2xx are admitted requests that fail in the fixture for a reason that has nothing
// to do with authentication, with the answer they must give.
var amNon2xx = map[string]struct {
	status  int
	errType string
}{
	// The fixture's environment A has a session, so it cannot be deleted.
	"DELETE /environments/{environment_id}": {409, "conflict_error"},
}

// amFixture is the world a route is called in: self_hosted environments A and B, each
// with one session whose work item is starting (acknowledged), a member token victim for
// {token_id}, and the tokens of amCreds. Path parameters name A's resources.
type amFixture struct {
	h                               *harness
	envA, envB                      string
	sessA, sessB, itemA, itemB      string
	victim                          string
	webhook                         string
	member, workerA, workerB        string
	revokedAdmin, revokedWorker     string
	revokedAdminID, revokedWorkerID string
}

func amNewFixture(t *testing.T) *amFixture {
	t.Helper()
	h := newHarness(t)
	f := &amFixture{h: h, envA: h.env(true), envB: h.env(true)}
	f.sessA, f.sessB = h.session(f.envA), h.session(f.envB)
	f.itemA, f.itemB = amOnlyItem(t, h, f.envA), amOnlyItem(t, h, f.envB)
	wantStatus(t, h.do("POST", workPath(f.envA, f.itemA, "/ack"), ""), 200)
	wantStatus(t, h.do("POST", workPath(f.envB, f.itemB, "/ack"), ""), 200)
	f.victim, _ = amCreateToken(t, h, `{"name":"victim","role":"member"}`)
	r := h.do("POST", "/environments/"+f.envA+"/webhooks", `{"url":"https://hooks.example/a"}`)
	wantStatus(t, r, 201)
	f.webhook = r.str(t, "id")
	f.member = h.token(api.RoleMember, "")
	f.workerA = h.token(api.RoleWorker, f.envA)
	f.workerB = h.token(api.RoleWorker, f.envB)
	f.revokedAdminID, f.revokedAdmin = amCreateToken(t, h, `{"name":"gone","role":"admin"}`)
	f.revokedWorkerID, f.revokedWorker = amCreateToken(t, h, `{"name":"gone-worker","role":"worker","environment_id":"`+f.envA+`"}`)
	for _, id := range []string{f.revokedAdminID, f.revokedWorkerID} {
		wantStatus(t, h.do("POST", "/tokens/"+id+"/revoke", ""), 200)
	}
	return f
}

// amOnlyItem returns the ID of the one work item of env.
func amOnlyItem(t *testing.T, h *harness, env string) string {
	t.Helper()
	r := h.do("GET", "/environments/"+env+"/work", "")
	wantStatus(t, r, 200)
	var p struct{ Data []workJSON }
	r.decode(t, &p)
	if len(p.Data) != 1 {
		t.Fatalf("environment %s has %d work items, want 1", env, len(p.Data))
	}
	return p.Data[0].ID
}

// amCreateToken creates a token through the API and returns its ID and secret.
func amCreateToken(t *testing.T, h *harness, body string, opts ...reqOpt) (id, secret string) {
	t.Helper()
	r := h.do("POST", "/tokens", body, opts...)
	wantStatus(t, r, 201)
	return r.str(t, "id"), r.str(t, "secret")
}

var amParamRE = regexp.MustCompile(`\{([^}]*)\}`)

// path fills the pattern's parameters with the fixture's IDs; it fails the test for a
// parameter it does not know.
func (f *amFixture) path(t *testing.T, pattern string) string {
	t.Helper()
	return amParamRE.ReplaceAllStringFunc(pattern, func(p string) string {
		switch p {
		case "{environment_id}":
			return f.envA
		case "{session_id}":
			return f.sessA
		case "{work_id}":
			return f.itemA
		case "{token_id}":
			return f.victim
		case "{webhook_id}":
			return f.webhook
		}
		t.Fatalf("route pattern %s has path parameter %s, which the auth matrix cannot fill: teach amFixture.path", pattern, p)
		return ""
	})
}

// snapshot is everything a refused request could have changed, as the admin reads it
// (tokens without last_used_at, which authentication itself updates).
func (f *amFixture) snapshot(t *testing.T) string {
	t.Helper()
	h := f.h
	var b strings.Builder
	get := func(p string) []byte {
		r := h.do("GET", p, "")
		wantStatus(t, r, 200)
		return r.Body
	}
	for _, p := range []string{"/environments?include_archived=true&limit=100", "/sessions?include_archived=true&limit=100"} {
		b.Write(get(p))
	}
	for _, e := range []string{f.envA, f.envB} {
		b.Write(get("/environments/" + e + "/work?limit=100"))
		b.Write(get("/environments/" + e + "/work/stats"))
		b.Write(get("/environments/" + e + "/webhooks?limit=100"))
	}
	b.Write(get("/environments/" + f.envA + "/webhooks/" + f.webhook + "/deliveries?limit=100"))
	for _, s := range []string{f.sessA, f.sessB} {
		b.Write(get("/sessions/" + s + "/events?limit=100"))
	}
	var toks struct{ Data []map[string]any }
	if err := json.Unmarshal(get("/tokens?limit=100"), &toks); err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks.Data {
		delete(tk, "last_used_at")
	}
	tb, _ := json.Marshal(toks.Data)
	b.Write(tb)
	return b.String()
}

// amKey is a route's key in amBodies and amNon2xx.
func amKey(rt *api.Route) string {
	return rt.Method + " " + strings.TrimPrefix(rt.Pattern, api.BasePath)
}

// TestAuthMatrix calls every route of the route table with every credential of amCreds:
// 401 authentication_error for no, malformed, unknown or revoked tokens and for x-api-key
// alone; 403 permission_error for a worker of another environment on the worker routes,
// for any worker on member and admin routes, for a member on admin routes; for an admitted
// credential an answer that is neither (a 2xx, unless amNon2xx says why not); 200 for
// everyone on public routes. Refused requests change nothing; each admitted non-GET
// request runs in a fresh fixture so that it cannot depend on another's effect.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	routes := newHarness(t).srv.Routes()
	if len(routes) < 30 {
		t.Fatalf("route table has %d routes; API.md §2–§6 have 30", len(routes))
	}
	safe := strings.NewReplacer("{", "", "}", "", "/", "_")
	for _, rt := range routes {
		for _, c := range amCreds {
			if _, ok := amExpect(rt.Access, c.kind); !ok {
				t.Fatalf("route %s %s has Access %d, which the auth matrix does not know: add it to amExpect", rt.Method, rt.Pattern, rt.Access)
			}
		}
		t.Run(safe.Replace(rt.Method+" "+rt.Pattern), func(t *testing.T) {
			t.Parallel()
			amRoute(t, rt)
		})
	}
	t.Logf("auth matrix: %d routes × %d credentials = %d cases", len(routes), len(amCreds), len(routes)*len(amCreds))
}

func amRoute(t *testing.T, rt *api.Route) {
	f := amNewFixture(t)
	path := f.path(t, rt.Pattern)
	body := strings.ReplaceAll(amBodies[amKey(rt)], "{environment_id}", f.envA)
	before := f.snapshot(t)
	var admitted []amCred
	for _, c := range amCreds {
		want, _ := amExpect(rt.Access, c.kind)
		label := rt.Method + " " + rt.Pattern + " as " + c.name
		switch want {
		case amPublic:
			r := f.h.doRaw(rt.Method, path, body, c.opts(f)...)
			if r.Status != 200 {
				t.Errorf("%s: public route answered %d, want 200; body %.300s", label, r.Status, r.Body)
			}
		case amUnauth, amForbidden:
			r := f.h.doRaw(rt.Method, path, body, c.opts(f)...)
			status, typ := 401, "authentication_error"
			if want == amForbidden {
				status, typ = 403, "permission_error"
			}
			if r.Status != status || amErrType(r) != typ || bytes.Contains(r.Body, []byte(`"param"`)) {
				t.Errorf("%s: got %d %s, want %d %s without param; body %.300s", label, r.Status, amErrType(r), status, typ, r.Body)
			}
		case amPass:
			admitted = append(admitted, c)
		}
	}
	if after := f.snapshot(t); after != before {
		t.Errorf("%s %s: refused requests changed the world:\nbefore %s\nafter  %s", rt.Method, rt.Pattern, before, after)
	}
	for _, c := range admitted {
		g := f
		if rt.Method != "GET" {
			g = amNewFixture(t)
		}
		r := g.h.doRaw(rt.Method, g.path(t, rt.Pattern), strings.ReplaceAll(amBodies[amKey(rt)], "{environment_id}", g.envA), c.opts(g)...)
		label := rt.Method + " " + rt.Pattern + " as " + c.name
		if r.Status == 401 || r.Status == 403 || r.Status >= 500 ||
			amErrType(r) == "authentication_error" || amErrType(r) == "permission_error" {
			t.Errorf("%s: admitted credential got %d %s; body %.300s", label, r.Status, amErrType(r), r.Body)
			continue
		}
		if want, ok := amNon2xx[amKey(rt)]; ok {
			if r.Status != want.status || amErrType(r) != want.errType {
				t.Errorf("%s: got %d %s, want %d %s; body %.300s", label, r.Status, amErrType(r), want.status, want.errType, r.Body)
			}
		} else if r.Status < 200 || r.Status > 299 {
			t.Errorf("%s: admitted request answered %d, want a 2xx (the fixture should make it succeed; "+
				"give it a body in amBodies or a reason in amNon2xx); body %.300s", label, r.Status, r.Body)
		}
	}
}

// amErrType is error.type of an answer ("" when it is not an error envelope).
func amErrType(r *response) string {
	var env struct {
		Error struct{ Type string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &env)
	return env.Error.Type
}

// amSpyStore records the hashes that authentication looks tokens up by.
type amSpyStore struct {
	store.Store
	mu      sync.Mutex
	lookups []string
}

func (s *amSpyStore) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	s.mu.Lock()
	s.lookups = append(s.lookups, hash)
	s.mu.Unlock()
	return s.Store.TokenByHash(ctx, hash)
}

func (s *amSpyStore) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lookups
	s.lookups = nil
	return l
}

// amHarness is newHarness on a store of the test's choosing.
func amHarness(t *testing.T, st store.Store) *harness {
	t.Helper()
	clock := testserver.NewClock()
	srv := api.New(api.Config{Store: st, Now: clock.Now, Logger: discardLogger()})
	ts := httptest.NewServer(srv)
	h := &harness{t: t, srv: srv, store: st, clock: clock, url: ts.URL}
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	h.admin = h.token(api.RoleAdmin, "")
	return h
}

// TestAuthLooksUpTokensByHashOnly: a secret reaches the store only as its SHA-256
// (HashSecret), in exactly one indexed lookup per request, and a malformed one not at all,
// so that no comparison anywhere runs over the secret itself. (That the final comparison of
// the looked-up hash is constant-time — subtle.ConstantTimeCompare in auth.go — is by
// inspection: a timing test of it would measure noise, not the property.)
func TestAuthLooksUpTokensByHashOnly(t *testing.T) {
	t.Parallel()
	spy := &amSpyStore{Store: openTestStore(t)}
	h := amHarness(t, spy)
	env := h.env(true)
	workerID, worker := amCreateToken(t, h, `{"name":"w","role":"worker","environment_id":"`+env+`"}`)
	spy.take()
	hexRE := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, secret := range []string{h.admin, worker, api.NewSecret()} {
		h.do("GET", "/environments/"+env, "", as(secret))
		got := spy.take()
		if len(got) != 1 || got[0] != api.HashSecret(secret) || !hexRE.MatchString(got[0]) {
			t.Errorf("authenticating %.6s…: store lookups %q, want exactly one by HashSecret = %s", secret, got, api.HashSecret(secret))
		}
		for _, g := range got {
			if strings.Contains(g, secret[3:]) {
				t.Errorf("the store was asked for the secret itself")
			}
		}
	}
	for _, bad := range []string{"pt-short", "Basic " + h.admin, "pt-" + strings.Repeat("!", 43)} {
		h.do("GET", "/environments/"+env, "", header("Authorization", "Bearer "+bad))
		if got := spy.take(); len(got) != 0 {
			t.Errorf("malformed secret %q reached the store: %q", bad, got)
		}
	}
	// What the store holds for the token is the hash and nothing derived otherwise.
	tok, err := spy.Store.TokenByHash(context.Background(), api.HashSecret(worker))
	if err != nil || tok.ID != workerID || tok.Hash != api.HashSecret(worker) {
		t.Fatalf("TokenByHash(HashSecret(worker)) = %+v, %v", tok, err)
	}
}

// TestAuthSecretsNeverStored creates tokens every way the API allows (plain, with an
// Idempotency-Key and its replay, revoked, used) on a SQLite store, then scans every byte
// of the data directory, WAL included, before and after closing the store: no secret (nor
// its random part) is anywhere, while each secret's hash is (the scan's own control).
func TestAuthSecretsNeverStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	h := amHarness(t, st)
	env := h.env(true)
	secrets := []string{h.admin}
	for _, body := range []string{
		`{"name":"a","role":"admin"}`,
		`{"name":"m","role":"member"}`,
		`{"name":"w","role":"worker","environment_id":"` + env + `"}`,
	} {
		_, s := amCreateToken(t, h, body)
		secrets = append(secrets, s)
	}
	// With an Idempotency-Key the first answer, secret and all, is kept for replay.
	idem := `{"name":"idem","role":"member"}`
	first := h.do("POST", "/tokens", idem, header("Idempotency-Key", "tok-1"))
	wantStatus(t, first, 201)
	replay := h.do("POST", "/tokens", idem, header("Idempotency-Key", "tok-1"))
	if replay.Status != 201 || !bytes.Equal(replay.Body, first.Body) || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("token creation replay: %d %s (first %s)", replay.Status, replay.Body, first.Body)
	}
	secrets = append(secrets, first.str(t, "secret"))
	revokedID, revoked := amCreateToken(t, h, `{"name":"r","role":"member"}`)
	secrets = append(secrets, revoked)
	for _, s := range secrets {
		h.do("GET", "/environments/"+env, "", as(s)) // last_used_at is written
	}
	wantStatus(t, h.do("POST", "/tokens/"+revokedID+"/revoke", ""), 200)

	list := h.do("GET", "/tokens?limit=100", "")
	wantStatus(t, list, 200)
	for _, s := range secrets {
		if bytes.Contains(list.Body, []byte(s[3:])) {
			t.Errorf("GET /tokens shows a secret")
		}
		tok, err := st.TokenByHash(context.Background(), api.HashSecret(s))
		if err != nil {
			t.Fatalf("token of secret %.6s… not found by its hash: %v", s, err)
		}
		if strings.Contains(tok.ID+tok.Name+tok.Role+tok.EnvironmentID+tok.Hash, s[3:]) {
			t.Errorf("the stored token %s holds its secret", tok.ID)
		}
	}
	scan := func(when string) {
		var all []byte
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			all = append(all, b...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(all, []byte(s[3:])) {
				t.Errorf("%s: the data directory holds the secret of a token (%.6s…)", when, s)
			}
			if !bytes.Contains(all, []byte(api.HashSecret(s))) {
				t.Errorf("%s: the data directory does not hold the hash of %.6s…: the scan proves nothing", when, s)
			}
		}
	}
	scan("store open")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	scan("store closed")
}
