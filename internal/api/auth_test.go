package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/api"
)

// tcRoleFixture is the world the role table runs in, fresh for every request:
//   - A, a self_hosted environment the worker token is bound to, with session sessA
//     whose work item itemA is starting (acknowledged);
//   - B, another self_hosted environment with sessB and itemB, likewise;
//   - C, a self_hosted environment without sessions (deletable);
//   - tok, a member token to revoke.
type tcRoleFixture struct {
	h                          *harness
	A, B, C                    string
	sessA, sessB, itemA, itemB string
	tok                        string
	secrets                    map[string]string // role → secret ("none" → "")
}

func tcNewRoleFixture(t *testing.T) *tcRoleFixture {
	t.Helper()
	h := newHarness(t)
	f := &tcRoleFixture{h: h, A: h.env(true), B: h.env(true), C: h.env(true)}
	f.sessA, f.sessB = h.session(f.A), h.session(f.B)
	f.itemA = tcOnlyItem(t, h, f.A, f.sessA).ID
	f.itemB = tcOnlyItem(t, h, f.B, f.sessB).ID
	wantStatus(t, h.do("POST", workPath(f.A, f.itemA, "/ack"), ""), 200)
	wantStatus(t, h.do("POST", workPath(f.B, f.itemB, "/ack"), ""), 200)
	f.tok = tcCreateToken(t, h, `{"name":"victim","role":"member"}`)["id"].(string)
	f.secrets = map[string]string{
		"admin":  h.admin,
		"member": h.token(api.RoleMember, ""),
		"worker": h.token(api.RoleWorker, f.A),
		"none":   "",
	}
	return f
}

// expand replaces {A} {B} {C} {sessA} {sessB} {itemA} {itemB} {tok} in s.
func (f *tcRoleFixture) expand(s string) string {
	return strings.NewReplacer("{A}", f.A, "{B}", f.B, "{C}", f.C, "{sessA}", f.sessA, "{sessB}", f.sessB,
		"{itemA}", f.itemA, "{itemB}", f.itemB, "{tok}", f.tok).Replace(s)
}

// TestRoles runs every route as admin, member, worker (bound to A) and without a token.
// Admin may do everything; member everything except environment delete and the token
// routes; worker only GET /environments/{A}, A's work endpoints, and GET /sessions/{id},
// GET/POST /sessions/{id}/events (only the event types a worker may post) and the event
// stream of A's sessions. Anything else is 403 permission_error
// (401 without a token). Each request runs in a fresh world so that none depends on
// another's effect.
func TestRoles(t *testing.T) {
	t.Parallel()
	const forbidden = 403
	rows := []struct {
		method, path, body    string
		admin, member, worker int
		workerNote            string
	}{
		// Environments.
		{"POST", "/environments", `{"name":"n"}`, 201, 201, forbidden, ""},
		{"GET", "/environments", "", 200, 200, forbidden, ""},
		{"GET", "/environments?include_archived=true", "", 200, 200, forbidden, ""},
		{"GET", "/environments/{A}", "", 200, 200, 200, ""},
		{"GET", "/environments/{B}", "", 200, 200, forbidden, "another environment"},
		{"POST", "/environments/{A}", `{"name":"r"}`, 200, 200, forbidden, "update own"},
		{"POST", "/environments/{A}/archive", "", 200, 200, forbidden, "archive own"},
		{"DELETE", "/environments/{C}", "", 200, forbidden, forbidden, ""},
		{"DELETE", "/environments/{A}", "", 409, forbidden, forbidden, "delete own"},
		// Work of the worker's environment.
		{"GET", "/environments/{A}/work", "", 200, 200, 200, ""},
		{"GET", "/environments/{A}/work?state=starting", "", 200, 200, 200, ""},
		{"GET", "/environments/{A}/work/poll", "", 200, 200, 200, ""},
		{"GET", "/environments/{A}/work/stats", "", 200, 200, 200, ""},
		{"GET", "/environments/{A}/work/{itemA}", "", 200, 200, 200, ""},
		{"POST", "/environments/{A}/work/{itemA}", `{"metadata":{"k":"v"}}`, 200, 200, 200, ""},
		{"POST", "/environments/{A}/work/{itemA}/ack", "{}\n", 200, 200, 200, ""},
		{"POST", "/environments/{A}/work/{itemA}/heartbeat", "", 200, 200, 200, ""},
		{"POST", "/environments/{A}/work/{itemA}/stop", "", 200, 200, 200, ""},
		// A's path with B's item: a work item of another environment is 404 for everyone.
		{"GET", "/environments/{A}/work/{itemB}", "", 404, 404, 404, ""},
		{"POST", "/environments/{A}/work/{itemB}/ack", "", 404, 404, 404, ""},
		// Work of another environment.
		{"GET", "/environments/{B}/work", "", 200, 200, forbidden, "another environment's work"},
		{"GET", "/environments/{B}/work/poll", "", 200, 200, forbidden, "another environment's work"},
		{"GET", "/environments/{B}/work/stats", "", 200, 200, forbidden, "another environment's work"},
		{"GET", "/environments/{B}/work/{itemB}", "", 200, 200, forbidden, "another environment's work"},
		{"POST", "/environments/{B}/work/{itemB}", `{"metadata":{"k":"v"}}`, 200, 200, forbidden, "another environment's work"},
		{"POST", "/environments/{B}/work/{itemB}/ack", "", 200, 200, forbidden, "another environment's work"},
		{"POST", "/environments/{B}/work/{itemB}/heartbeat", "", 200, 200, forbidden, "another environment's work"},
		{"POST", "/environments/{B}/work/{itemB}/stop", "", 200, 200, forbidden, "another environment's work"},
		// Sessions.
		{"POST", "/sessions", `{"agent":"a","environment_id":"{A}"}`, 201, 201, forbidden, "create in own"},
		{"GET", "/sessions", "", 200, 200, forbidden, ""},
		{"GET", "/sessions?environment_id={A}", "", 200, 200, forbidden, "list own"},
		{"GET", "/sessions/{sessA}", "", 200, 200, 200, ""},
		{"GET", "/sessions/{sessB}", "", 200, 200, forbidden, "another environment's session"},
		{"POST", "/sessions/{sessA}", `{"title":"t"}`, 200, 200, forbidden, "update own"},
		{"DELETE", "/sessions/{sessA}", "", 200, 200, forbidden, "delete own"},
		{"POST", "/sessions/{sessA}/archive", "", 200, 200, forbidden, "archive own"},
		{"POST", "/sessions/{sessA}/cancel", "", 202, 202, forbidden, "cancel own"},
		{"GET", "/sessions/{sessA}/events", "", 200, 200, 200, ""},
		{"POST", "/sessions/{sessA}/events", `{"events":[{"type":"user.message","content":"hi"}]}`, 200, 200, 200, ""},
		{"POST", "/sessions/{sessA}/events", `{"events":[{"type":"user.tool_result","tool_use_id":"evt_1","content":[]}]}`, 200, 200, 200, ""},
		{"POST", "/sessions/{sessA}/events", `{"events":[{"type":"agent.tool_use","name":"bash","input":{}}]}`, 200, 200, forbidden, "the agent's side"},
		{"POST", "/sessions/{sessA}/events", `{"events":[{"type":"user.interrupt"}]}`, 200, 200, forbidden, "an interrupt"},
		{"GET", "/sessions/{sessA}/events/stream", "", 200, 200, 200, ""},
		{"GET", "/sessions/{sessB}/events/stream", "", 200, 200, forbidden, "another environment's stream"},
		{"GET", "/sessions/{sessB}/events", "", 200, 200, forbidden, "another environment's events"},
		{"POST", "/sessions/{sessB}/events", `{"events":[{"type":"user.message"}]}`, 200, 200, forbidden, "another environment's events"},
		// Tokens.
		{"POST", "/tokens", `{"name":"t","role":"member"}`, 201, forbidden, forbidden, ""},
		{"POST", "/tokens", `{"name":"t","role":"worker","environment_id":"{A}"}`, 201, forbidden, forbidden, ""},
		{"GET", "/tokens", "", 200, forbidden, forbidden, ""},
		{"POST", "/tokens/{tok}/revoke", "", 200, forbidden, forbidden, ""},
	}
	// Subtest names become t.TempDir() names, and the SQLite store puts its directory into
	// a file: URI unescaped, so a name with ? or # would make harnesses share a database:
	// names carry the row number and no such characters.
	safe := strings.NewReplacer("?", "_", "#", "_", "%", "_", "&", "_", "=", "_", "{", "", "}", "")
	for i, row := range rows {
		for _, role := range []string{"admin", "member", "worker", "none"} {
			want := map[string]int{"admin": row.admin, "member": row.member, "worker": row.worker, "none": 401}[role]
			name := role + " " + row.method + " " + row.path
			t.Run(fmt.Sprintf("%02d %s", i, safe.Replace(name)), func(t *testing.T) {
				t.Parallel()
				f := tcNewRoleFixture(t)
				path, body := f.expand(row.path), f.expand(row.body)
				r := f.h.do(row.method, path, body, as(f.secrets[role]))
				switch want {
				case forbidden:
					tcWantErr(t, name, r, 403, "permission_error", "")
				case 401:
					tcWantErr(t, name, r, 401, "authentication_error", "")
				case 404:
					tcWantErr(t, name, r, 404, "not_found_error")
				case 409:
					tcWantErr(t, name, r, 409, "conflict_error")
				default:
					tcWantStatus(t, name+" "+row.workerNote, r, want)
				}
				if want >= 400 && want != 404 && want != 409 {
					tcRoleNoEffect(t, f, row.method, path)
				}
			})
		}
	}
}

// tcRoleNoEffect checks that a refused request changed nothing it could have changed.
func tcRoleNoEffect(t *testing.T, f *tcRoleFixture, method, path string) {
	t.Helper()
	h := f.h
	if method == "GET" {
		return
	}
	if n := len(tcList(t, h, "/environments?include_archived=true").Data); n != 3 {
		t.Errorf("refused %s %s: %d environments, want 3", method, path, n)
	}
	for _, e := range []string{f.A, f.B, f.C} {
		o := h.do("GET", "/environments/"+e, "").obj(t)
		if o["archived_at"] != nil || o["name"] != "test" {
			t.Errorf("refused %s %s changed environment %s: %v", method, path, e, o)
		}
	}
	p := tcList(t, h, "/sessions?include_archived=true")
	if n := len(p.Data); n != 2 {
		t.Errorf("refused %s %s: %d sessions, want 2", method, path, n)
	}
	for _, d := range p.Data {
		if d["archived_at"] != nil || d["title"] != "" {
			t.Errorf("refused %s %s changed session %v", method, path, d)
		}
	}
	// Each session holds one event: the session.status_running of its item's ack.
	for _, s := range []string{f.sessA, f.sessB} {
		if n := len(tcList(t, h, "/sessions/"+s+"/events").Data); n != 1 {
			t.Errorf("refused %s %s: %d events, want the 1 of the fixture", method, path, n)
		}
	}
	for env, item := range map[string]string{f.A: f.itemA, f.B: f.itemB} {
		w := h.work(env, item)
		if w.State != "starting" || len(w.Metadata) != 0 || w.LatestHeartbeatAt != nil {
			t.Errorf("refused %s %s changed item %s: %+v", method, path, item, w)
		}
	}
	toks := tcList(t, h, "/tokens").Data
	if len(toks) != 4 {
		t.Errorf("refused %s %s: %d tokens, want 4", method, path, len(toks))
	}
	for _, d := range toks {
		if d["revoked_at"] != nil {
			t.Errorf("refused %s %s revoked %v", method, path, d["id"])
		}
	}
}

// TestRolesWorkerUnknownSession: a worker asking for a session that does not exist gets
// 404, and for a malformed ID 404; its binding is checked against the session's
// environment, not the path.
func TestRolesWorkerUnknownSession(t *testing.T) {
	t.Parallel()
	f := tcNewRoleFixture(t)
	w := f.secrets["worker"]
	for _, p := range []string{"/sessions/sess_00000000000000000000000000000000", "/sessions/sess_bad",
		"/sessions/sess_00000000000000000000000000000000/events"} {
		tcWantErr(t, "worker GET "+p, f.h.do("GET", p, "", as(w)), 404, "not_found_error")
	}
	// A session created in A later is visible to the worker; one in B is not.
	sa, sb := f.h.session(f.A), f.h.session(f.B)
	wantStatus(t, f.h.do("GET", "/sessions/"+sa, "", as(w)), 200)
	tcWantErr(t, "worker GET B session", f.h.do("GET", "/sessions/"+sb, "", as(w)), 403, "permission_error", "")
	// A worker bound to a cloud environment may read it but its work endpoints are 400.
	cloud := f.h.env(false)
	cw := f.h.token(api.RoleWorker, cloud)
	wantStatus(t, f.h.do("GET", "/environments/"+cloud, "", as(cw)), 200)
	tcWantErr(t, "cloud worker poll", f.h.do("GET", "/environments/"+cloud+"/work/poll", "", as(cw)), 400, "invalid_request_error")
	tcWantErr(t, "cloud worker on A", f.h.do("GET", "/environments/"+f.A+"/work/poll", "", as(cw)), 403, "permission_error", "")
}
