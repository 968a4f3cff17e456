package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
)

// The Anthropic dialect (API.md §8) over plain HTTP: what differs from the Cloud dialect,
// each difference checked in both, on the same items (one store, one route table).

// anthropic sends method path under the Anthropic base path (/v1) with body.
func (h *harness) anthropic(method, path, body string, opts ...reqOpt) *response {
	h.t.Helper()
	return h.doRaw(method, api.AnthropicBasePath+path, body, opts...)
}

// Auth: Bearer or x-api-key (Authorization first); anthropic-version, anthropic-beta and
// x-stainless-* headers and beta=true are ignored; the Cloud dialect still refuses
// x-api-key.
func TestAnthropicAuthAndIgnoredInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	worker := h.token(api.RoleWorker, env)
	h.session(env)
	stats := "/environments/" + env + "/work/stats"

	wantStatus(t, h.anthropic("GET", stats, "", as(""), header("x-api-key", worker)), 200)
	wantStatus(t, h.anthropic("GET", stats+"?beta=true", "", as(worker),
		header("anthropic-version", "2023-06-01"), header("anthropic-beta", "managed-agents-2026-04-01,other-2026-01-01"),
		header("x-stainless-helper", "environments-work-poller"), header("x-stainless-retry-count", "0")), 200)
	wantError(t, h.anthropic("GET", stats, "", as("")), 401, "authentication_error", "")
	wantError(t, h.anthropic("GET", stats, "", as(""), header("x-api-key", api.NewSecret())), 401, "authentication_error", "")
	wantError(t, h.anthropic("GET", stats, "", as(api.NewSecret()), header("x-api-key", worker)), 401, "authentication_error", "")
	wantError(t, h.do("GET", stats, "", as(""), header("x-api-key", worker)), 401, "authentication_error", "")

	// Creating stays in the Cloud dialect: no such route at the root.
	for _, p := range []string{"/environments", "/sessions", "/tokens", "/environments/" + env} {
		wantError(t, h.anthropic("POST", p, `{}`), 404, "not_found_error", "")
	}
}

// The worker id: Anthropic-Worker-ID, else Worker-ID; the ack must name the worker the
// item was delivered to, under either header.
func TestAnthropicWorkerID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	poll := "/environments/" + env + "/work/poll"
	for _, c := range []struct{ header, other string }{{"Anthropic-Worker-ID", "Worker-ID"}, {"Worker-ID", ""}} {
		h.session(env)
		r := h.anthropic("GET", poll, "", header(c.header, "w-"+c.header))
		wantStatus(t, r, 200)
		wid := r.str(t, "id")
		if c.other != "" {
			// Anthropic-Worker-ID wins over Worker-ID.
			r := h.anthropic("POST", workPath(env, wid, "/ack"), "", header(c.header, "w-"+c.header), header(c.other, "someone-else"))
			wantStatus(t, r, 200)
		} else {
			wantError(t, h.anthropic("POST", workPath(env, wid, "/ack"), "", header(c.header, "someone-else")), 409, "invalid_request_error", "")
			wantStatus(t, h.anthropic("POST", workPath(env, wid, "/ack"), "", header(c.header, "w-"+c.header)), 200)
		}
		if it, _ := h.store.GetWork(t.Context(), env, wid); it.AckedBy != "w-"+c.header {
			t.Errorf("%s: acknowledged by %q", c.header, it.AckedBy)
		}
	}
	wantError(t, h.anthropic("GET", poll, "", header("Anthropic-Worker-ID", strings.Repeat("w", 256))), 400, "invalid_request_error", "Anthropic-Worker-ID")
}

// Work objects: "secret": null after metadata in the Anthropic dialect, no secret key in the
// Cloud one; everything else byte for byte the same.
func TestAnthropicWorkObjects(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	it := h.itemIn(env, "active")
	path := workPath(env, it.ID, "")
	cloud := h.do("GET", path, "")
	anth := h.anthropic("GET", path, "")
	wantStatus(t, anth, 200)
	want := strings.TrimSuffix(string(cloud.Body), "}") + `,"secret":null}`
	if string(anth.Body) != want || strings.Contains(string(cloud.Body), "secret") {
		t.Errorf("Anthropic dialect %s\nCloud dialect %s", anth.Body, cloud.Body)
	}
	list := h.anthropic("GET", "/environments/"+env+"/work", "")
	var page struct {
		Data     []map[string]json.RawMessage `json:"data"`
		NextPage *string                      `json:"next_page"`
	}
	list.decode(t, &page)
	if len(page.Data) != 1 || string(page.Data[0]["secret"]) != "null" || page.NextPage != nil {
		t.Errorf("list %s", list.Body)
	}
}

// Heartbeat: on stopping and stopped items the Anthropic dialect reports the item, with
// lease_extended false, whatever the expectation, and changes nothing; the Cloud dialect
// extends a stopping item's lease and refuses a stopped one. A 412 carries error_code in
// the Anthropic dialect only; every 409 there says x-should-retry: false.
func TestAnthropicHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	it := h.itemIn(env, "stopping")
	beat := func(r *response) map[string]any {
		t.Helper()
		wantStatus(t, r, 200)
		return r.obj(t)
	}
	hb := workPath(env, it.ID, "/heartbeat")
	for _, q := range []string{"", "?expected_last_heartbeat=NO_HEARTBEAT", "?expected_last_heartbeat=2020-01-01T00:00:00Z&desired_ttl_seconds=600"} {
		got := beat(h.anthropic("POST", hb+q, ""))
		if got["state"] != "stopping" || got["lease_extended"] != false || got["last_heartbeat"] != *it.LatestHeartbeatAt ||
			got["ttl_seconds"] != 60.0 || got["type"] != "work_heartbeat" {
			t.Errorf("heartbeat%s on a stopping item: %v", q, got)
		}
	}
	if after := h.work(env, it.ID); *after.LatestHeartbeatAt != *it.LatestHeartbeatAt {
		t.Errorf("the report changed the item: %+v", after)
	}
	h.clock.Advance(1e9)
	cloud := beat(h.do("POST", hb, ""))
	if cloud["state"] != "stopping" || cloud["lease_extended"] != true || cloud["last_heartbeat"] == *it.LatestHeartbeatAt {
		t.Errorf("Cloud heartbeat on a stopping item: %v", cloud)
	}

	wantStatus(t, h.do("POST", workPath(env, it.ID, "/stop"), ""), 200)
	got := beat(h.anthropic("POST", hb+"?expected_last_heartbeat=NO_HEARTBEAT", ""))
	if got["state"] != "stopped" || got["lease_extended"] != false || got["last_heartbeat"] != cloud["last_heartbeat"] {
		t.Errorf("heartbeat on a stopped item: %v", got)
	}
	r := h.do("POST", hb, "")
	wantError(t, r, 409, "invalid_request_error", "")
	if r.Header.Get("x-should-retry") != "" {
		t.Errorf("Cloud 409 with x-should-retry %q", r.Header.Get("x-should-retry"))
	}

	// A stopped item that never had a heartbeat reports last_heartbeat null.
	never := h.itemIn(env, "starting")
	wantStatus(t, h.do("POST", workPath(env, never.ID, "/stop"), `{"force":true}`), 200)
	got = beat(h.anthropic("POST", workPath(env, never.ID, "/heartbeat"), ""))
	if got["state"] != "stopped" || got["last_heartbeat"] != nil || got["lease_extended"] != false {
		t.Errorf("heartbeat on a never-beaten stopped item: %v", got)
	}

	// 412: error_code and current_state in the Anthropic dialect, current_state alone in
	// the Cloud one.
	active := h.itemIn(env, "active")
	stale := "?expected_last_heartbeat=NO_HEARTBEAT"
	for _, c := range []struct {
		r    *response
		code any
	}{
		{h.anthropic("POST", workPath(env, active.ID, "/heartbeat")+stale, ""), "heartbeat_precondition_failed"},
		{h.do("POST", workPath(env, active.ID, "/heartbeat")+stale, ""), nil},
	} {
		wantError(t, c.r, 412, "precondition_failed_error", "expected_last_heartbeat")
		var body struct {
			Error struct {
				Details map[string]any `json:"details"`
			} `json:"error"`
		}
		c.r.decode(t, &body)
		cs, _ := body.Error.Details["current_state"].(map[string]any)
		if body.Error.Details["error_code"] != c.code || cs["state"] != "active" || cs["last_heartbeat"] != *active.LatestHeartbeatAt {
			t.Errorf("412 details %v, want error_code %v", body.Error.Details, c.code)
		}
	}

	// Every 409 of the Anthropic dialect: a state conflict, and an Idempotency-Key reused
	// with another body.
	for _, r := range []*response{
		h.anthropic("POST", workPath(env, it.ID, "/ack"), ""),
		h.anthropic("POST", workPath(env, active.ID, ""), `{"metadata":{"a":"1"}}`, header("Idempotency-Key", "k1")),
		h.anthropic("POST", workPath(env, active.ID, ""), `{"metadata":{"a":"2"}}`, header("Idempotency-Key", "k1")),
	} {
		if r.Status == 409 && r.Header.Get("x-should-retry") != "false" {
			t.Errorf("409 %s without x-should-retry: false", r.Body)
		}
		if r.Status != 409 && r.Header.Get("x-should-retry") != "" {
			t.Errorf("%d with x-should-retry %q", r.Status, r.Header.Get("x-should-retry"))
		}
	}
}

// Lists: limit up to 1000 in the Anthropic dialect (100 in the Cloud one, but for events),
// next_page continues with page.
func TestAnthropicListLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	for range 103 {
		h.session(env)
	}
	items, _, err := h.store.ListWork(t.Context(), env, store.Page{Limit: 200}, nil)
	if err != nil || len(items) != 103 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	list := func(r *response) (got []string, next *string) {
		t.Helper()
		wantStatus(t, r, 200)
		var p struct {
			Data     []workJSON `json:"data"`
			NextPage *string    `json:"next_page"`
		}
		r.decode(t, &p)
		for _, w := range p.Data {
			got = append(got, w.ID)
		}
		return got, p.NextPage
	}
	path := "/environments/" + env + "/work"
	if got, next := list(h.anthropic("GET", path+"?limit=1000", "")); len(got) != 103 || next != nil {
		t.Errorf("Anthropic limit=1000: %d items, next_page %v", len(got), next)
	}
	if got, next := list(h.anthropic("GET", path+"?limit=5000", "")); len(got) != 103 || next != nil {
		t.Errorf("Anthropic limit=5000: %d items, next_page %v", len(got), next)
	}
	if got, next := list(h.do("GET", path+"?limit=1000", "")); len(got) != 100 || next == nil || *next != ids[99] {
		t.Errorf("Cloud limit=1000: %d items, next_page %v", len(got), next)
	}
	got, next := list(h.anthropic("GET", path+"?limit=101", ""))
	if len(got) != 101 || next == nil || *next != ids[100] {
		t.Fatalf("Anthropic limit=101: %d items, next_page %v", len(got), next)
	}
	if rest, next := list(h.anthropic("GET", path+"?page="+*next, "")); fmt.Sprint(rest) != fmt.Sprint(ids[101:]) || next != nil {
		t.Errorf("page=%s: %v, next_page %v", ids[100], rest, next)
	}
	for _, bad := range []string{"0", "-1", "x"} {
		wantError(t, h.anthropic("GET", path+"?limit="+bad, ""), 400, "invalid_request_error", "limit")
	}
}

// The session routes a worker uses: GET the session, list events (order=asc|desc, paged on
// next_page) and send them, with a worker token by x-api-key.
func TestAnthropicSessionRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	worker := h.token(api.RoleWorker, env)
	sess := h.session(env)
	key := []reqOpt{as(""), header("x-api-key", worker)}
	r := h.anthropic("GET", "/sessions/"+sess, "", key...)
	wantStatus(t, r, 200)
	if string(r.Body) != string(h.do("GET", "/sessions/"+sess, "").Body) {
		t.Errorf("session %s", r.Body)
	}
	var ids []string
	for i := range 5 {
		r := h.anthropic("POST", "/sessions/"+sess+"/events",
			fmt.Sprintf(`{"events":[{"type":"user.message","content":[{"type":"text","text":"m%d"}]}]}`, i), key...)
		wantStatus(t, r, 200)
		var out struct{ Data []struct{ ID string } }
		r.decode(t, &out)
		ids = append(ids, out.Data[0].ID)
	}
	walk := func(dialect func(string, string, string, ...reqOpt) *response, order string) []string {
		t.Helper()
		var got []string
		q := "?limit=2&order=" + order
		for range 10 {
			r := dialect("GET", "/sessions/"+sess+"/events"+q, "", as(worker))
			wantStatus(t, r, 200)
			var p struct {
				Data     []struct{ ID string }
				NextPage *string `json:"next_page"`
			}
			r.decode(t, &p)
			for _, e := range p.Data {
				got = append(got, e.ID)
			}
			if p.NextPage == nil {
				return got
			}
			q = "?limit=2&order=" + order + "&page=" + *p.NextPage
		}
		t.Fatalf("paging does not end")
		return nil
	}
	desc := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	for name, dialect := range map[string]func(string, string, string, ...reqOpt) *response{
		"Anthropic": h.anthropic, "Cloud": h.do,
	} {
		if got := walk(dialect, "asc"); fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Errorf("%s asc: %v, want %v", name, got, ids)
		}
		if got := walk(dialect, "desc"); fmt.Sprint(got) != fmt.Sprint(desc) {
			t.Errorf("%s desc: %v, want %v", name, got, desc)
		}
		wantError(t, dialect("GET", "/sessions/"+sess+"/events?order=up", "", as(worker)), 400, "invalid_request_error", "order")
	}
}
