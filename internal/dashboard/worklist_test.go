package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// calls counts the requests a handler or store gets, by kind.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) add(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind]++
}

// take returns the counts so far and starts again from zero.
func (c *calls) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = nil
	if n == nil {
		n = map[string]int{}
	}
	return n
}

// apiKind names an API request by its method and path, with IDs replaced by their
// prefixes: GET /environments/env/work.
func apiKind(r *http.Request) string {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/cloud"), "/")
	for i, p := range parts {
		if prefix, _, ok := strings.Cut(p, "_"); ok && len(p) == len(prefix)+33 {
			parts[i] = prefix
		}
	}
	return r.Method + " " + strings.Join(parts, "/")
}

// countingStore counts the reads of work items.
type countingStore struct {
	store.Store
	c *calls
}

func (s countingStore) ListWork(ctx context.Context, env string, p store.Page, states []work.State) ([]work.Item, bool, error) {
	s.c.add("ListWork")
	return s.Store.ListWork(ctx, env, p, states)
}

func (s countingStore) GetWork(ctx context.Context, env, id string) (work.Item, error) {
	s.c.add("GetWork")
	return s.Store.GetWork(ctx, env, id)
}

// countingFixture is a fixture whose dashboard's API requests and store reads are counted.
func countingFixture(t *testing.T) (*fixture, *calls, *calls) {
	apiCalls, storeCalls := &calls{}, &calls{}
	f := newFixture(t, fixtureOpt{
		api: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				apiCalls.add(apiKind(r))
				next.ServeHTTP(w, r)
			})
		},
		store: func(s store.Store) store.Store { return countingStore{s, storeCalls} },
	})
	return f, apiCalls, storeCalls
}

// newest returns the newest work item of env.
func (f *fixture) newest(env string) string {
	f.t.Helper()
	page := f.apiDo(f.admin, "GET", "/environments/"+env+"/work?limit=1&before_id=work_"+strings.Repeat("f", 32), "", 200)
	data := page["data"].([]any)
	if len(data) != 1 {
		f.t.Fatalf("no work item in %s", env)
	}
	return data[0].(map[string]any)["id"].(string)
}

// titled creates a session in env with body's fields (JSON members, without braces) and
// returns its ID and its work item's.
func (f *fixture) titled(env, fields string) (sess, item string) {
	f.t.Helper()
	body := `{"agent":"agent_test","environment_id":"` + env + `"`
	if fields != "" {
		body += "," + fields
	}
	sess = f.apiDo(f.admin, "POST", "/sessions", body+"}", 201)["id"].(string)
	return sess, f.newest(env)
}

// run has the worker take env's oldest deliverable item, which must be item, as berth
// worker does: poll, ack, heartbeat and, when exitCode is not empty, record it and stop.
func (f *fixture) run(env, item, worker, exitCode string) {
	f.t.Helper()
	w := f.apiDo(f.admin, "GET", "/environments/"+env+"/work/poll", "", 200, "Worker-ID", worker)
	if w["id"] != item {
		f.t.Fatalf("poll delivered %v, want %s", w["id"], item)
	}
	f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+item+"/ack", "", 200, "Worker-ID", worker)
	f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+item+"/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", "", 200)
	if exitCode != "" {
		f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+item, `{"metadata":{"exit_code":"`+exitCode+`"}}`, 200)
		f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+item+"/stop", `{"force":true}`, 200)
	}
}

// workView gets the work view with query q as the admin and fails unless it is 200.
func (f *fixture) workView(q string) map[string]any {
	f.t.Helper()
	r := f.do("GET", "/ui/view?view=work&"+q, "", "Cookie", cookie(f.admin))
	if r.status != 200 {
		f.t.Fatalf("work view %s: %d %s", q, r.status, r.body)
	}
	return r.json(f.t)
}

// rowsOf returns the view's rows by item ID (nil when it has none).
func rowsOf(v map[string]any) map[string]any {
	rows, _ := v["rows"].(map[string]any)
	return rows
}

// rowOf returns the view's row of one item (nil when it has none).
func rowOf(v map[string]any, id string) map[string]any {
	r, _ := rowsOf(v)[id].(map[string]any)
	return r
}

// listed returns the IDs of the view's work page, in the API's (ascending) order.
func listed(v map[string]any) []string {
	var ids []string
	for _, it := range v["work"].(map[string]any)["data"].([]any) {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	return ids
}

func TestWorkViewShowsOutcomeWorkerAndSessionTitle(t *testing.T) {
	t.Parallel()
	f, apiCalls, storeCalls := countingFixture(t)
	env := f.environment("byoc")

	okSess, ok := f.titled(env, `"title":"build ok"`)
	f.run(env, ok, "w-ok", "0")
	_, failed := f.titled(env, `"title":"build broken"`)
	f.run(env, failed, "w-bad", "3")
	_, crashed := f.titled(env, `"title":"handler error"`)
	f.run(env, crashed, "w-bad", "-1")
	_, running := f.titled(env, `"title":"build running"`)
	f.run(env, running, "w-run", "")
	_, delivered := f.titled(env, `"title":"just delivered"`)
	if w := f.apiDo(f.admin, "GET", "/environments/"+env+"/work/poll", "", 200, "Worker-ID", "w-slow"); w["id"] != delivered {
		t.Fatalf("poll delivered %v, want %s", w["id"], delivered)
	}
	_, untitled := f.titled(env, "")
	goneSess, gone := f.titled(env, `"title":"deleted later"`)
	f.apiDo(f.admin, "DELETE", "/sessions/"+goneSess, "", 200)
	// A second item of the first session: one lookup of its title serves both.
	f.apiDo(f.admin, "POST", "/sessions/"+okSess+"/events", `{"events":[{"type":"user.message","content":[{"type":"text","text":"again"}]}]}`, 200)
	again := f.newest(env)

	apiCalls.take()
	storeCalls.take()
	v := f.workView("env=" + env)
	rows := rowsOf(v)
	str := func(s string) any { return s }
	for _, tc := range []struct {
		name, item string
		outcome    string
		exitCode   any
		worker     string
		title      any
	}{
		{"succeeded", ok, "succeeded", str("0"), "w-ok", str("build ok")},
		{"failed", failed, "failed", str("3"), "w-bad", str("build broken")},
		{"handler error", crashed, "failed", str("-1"), "w-bad", str("handler error")},
		{"running", running, "none", nil, "w-run", str("build running")},
		{"delivered, not acknowledged", delivered, "none", nil, "w-slow", str("just delivered")},
		{"queued, untitled", untitled, "none", nil, "", str("")},
		{"deleted session", gone, "none", nil, "", nil},
		{"second item of a session", again, "none", nil, "", str("build ok")},
	} {
		if r := rowOf(v, tc.item); r == nil || r["outcome"] != tc.outcome || r["exit_code"] != tc.exitCode || r["worker"] != tc.worker ||
			r["session_title"] != tc.title {
			t.Errorf("%s: row %v, want outcome %s, exit_code %v, worker %q, session_title %v",
				tc.name, rows[tc.item], tc.outcome, tc.exitCode, tc.worker, tc.title)
		}
	}
	if len(rows) != 8 || len(listed(v)) != 8 {
		t.Errorf("%d rows for %d items, want 8", len(rows), len(listed(v)))
	}
	if _, ok := v["scanned"]; ok {
		t.Errorf("an unfiltered list says how much it scanned: %v", v["scanned"])
	}
	// The view's requests: the environment, its stats, one page of the list, one lookup
	// per distinct session (7 for 8 items); one store read for the workers of all rows.
	wantAPI := map[string]int{
		"GET /environments/env": 1, "GET /environments/env/work/stats": 1, "GET /environments/env/work": 1,
		"GET /sessions/sess": 7,
	}
	if got := apiCalls.take(); fmt.Sprint(got) != fmt.Sprint(wantAPI) {
		t.Errorf("API requests of one view: %v, want %v", got, wantAPI)
	}
	if got := storeCalls.take(); fmt.Sprint(got) != fmt.Sprint(map[string]int{"ListWork": 1}) {
		t.Errorf("store reads of one view: %v, want one ListWork", got)
	}

	// The rows follow the state filter and the page: a later page has its own rows.
	v = f.workView("env=" + env + "&state=stopped")
	if ids, rows := listed(v), rowsOf(v); len(ids) != 4 || len(rows) != 4 || rows[gone] == nil {
		t.Errorf("stopped items: %v, rows %v", ids, rows)
	}
	v = f.workView("env=" + env + "&before=" + running)
	if ids, rows := listed(v), rowsOf(v); len(ids) != 3 || len(rows) != 3 ||
		rowOf(v, ok)["worker"] != "w-ok" {
		t.Errorf("items before the running one: %v, rows %v", ids, rows)
	}
	// An empty page has no rows, and costs no lookups.
	apiCalls.take()
	storeCalls.take()
	if v := f.workView("env=" + env + "&after=" + again); len(listed(v)) != 0 || len(rowsOf(v)) != 0 {
		t.Errorf("page after the newest item: %v", v)
	}
	if got := apiCalls.take(); got["GET /sessions/sess"] != 0 {
		t.Errorf("an empty page looked up sessions: %v", got)
	}
	if got := storeCalls.take(); len(got) != 0 {
		t.Errorf("an empty page read the store: %v", got)
	}
}

func TestWorkViewFiltersByOutcome(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	// 30 items, oldest first: 0 to 29. Items 10, 11 and 12 exited 0, item 5 has an empty
	// exit code, the others exited 2 (26 failed).
	items := make([]string, 30)
	for i := range items {
		meta := `"metadata":{"exit_code":"2"}`
		switch i {
		case 10, 11, 12:
			meta = `"metadata":{"exit_code":"0"}`
		case 5:
			meta = `"metadata":{"exit_code":""}`
		}
		_, items[i] = f.titled(env, meta)
	}
	// these are the IDs of items from..to (ascending), without those of skip.
	these := func(from, to int, skip ...int) []string {
		var out []string
		for i := from; i <= to; i++ {
			if !slices.Contains(skip, i) {
				out = append(out, items[i])
			}
		}
		return out
	}
	check := func(q, outcome string, want []string, hasMore bool, first, last string) {
		t.Helper()
		v := f.workView("env=" + env + "&outcome=" + outcome + q)
		p := v["work"].(map[string]any)
		if got := listed(v); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s%s: items %v, want %v", outcome, q, got, want)
		}
		if p["has_more"] != hasMore || p["first_id"] != any(first) || p["last_id"] != any(last) {
			t.Errorf("%s%s: has_more %v first_id %v last_id %v, want %v %s %s",
				outcome, q, p["has_more"], p["first_id"], p["last_id"], hasMore, first, last)
		}
		rows := rowsOf(v)
		for _, id := range listed(v) {
			if r := rowOf(v, id); r["outcome"] != outcome {
				t.Errorf("%s%s: %s has outcome %v", outcome, q, id, r["outcome"])
			}
		}
		if len(rows) != len(want) {
			t.Errorf("%s%s: %d rows for %d items", outcome, q, len(rows), len(want))
		}
	}

	// Failed, newest page: the 20 newest of the 26, 29 down to 7, and there are more.
	// The page covers what was read: 29 down to 7, succeeded ones included.
	check("", "failed", these(7, 29, 10, 11, 12), true, items[7], items[29])
	// Older: the 6 left, and nothing more.
	check("&before="+items[7], "failed", these(0, 6, 5), false, items[0], items[6])
	// Newer from the oldest: a full page, 1 to 24, and more after it.
	check("&after="+items[0], "failed", these(1, 24, 5, 10, 11, 12), true, items[1], items[24])
	// Succeeded, and no exit code: everything was read.
	check("", "succeeded", these(10, 12), false, items[0], items[29])
	check("", "none", these(5, 5), false, items[0], items[29])
	if v := f.workView("env=" + env + "&outcome=succeeded"); v["scanned"] != 30.0 ||
		rowOf(v, items[11])["exit_code"] != "0" {
		t.Errorf("succeeded: scanned %v, rows %v", v["scanned"], v["rows"])
	}

	// With the state filter: stop two failed items and one that succeeded.
	for _, i := range []int{3, 4, 11} {
		f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+items[i]+"/stop", `{"force":true}`, 200)
	}
	check("&state=stopped", "failed", these(3, 4), false, items[3], items[11])
	check("&state=queued", "failed", these(7, 29, 10, 11, 12), true, items[7], items[29])
	check("&state=queued,stopped", "succeeded", these(10, 12), false, items[0], items[29])

	// The API's error for a bad state filter is the list's.
	v := f.workView("env=" + env + "&outcome=failed&state=nope")
	if e, _ := v["work"].(map[string]any)["error"].(map[string]any); e == nil || e["status"] != 400.0 {
		t.Errorf("bad state filter: %v", v["work"])
	}
	for _, q := range []string{"outcome=nope", "outcome=FAILED"} {
		if r := f.do("GET", "/ui/view?view=work&env="+env+"&"+q, "", "Cookie", cookie(f.admin)); r.status != 400 ||
			!strings.Contains(r.errorMessage(t), "outcome must be") {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
	if r := f.do("GET", "/ui/view?view=sessions&env="+env+"&outcome=failed", "", "Cookie", cookie(f.admin)); r.status != 400 {
		t.Errorf("outcome on the sessions view: %d %s", r.status, r.body)
	}
}

// A sparse outcome reads a bounded number of items per view: the page stops short, with a
// cursor that goes on from where it stopped.
func TestWorkViewOutcomeScanIsBounded(t *testing.T) {
	t.Parallel()
	f, apiCalls, _ := countingFixture(t)
	env := f.environment("byoc")
	ctx := context.Background()
	now := time.Now()
	agent := json.RawMessage(`{"id":"agent_test","type":"agent","version":null}`)
	plant := func(meta work.Metadata) string {
		s := store.Session{ID: id.New(id.Session), EnvironmentID: env, Agent: agent, Metadata: meta, CreatedAt: now, UpdatedAt: now}
		it := work.New(id.New(id.Work), env, s.ID, meta, now)
		if _, err := f.store.CreateSession(ctx, s, nil, &it, nil); err != nil {
			t.Fatalf("create session: %v", err)
		}
		return it.ID
	}
	// Three failed items, then 520 without an exit code.
	var failed []string
	for range 3 {
		failed = append(failed, plant(work.Metadata{"exit_code": "1"}))
	}
	var none []string
	for range 520 {
		none = append(none, plant(work.Metadata{}))
	}

	apiCalls.take()
	v := f.workView("env=" + env + "&outcome=failed")
	p := v["work"].(map[string]any)
	// Five pages of 100 read, newest first: the 500 newest, none of them failed.
	oldestRead := none[20]
	if len(listed(v)) != 0 || p["has_more"] != true || p["first_id"] != oldestRead || p["last_id"] != none[519] ||
		v["scanned"] != 500.0 {
		t.Errorf("first page: %v, scanned %v", p, v["scanned"])
	}
	if got := apiCalls.take()["GET /environments/env/work"]; got != 5 {
		t.Errorf("the first page made %d list requests, want 5", got)
	}
	v = f.workView("env=" + env + "&outcome=failed&before=" + oldestRead)
	p = v["work"].(map[string]any)
	if fmt.Sprint(listed(v)) != fmt.Sprint(failed) || p["has_more"] != false || p["first_id"] != failed[0] ||
		p["last_id"] != none[19] || v["scanned"] != 23.0 {
		t.Errorf("older page: %v, scanned %v", p, v["scanned"])
	}
	if got := apiCalls.take()["GET /environments/env/work"]; got != 1 {
		t.Errorf("the older page made %d list requests, want 1", got)
	}
	// Its rows have their workers from one store read of the 23 items read.
	if r := rowOf(v, failed[1]); r["outcome"] != "failed" || r["exit_code"] != "1" {
		t.Errorf("row: %v", r)
	}
}
