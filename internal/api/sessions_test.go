package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tcSessionIn creates a session from a body and returns the decoded object.
func tcSessionIn(t *testing.T, h *harness, body string) map[string]any {
	t.Helper()
	r := h.do("POST", "/sessions", body)
	wantStatus(t, r, 201)
	return r.obj(t)
}

// tcOnlyItem returns the one work item of a session, failing unless there is exactly one.
func tcOnlyItem(t *testing.T, h *harness, env, sess string) workJSON {
	t.Helper()
	items := tcItemsOf(t, h, env, sess)
	if len(items) != 1 {
		t.Fatalf("session %s has %d work items, want 1: %+v", sess, len(items), items)
	}
	return items[0]
}

// tcSessionStatus reads a session's status.
func tcSessionStatus(t *testing.T, h *harness, sess string) string {
	t.Helper()
	r := h.do("GET", "/sessions/"+sess, "")
	wantStatus(t, r, 200)
	return r.str(t, "status")
}

// TestSessionsCreate: 201 with the object of API.md §3; agent string and object forms.
func TestSessionsCreate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	now := tcTS(h.clock.Now())
	r := h.do("POST", "/sessions", `{"agent":"agent_x","environment_id":"`+env+`"}`)
	wantStatus(t, r, 201)
	var raw map[string]json.RawMessage
	r.decode(t, &raw)
	if len(raw) != 10 {
		t.Errorf("keys: %s", r.Body)
	}
	if string(raw["agent"]) != `{"id":"agent_x","type":"agent","version":null}` {
		t.Errorf("agent %s", raw["agent"])
	}
	o := r.obj(t)
	id, _ := o["id"].(string)
	if !strings.HasPrefix(id, "sess_") || len(id) != 37 || o["type"] != "session" || o["environment_id"] != env ||
		o["title"] != "" || o["status"] != "idle" || o["created_at"] != now || o["updated_at"] != now {
		t.Errorf("session %s", r.Body)
	}
	if m, ok := o["metadata"].(map[string]any); !ok || len(m) != 0 {
		t.Errorf("metadata %v", o["metadata"])
	}
	if v, ok := o["archived_at"]; !ok || v != nil {
		t.Errorf("archived_at %v", v)
	}
	g := h.do("GET", "/sessions/"+id, "")
	wantStatus(t, g, 200)
	if !reflect.DeepEqual(g.obj(t), o) {
		t.Errorf("GET %s\nPOST %s", g.Body, r.Body)
	}

	// agent object: stored as given.
	agent := `{"type":"agent","id":"agent_y","version":3,"extra":{"k":[1,"2",null]}}`
	o = tcSessionIn(t, h, `{"agent":`+agent+`,"environment_id":"`+env+`","title":"T é","metadata":{"a":"b"}}`)
	var want any
	_ = json.Unmarshal([]byte(agent), &want)
	if !reflect.DeepEqual(o["agent"], want) {
		t.Errorf("agent %v, want %v", o["agent"], want)
	}
	if o["title"] != "T é" || !reflect.DeepEqual(o["metadata"], map[string]any{"a": "b"}) {
		t.Errorf("title/metadata: %v %v", o["title"], o["metadata"])
	}
	g = h.do("GET", "/sessions/"+o["id"].(string), "")
	if !reflect.DeepEqual(g.obj(t), o) {
		t.Errorf("GET %s, created %v", g.Body, o)
	}
	// version null and a string version are kept.
	o = tcSessionIn(t, h, `{"agent":{"id":"agent_z","type":"agent","version":"v2"},"environment_id":"`+env+`"}`)
	if !reflect.DeepEqual(o["agent"], map[string]any{"id": "agent_z", "type": "agent", "version": "v2"}) {
		t.Errorf("agent %v", o["agent"])
	}
	// In a cloud environment too.
	cloud := h.env(false)
	o = tcSessionIn(t, h, `{"agent":"a","environment_id":"`+cloud+`"}`)
	if o["environment_id"] != cloud || o["status"] != "idle" {
		t.Errorf("cloud session %v", o)
	}
}

// TestSessionsAgentNormalised: the stored agent object is well-formed, with exactly one
// "type": an explicit "type":null counts as absent and becomes "type":"agent" after id,
// and a key repeated in the input (at any depth) is stored once, at its first place with
// its last value. The bytes are checked as created and as read back.
func TestSessionsAgentNormalised(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	cases := []struct{ in, want string }{
		{`{"id":"a","type":null}`, `{"id":"a","type":"agent"}`},
		{`{"type":null,"id":"a","version":null}`, `{"id":"a","type":"agent","version":null}`},
		{`{"id":"a","type":"custom","type":null}`, `{"id":"a","type":"agent"}`},
		{`{"id":"a","type":null,"type":"custom"}`, `{"id":"a","type":"custom"}`},
		{`{"id":"a","id":"b"}`, `{"id":"b","type":"agent"}`},
		{`{"id":"","id":"b"}`, `{"id":"b","type":"agent"}`},
		{`{"type":"agent","id":"a","type":"agent"}`, `{"type":"agent","id":"a"}`},
		{`{"id":"a","x":{"k":1,"k":2,"j":[{"z":1,"z":2}]}}`, `{"id":"a","type":"agent","x":{"k":2,"j":[{"z":2}]}}`},
		{`{"id":"a","ID":"b","Type":"c"}`, `{"id":"a","type":"agent","ID":"b","Type":"c"}`},
		{`{ "id" : "a" , "n" : 1.50e3 , "e" : {} , "l" : [ ] }`, `{"id":"a","type":"agent","n":1.50e3,"e":{},"l":[]}`},
	}
	for _, c := range cases {
		r := h.do("POST", "/sessions", `{"agent":`+c.in+`,"environment_id":"`+env+`"}`)
		wantStatus(t, r, 201)
		var created map[string]json.RawMessage
		r.decode(t, &created)
		if string(created["agent"]) != c.want {
			t.Errorf("agent %s: created %s, want %s", c.in, created["agent"], c.want)
		}
		var id string
		_ = json.Unmarshal(created["id"], &id)
		g := h.do("GET", "/sessions/"+id, "")
		wantStatus(t, g, 200)
		var read map[string]json.RawMessage
		g.decode(t, &read)
		if string(read["agent"]) != c.want {
			t.Errorf("agent %s: read back %s, want %s", c.in, read["agent"], c.want)
		}
	}
	// Still refused: a non-string type, an id only under another case, an empty last id.
	for _, in := range []string{`{"id":"a","type":5}`, `{"ID":"a"}`, `{"id":"a","id":""}`, `{"id":"a","type":{}}`} {
		r := h.do("POST", "/sessions", `{"agent":`+in+`,"environment_id":"`+env+`"}`)
		wantStatus(t, r, 400)
		if p := r.obj(t)["error"].(map[string]any)["param"]; p != "agent.id" && p != "agent.type" {
			t.Errorf("agent %s: param %v", in, p)
		}
	}
}

// TestSessionsCreateErrors: every invalid create is 400 (404 for an unknown environment)
// and creates nothing: no session, no work item.
func TestSessionsCreateErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	archived := h.env(true)
	wantStatus(t, h.do("POST", "/environments/"+archived+"/archive", ""), 200)
	e := `"environment_id":"` + env + `"`
	events51 := make([]map[string]any, 51)
	for i := range events51 {
		events51[i] = map[string]any{"type": "user.message"}
	}
	ev51, _ := json.Marshal(events51)
	cases := []struct {
		body   string
		status int
		typ    string
		params []string
	}{
		{`{` + e + `}`, 400, "invalid_request_error", []string{"agent"}},
		{`{"agent":null,` + e + `}`, 400, "invalid_request_error", []string{"agent"}},
		{`{"agent":5,` + e + `}`, 400, "invalid_request_error", []string{"agent"}},
		{`{"agent":true,` + e + `}`, 400, "invalid_request_error", []string{"agent"}},
		{`{"agent":["a"],` + e + `}`, 400, "invalid_request_error", []string{"agent"}},
		{`{"agent":"",` + e + `}`, 400, "invalid_request_error", []string{"agent"}},
		{`{"agent":{},` + e + `}`, 400, "invalid_request_error", []string{"agent", "agent.id"}},
		{`{"agent":{"id":5},` + e + `}`, 400, "invalid_request_error", []string{"agent", "agent.id"}},
		{`{"agent":{"id":""},` + e + `}`, 400, "invalid_request_error", []string{"agent", "agent.id"}},
		{`{"agent":{"type":"agent"},` + e + `}`, 400, "invalid_request_error", []string{"agent", "agent.id"}},
		{`{"agent":"a"}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"agent":"a","environment_id":null}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"agent":"a","environment_id":5}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"agent":"a","environment_id":["` + env + `"]}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"agent":"a","environment_id":"env_00000000000000000000000000000000"}`, 404, "not_found_error", []string{"", "environment_id"}},
		{`{"agent":"a","environment_id":"env_nope"}`, 404, "not_found_error", []string{"", "environment_id"}},
		{`{"agent":"a","environment_id":"` + archived + `"}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"agent":"a",` + e + `,"title":5}`, 400, "invalid_request_error", []string{"title"}},
		{`{"agent":"a",` + e + `,"metadata":` + tcMetadata(17) + `}`, 400, "invalid_request_error", []string{"metadata"}},
		{`{"agent":"a",` + e + `,"metadata":{"k":1}}`, 400, "invalid_request_error", []string{"metadata.k"}},
		{`{"agent":"a",` + e + `,"metadata":"x"}`, 400, "invalid_request_error", []string{"metadata"}},
		{`{"agent":"a",` + e + `,"initial_events":` + string(ev51) + `}`, 400, "invalid_request_error", []string{"initial_events"}},
		{`{"agent":"a",` + e + `,"initial_events":[{"type":"bogus"}]}`, 400, "invalid_request_error", []string{"initial_events", "initial_events[0]", "initial_events[0].type"}},
		{`{"agent":"a",` + e + `,"initial_events":[{"type":"user.message"},{"type":"agent.thinking"}]}`, 400, "invalid_request_error", []string{"initial_events", "initial_events[1]", "initial_events[1].type"}},
		{`{"agent":"a",` + e + `,"initial_events":[{"content":"no type"}]}`, 400, "invalid_request_error", []string{"initial_events", "initial_events[0]", "initial_events[0].type"}},
		{`{"agent":"a",` + e + `,"initial_events":[{"type":5}]}`, 400, "invalid_request_error", []string{"initial_events", "initial_events[0]", "initial_events[0].type"}},
		{`{"agent":"a",` + e + `,"initial_events":[5]}`, 400, "invalid_request_error", []string{"initial_events", "initial_events[0]"}},
		{`{"agent":"a",` + e + `,"initial_events":"x"}`, 400, "invalid_request_error", []string{"initial_events"}},
		{`{"agent":"a",` + e + `,"initial_events":{"type":"user.message"}}`, 400, "invalid_request_error", []string{"initial_events"}},
	}
	for _, c := range cases {
		r := h.do("POST", "/sessions", c.body)
		tcWantErr(t, "create "+c.body[:min(len(c.body), 80)], r, c.status, c.typ, c.params...)
	}
	if p := tcList(t, h, "/sessions?include_archived=true"); len(p.Data) != 0 {
		t.Errorf("failed creates made sessions: %v", p.ids())
	}
	if n := len(tcList(t, h, "/environments/"+env+"/work").Data); n != 0 {
		t.Errorf("failed creates queued %d work items", n)
	}
	if n := tcStoreWorkCount(t, h, archived); n != 0 {
		t.Errorf("archived environment got %d work items", n)
	}
}

// TestSessionsInitialEvents: up to 50 initial events are stored in order as events with
// evt_ IDs and created_at, the client's fields kept.
func TestSessionsInitialEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	types := []string{"user.message", "user.interrupt", "user.tool_confirmation", "user.tool_result",
		"user.custom_tool_result", "user.define_outcome", "system.message"}
	events := make([]map[string]any, 50)
	for i := range events {
		events[i] = map[string]any{"type": types[i%len(types)], "n": i, "content": []any{map[string]any{"type": "text", "text": fmt.Sprint("m", i)}}}
	}
	body, _ := json.Marshal(map[string]any{"agent": "a", "environment_id": env, "initial_events": events})
	sess := tcSessionIn(t, h, string(body))["id"].(string)
	p := tcList(t, h, "/sessions/"+sess+"/events?limit=100")
	if len(p.Data) != 50 || p.HasMore {
		t.Fatalf("%d events (has_more %t), want 50", len(p.Data), p.HasMore)
	}
	prev := ""
	for i, ev := range p.Data {
		id, _ := ev["id"].(string)
		if !strings.HasPrefix(id, "evt_") || id <= prev {
			t.Errorf("event %d id %q after %q", i, id, prev)
		}
		prev = id
		if ev["type"] != types[i%len(types)] || ev["n"] != float64(i) || ev["created_at"] != tcTS(h.clock.Now()) {
			t.Errorf("event %d: %v", i, ev)
		}
		want := []any{map[string]any{"type": "text", "text": fmt.Sprint("m", i)}}
		if !reflect.DeepEqual(ev["content"], want) {
			t.Errorf("event %d content %v", i, ev["content"])
		}
	}
	// An empty list is fine and stores nothing.
	sess2 := tcSessionIn(t, h, `{"agent":"a","environment_id":"`+env+`","initial_events":[]}`)["id"].(string)
	if p := tcList(t, h, "/sessions/"+sess2+"/events"); len(p.Data) != 0 {
		t.Errorf("events %v", p.ids())
	}
}

// TestSessionsWorkItemQueued: in a self_hosted environment one item is queued, its
// metadata a copy of the session's; in a cloud environment none.
func TestSessionsWorkItemQueued(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	s := tcSessionIn(t, h, `{"agent":"a","environment_id":"`+env+`","metadata":{"team":"x","job":"y"}}`)
	sess := s["id"].(string)
	w := tcOnlyItem(t, h, env, sess)
	if w.State != "queued" || w.EnvironmentID != env || w.Data["type"] != "session" || w.Data["id"] != sess ||
		!reflect.DeepEqual(w.Metadata, map[string]string{"team": "x", "job": "y"}) || *w.CreatedAt != s["created_at"] {
		t.Errorf("item %+v", w)
	}
	// Without metadata: {}.
	sess2 := h.session(env)
	if w2 := tcOnlyItem(t, h, env, sess2); w2.Metadata == nil || len(w2.Metadata) != 0 {
		t.Errorf("item metadata %v", w2.Metadata)
	}
	if n := len(tcList(t, h, "/environments/"+env+"/work").Data); n != 2 {
		t.Errorf("%d items in the environment, want 2", n)
	}
	// The item is the session's copy: updating the item's metadata leaves the session.
	wantStatus(t, h.do("POST", workPath(env, w.ID, ""), `{"metadata":{"team":"changed"}}`), 200)
	if m := h.do("GET", "/sessions/"+sess, "").obj(t)["metadata"]; !reflect.DeepEqual(m, map[string]any{"team": "x", "job": "y"}) {
		t.Errorf("session metadata %v after the item's changed", m)
	}

	cloud := h.env(false)
	tcSessionIn(t, h, `{"agent":"a","environment_id":"`+cloud+`","metadata":{"a":"b"}}`)
	if n := tcStoreWorkCount(t, h, cloud); n != 0 {
		t.Errorf("cloud environment has %d work items, want 0", n)
	}
}

// TestSessionsStatus: idle while the item is queued, running while it is starting,
// active or stopping, idle again once stopped.
func TestSessionsStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	w := tcOnlyItem(t, h, env, sess)
	check := func(step, want string) {
		t.Helper()
		if got := tcSessionStatus(t, h, sess); got != want {
			t.Errorf("%s: status %q, want %q", step, got, want)
		}
		for _, d := range tcList(t, h, "/sessions").Data {
			if d["id"] == sess && d["status"] != want {
				t.Errorf("%s: listed status %v, want %s", step, d["status"], want)
			}
		}
	}
	check("queued", "idle")
	if p := h.poll(env, "w1"); p == nil || p.ID != w.ID {
		t.Fatalf("poll %+v", p)
	}
	check("delivered", "idle")
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n", header("Worker-ID", "w1")), 200)
	check("starting", "running")
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/heartbeat"), ""), 200)
	check("active", "running")
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), ""), 200)
	if got := h.work(env, w.ID).State; got != "stopping" {
		t.Fatalf("item %s", got)
	}
	check("stopping", "running")
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), ""), 200)
	check("stopped", "idle")

	// A cloud session is always idle.
	cloud := h.session(h.env(false))
	if got := tcSessionStatus(t, h, cloud); got != "idle" {
		t.Errorf("cloud session %s", got)
	}
	// A forced stop from active ends running at once.
	sess2 := h.session(env)
	w2 := tcOnlyItem(t, h, env, sess2)
	wantStatus(t, h.do("POST", workPath(env, w2.ID, "/ack"), ""), 200)
	if got := tcSessionStatus(t, h, sess2); got != "running" {
		t.Errorf("status %s", got)
	}
	wantStatus(t, h.do("POST", workPath(env, w2.ID, "/stop"), `{"force":true}`), 200)
	if got := tcSessionStatus(t, h, sess2); got != "idle" {
		t.Errorf("after force stop: status %s", got)
	}
}

// TestSessionsList: environment_id filters; archived sessions only with
// include_archived=true; bad values are 400.
func TestSessionsList(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a, b := h.env(true), h.env(false)
	a1 := h.session(a)
	b1 := h.session(b)
	a2 := h.session(a)
	b2 := h.session(b)
	wantStatus(t, h.do("POST", "/sessions/"+a2+"/archive", ""), 200)
	tcWantPage(t, "all", tcList(t, h, "/sessions"), []string{a1, b1, b2}, false, nil)
	tcWantPage(t, "all archived", tcList(t, h, "/sessions?include_archived=true"), []string{a1, b1, a2, b2}, false, nil)
	tcWantPage(t, "a", tcList(t, h, "/sessions?environment_id="+a), []string{a1}, false, nil)
	tcWantPage(t, "a archived", tcList(t, h, "/sessions?environment_id="+a+"&include_archived=true"), []string{a1, a2}, false, nil)
	tcWantPage(t, "a not archived", tcList(t, h, "/sessions?environment_id="+a+"&include_archived=false"), []string{a1}, false, nil)
	tcWantPage(t, "b", tcList(t, h, "/sessions?environment_id="+b), []string{b1, b2}, false, nil)
	tcWantPage(t, "unknown env", tcList(t, h, "/sessions?environment_id=env_00000000000000000000000000000000"), nil, false, nil)
	for _, d := range tcList(t, h, "/sessions?include_archived=true").Data {
		g := h.do("GET", "/sessions/"+d["id"].(string), "").obj(t)
		if !reflect.DeepEqual(g, d) {
			t.Errorf("listed %v, GET %v", d, g)
		}
	}
	for _, q := range []string{"include_archived=yes", "include_archived=2", "environment_id=nope", "environment_id=" + a1} {
		tcWantErr(t, q, h.do("GET", "/sessions?"+q, ""), 400, "invalid_request_error", strings.SplitN(q, "=", 2)[0])
	}
}

// TestSessionsUpdate: title and a metadata merge; the existing work item keeps its
// metadata; errors change nothing.
func TestSessionsUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	s := tcSessionIn(t, h, `{"agent":"a","environment_id":"`+env+`","title":"t","metadata":{"a":"1","b":"2"}}`)
	sess := s["id"].(string)
	h.clock.Advance(time.Minute)
	r := h.do("POST", "/sessions/"+sess, `{"title":"new","metadata":{"b":null,"c":"3","a":"x"}}`)
	wantStatus(t, r, 200)
	o := r.obj(t)
	if o["title"] != "new" || !reflect.DeepEqual(o["metadata"], map[string]any{"a": "x", "c": "3"}) ||
		o["updated_at"] != tcTS(h.clock.Now()) || o["created_at"] != s["created_at"] || !reflect.DeepEqual(o["agent"], s["agent"]) ||
		o["environment_id"] != env {
		t.Errorf("update: %s", r.Body)
	}
	r = h.do("POST", "/sessions/"+sess, `{"metadata":{"d":"4"}}`)
	if o := r.obj(t); o["title"] != "new" || !reflect.DeepEqual(o["metadata"], map[string]any{"a": "x", "c": "3", "d": "4"}) {
		t.Errorf("metadata-only update: %s", r.Body)
	}
	r = h.do("POST", "/sessions/"+sess, `{"title":""}`)
	if o := r.obj(t); o["title"] != "" || len(o["metadata"].(map[string]any)) != 3 {
		t.Errorf("title-only update: %s", r.Body)
	}
	if w := tcOnlyItem(t, h, env, sess); !reflect.DeepEqual(w.Metadata, map[string]string{"a": "1", "b": "2"}) {
		t.Errorf("work item metadata changed by a session update: %v", w.Metadata)
	}
	current := h.do("GET", "/sessions/"+sess, "")
	for _, c := range []struct {
		body   string
		params []string
	}{
		{`{"title":5}`, []string{"title"}},
		{`{"title":["x"]}`, []string{"title"}},
		{`{"metadata":{"a":5}}`, []string{"metadata.a"}},
		{`{"title":"ok","metadata":{"a":5}}`, []string{"metadata.a"}},
		{`{"metadata":` + tcMetadata(14) + `}`, []string{"metadata"}},
		{`{"metadata":"x"}`, []string{"metadata"}},
	} {
		tcWantErr(t, "update "+c.body, h.do("POST", "/sessions/"+sess, c.body), 400, "invalid_request_error", c.params...)
	}
	if after := h.do("GET", "/sessions/"+sess, ""); !bytes.Equal(after.Body, current.Body) {
		t.Errorf("failed updates changed the session:\n%s\n%s", current.Body, after.Body)
	}
	for _, id := range []string{"sess_00000000000000000000000000000000", "sess_bad"} {
		tcWantErr(t, "update "+id, h.do("POST", "/sessions/"+id, `{"title":"x"}`), 404, "not_found_error")
		tcWantErr(t, "get "+id, h.do("GET", "/sessions/"+id, ""), 404, "not_found_error")
	}
}

// TestSessionsArchive: archive sets archived_at; live work is left alone.
func TestSessionsArchive(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	w := tcOnlyItem(t, h, env, sess)
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), ""), 200)
	h.clock.Advance(time.Minute)
	at := tcTS(h.clock.Now())
	r := h.do("POST", "/sessions/"+sess+"/archive", "{}\n")
	wantStatus(t, r, 200)
	o := r.obj(t)
	if o["archived_at"] != at || o["id"] != sess || o["type"] != "session" || o["status"] != "running" {
		t.Errorf("archive: %s", r.Body)
	}
	if got := h.work(env, w.ID); got.State != "starting" || got.StopRequestedAt != nil {
		t.Errorf("live item touched by archive: %+v", got)
	}
	h.clock.Advance(time.Minute)
	r = h.do("POST", "/sessions/"+sess+"/archive", "")
	wantStatus(t, r, 200)
	if r.obj(t)["archived_at"] != at {
		t.Errorf("second archive: archived_at %v, want %s", r.obj(t)["archived_at"], at)
	}
	if p := tcList(t, h, "/sessions"); len(p.Data) != 0 {
		t.Errorf("archived session listed by default")
	}
	for _, id := range []string{"sess_00000000000000000000000000000000", "sess_bad"} {
		tcWantErr(t, "archive "+id, h.do("POST", "/sessions/"+id+"/archive", ""), 404, "not_found_error")
	}
}

// TestSessionsCancel: 202 {"id","type":"session","status":"canceling"} with a live item
// (queued → stopped, starting/active → stopping), 200 with the same body with none.
func TestSessionsCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	wantBody := func(sess string) string {
		return `{"id":"` + sess + `","type":"session","status":"canceling"}`
	}
	for _, c := range []struct {
		state, after string
	}{
		{"queued", "stopped"},
		{"starting", "stopping"},
		{"active", "stopping"},
		{"stopping", "stopping"},
	} {
		w := h.itemIn(env, c.state)
		sess := w.Data["id"]
		h.clock.Advance(time.Second)
		r := h.do("POST", "/sessions/"+sess+"/cancel", "{}\n")
		if r.Status != 202 || string(r.Body) != wantBody(sess) {
			t.Errorf("cancel with a %s item: %d %s, want 202 %s", c.state, r.Status, r.Body, wantBody(sess))
		}
		got := h.work(env, w.ID)
		if got.State != c.after {
			t.Errorf("cancel with a %s item: item %s, want %s", c.state, got.State, c.after)
		}
		switch c.state {
		case "queued":
			if got.StoppedAt == nil || *got.StoppedAt != tcTS(h.clock.Now()) {
				t.Errorf("queued item cancelled: stopped_at %v", tcStr(got.StoppedAt))
			}
		case "starting", "active":
			if got.StopRequestedAt == nil || *got.StopRequestedAt != tcTS(h.clock.Now()) || got.StoppedAt != nil {
				t.Errorf("%s item cancelled: stop_requested_at %v stopped_at %v", c.state, tcStr(got.StopRequestedAt), tcStr(got.StoppedAt))
			}
		}
	}
	// No live item: a stopped one, or none at all (cloud).
	w := h.itemIn(env, "stopped")
	r := h.do("POST", "/sessions/"+w.Data["id"]+"/cancel", "")
	if r.Status != 200 || string(r.Body) != wantBody(w.Data["id"]) {
		t.Errorf("cancel with a stopped item: %d %s", r.Status, r.Body)
	}
	if got := h.work(env, w.ID); got.State != "stopped" || *got.StoppedAt != *w.StoppedAt {
		t.Errorf("stopped item changed by cancel: %+v", got)
	}
	cloud := h.session(h.env(false))
	r = h.do("POST", "/sessions/"+cloud+"/cancel", "{}")
	if r.Status != 200 || string(r.Body) != wantBody(cloud) {
		t.Errorf("cancel in cloud: %d %s", r.Status, r.Body)
	}
	// A second cancel after a queued item was stopped finds nothing live: 200.
	q := h.itemIn(env, "queued")
	wantStatus(t, h.do("POST", "/sessions/"+q.Data["id"]+"/cancel", ""), 202)
	wantStatus(t, h.do("POST", "/sessions/"+q.Data["id"]+"/cancel", ""), 200)
	for _, id := range []string{"sess_00000000000000000000000000000000", "sess_bad"} {
		tcWantErr(t, "cancel "+id, h.do("POST", "/sessions/"+id+"/cancel", ""), 404, "not_found_error")
	}
}

// TestSessionsDelete: DELETE force-stops the live items (they stay readable, stopped),
// answers session_deleted, and the session and its events are gone.
func TestSessionsDelete(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	for _, state := range []string{"queued", "starting", "active", "stopping", "stopped"} {
		w := h.itemIn(env, state)
		sess := w.Data["id"]
		wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"system.message"}]}`), 200)
		h.clock.Advance(time.Second)
		r := h.do("DELETE", "/sessions/"+sess, "")
		wantStatus(t, r, 200)
		if string(r.Body) != `{"id":"`+sess+`","type":"session_deleted"}` {
			t.Errorf("delete: %s", r.Body)
		}
		got := h.work(env, w.ID)
		if got.State != "stopped" || got.StoppedAt == nil {
			t.Errorf("%s item after session delete: %+v", state, got)
		} else if state != "stopped" && *got.StoppedAt != tcTS(h.clock.Now()) {
			t.Errorf("%s item: stopped_at %s, want %s", state, *got.StoppedAt, tcTS(h.clock.Now()))
		}
		if got.Data["id"] != sess {
			t.Errorf("item data %v", got.Data)
		}
		tcWantErr(t, "GET deleted", h.do("GET", "/sessions/"+sess, ""), 404, "not_found_error")
		tcWantErr(t, "GET events of deleted", h.do("GET", "/sessions/"+sess+"/events", ""), 404, "not_found_error")
		tcWantErr(t, "POST events to deleted", h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message"}]}`), 404, "not_found_error")
		tcWantErr(t, "DELETE deleted", h.do("DELETE", "/sessions/"+sess, ""), 404, "not_found_error")
		tcWantErr(t, "cancel deleted", h.do("POST", "/sessions/"+sess+"/cancel", ""), 404, "not_found_error")
		tcWantErr(t, "archive deleted", h.do("POST", "/sessions/"+sess+"/archive", ""), 404, "not_found_error")
		tcWantErr(t, "update deleted", h.do("POST", "/sessions/"+sess, `{"title":"x"}`), 404, "not_found_error")
		// A stopped item of a deleted session stays stopped: no new item appears.
		if n := len(tcItemsOf(t, h, env, sess)); n != 1 {
			t.Errorf("%d items of the deleted session, want 1", n)
		}
	}
	if p := tcList(t, h, "/sessions?include_archived=true"); len(p.Data) != 0 {
		t.Errorf("deleted sessions listed: %v", p.ids())
	}
	// Cloud, with the Python SDK's {} body.
	cloud := h.session(h.env(false))
	r := h.do("DELETE", "/sessions/"+cloud, "{}")
	if r.Status != 200 || string(r.Body) != `{"id":"`+cloud+`","type":"session_deleted"}` {
		t.Errorf("cloud delete: %d %s", r.Status, r.Body)
	}
	for _, id := range []string{"sess_00000000000000000000000000000000", "sess_bad"} {
		tcWantErr(t, "delete "+id, h.do("DELETE", "/sessions/"+id, ""), 404, "not_found_error")
	}
}

// TestSessionsEvents: POST {"events":[…]} stores the events in order with evt_ IDs and
// created_at, keeping the client's fields, and answers {"data":[…]}; GET lists them.
func TestSessionsEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	now := tcTS(h.clock.Now())
	types := []string{"user.message", "user.interrupt", "user.tool_confirmation", "user.tool_result",
		"user.custom_tool_result", "user.define_outcome", "system.message"}
	var sent []map[string]any
	for i, typ := range types {
		sent = append(sent, map[string]any{"type": typ, "content": []any{map[string]any{"type": "text", "text": "hi"}},
			"n": float64(i), "nested": map[string]any{"a": []any{1.0, "b", nil, true}}})
	}
	r := h.do("POST", "/sessions/"+sess+"/events", jsonBody(map[string]any{"events": sent}))
	wantStatus(t, r, 200)
	var out map[string][]map[string]any
	r.decode(t, &out)
	if len(out) != 1 || len(out["data"]) != len(types) {
		t.Fatalf("answer %s", r.Body)
	}
	prev := ""
	for i, ev := range out["data"] {
		id, _ := ev["id"].(string)
		if !strings.HasPrefix(id, "evt_") || len(id) != 36 || id <= prev {
			t.Errorf("event %d id %q", i, id)
		}
		prev = id
		if ev["created_at"] != now {
			t.Errorf("event %d created_at %v", i, ev["created_at"])
		}
		for k, v := range sent[i] {
			if !reflect.DeepEqual(ev[k], v) {
				t.Errorf("event %d %s = %v, want %v", i, k, ev[k], v)
			}
		}
		if len(ev) != len(sent[i])+2 {
			t.Errorf("event %d has keys %v", i, ev)
		}
	}
	// GET lists them, ascending, the same objects.
	p := tcList(t, h, "/sessions/"+sess+"/events")
	if !reflect.DeepEqual(p.Data, out["data"]) {
		t.Errorf("listed %v\nsent back %v", p.Data, out["data"])
	}
	// A second send appends after.
	h.clock.Advance(time.Second)
	r = h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","content":"later"}]}`)
	wantStatus(t, r, 200)
	var out2 tcPage
	r.decode(t, &out2)
	p = tcList(t, h, "/sessions/"+sess+"/events")
	if len(p.Data) != len(types)+1 || p.ids()[len(types)] != out2.ids()[0] || p.Data[len(types)]["created_at"] != tcTS(h.clock.Now()) {
		t.Errorf("second send: %v", p.ids())
	}
	// Client-sent id and created_at are the server's to set.
	r = h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","id":"evt_client","created_at":"1999-01-01T00:00:00Z"}]}`)
	wantStatus(t, r, 200)
	r.decode(t, &out)
	if ev := out["data"][0]; ev["id"] == "evt_client" || !strings.HasPrefix(ev["id"].(string), "evt_") || ev["created_at"] != tcTS(h.clock.Now()) {
		t.Errorf("client id/created_at kept: %v", ev)
	}

	// Errors: 400, nothing stored.
	before := len(tcList(t, h, "/sessions/"+sess+"/events?limit=100").Data)
	for _, c := range []struct {
		body   string
		params []string
	}{
		{`{}`, []string{"events"}},
		{`{"events":null}`, []string{"events"}},
		{`{"events":[]}`, []string{"events"}},
		{`{"events":"x"}`, []string{"events"}},
		{`{"events":{"type":"user.message"}}`, []string{"events"}},
		{`{"events":[5]}`, []string{"events", "events[0]"}},
		{`{"events":[{"type":"agent.thinking"}]}`, []string{"events", "events[0]", "events[0].type"}},
		{`{"events":[{"type":"USER.MESSAGE"}]}`, []string{"events", "events[0]", "events[0].type"}},
		{`{"events":[{"type":"user.message"},{"type":"bogus"}]}`, []string{"events", "events[1]", "events[1].type"}},
		{`{"events":[{"content":"no type"}]}`, []string{"events", "events[0]", "events[0].type"}},
		{`{"events":[{"type":null}]}`, []string{"events", "events[0]", "events[0].type"}},
		{`{"events":[{"type":1}]}`, []string{"events", "events[0]", "events[0].type"}},
	} {
		tcWantErr(t, "send "+c.body, h.do("POST", "/sessions/"+sess+"/events", c.body), 400, "invalid_request_error", c.params...)
	}
	if after := len(tcList(t, h, "/sessions/"+sess+"/events?limit=100").Data); after != before {
		t.Errorf("failed sends stored %d events", after-before)
	}
	for _, id := range []string{"sess_00000000000000000000000000000000", "sess_bad"} {
		tcWantErr(t, "send to "+id, h.do("POST", "/sessions/"+id+"/events", `{"events":[{"type":"user.message"}]}`), 404, "not_found_error")
		tcWantErr(t, "list of "+id, h.do("GET", "/sessions/"+id+"/events", ""), 404, "not_found_error")
	}
}

// TestSessionsEventsBatchLimit: a send holds at most 50 events, as initial_events do
// (API.md sets the limit only for initial_events; berth applies it to sends too).
func TestSessionsEventsBatchLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sess := h.session(h.env(false))
	evs := make([]map[string]any, 51)
	for i := range evs {
		evs[i] = map[string]any{"type": "system.message"}
	}
	tcWantErr(t, "51 events", h.do("POST", "/sessions/"+sess+"/events", jsonBody(map[string]any{"events": evs})), 400, "invalid_request_error", "events")
	r := h.do("POST", "/sessions/"+sess+"/events", jsonBody(map[string]any{"events": evs[:50]}))
	wantStatus(t, r, 200)
	if p := tcList(t, h, "/sessions/"+sess+"/events?limit=100"); len(p.Data) != 50 {
		t.Errorf("%d events stored, want 50", len(p.Data))
	}
}

// TestSessionsDormantWakeUp: a user.message to a session with no live item in a
// self_hosted environment queues exactly one new item; nothing else does.
func TestSessionsDormantWakeUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	s := tcSessionIn(t, h, `{"agent":"a","environment_id":"`+env+`","metadata":{"k":"v"}}`)
	sess := s["id"].(string)
	msg := `{"events":[{"type":"user.message","content":"wake up"}]}`
	count := func(step string, want int) []workJSON {
		t.Helper()
		items := tcItemsOf(t, h, env, sess)
		if len(items) != want {
			t.Errorf("%s: %d items, want %d: %+v", step, len(items), want, items)
		}
		return items
	}
	// While the first item is queued (live): no new item.
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	items := count("message while queued", 1)
	// Stop it; then non-message events wake nothing.
	wantStatus(t, h.do("POST", workPath(env, items[0].ID, "/stop"), `{"force":true}`), 200)
	for _, typ := range []string{"user.interrupt", "user.tool_confirmation", "user.tool_result",
		"user.custom_tool_result", "user.define_outcome", "system.message"} {
		wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"`+typ+`"}]}`), 200)
	}
	count("non-message events", 1)
	// A user.message queues exactly one new item, with the session's metadata.
	h.clock.Advance(time.Minute)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	items = count("wake-up", 2)
	fresh := items[1]
	if fresh.State != "queued" || fresh.ID <= items[0].ID || !reflect.DeepEqual(fresh.Metadata, map[string]string{"k": "v"}) ||
		*fresh.CreatedAt != tcTS(h.clock.Now()) || fresh.EnvironmentID != env {
		t.Errorf("woken item %+v", fresh)
	}
	if w := h.poll(env, "w"); w == nil || w.ID != fresh.ID {
		t.Errorf("the woken item is not pollable: %+v", w)
	}
	// While it is live, more messages queue nothing: delivered, starting, active, stopping.
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	wantStatus(t, h.do("POST", workPath(env, fresh.ID, "/ack"), ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	wantStatus(t, h.do("POST", workPath(env, fresh.ID, "/heartbeat"), ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	wantStatus(t, h.do("POST", workPath(env, fresh.ID, "/stop"), ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	count("messages while live", 2)
	wantStatus(t, h.do("POST", workPath(env, fresh.ID, "/stop"), ""), 200)
	// Two messages in one send queue one item.
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"system.message"},{"type":"user.message"},{"type":"user.message"}]}`), 200)
	count("two messages in one send", 3)

	// A cloud session is never woken.
	cloudEnv := h.env(false)
	cs := h.session(cloudEnv)
	wantStatus(t, h.do("POST", "/sessions/"+cs+"/events", msg), 200)
	if n := tcStoreWorkCount(t, h, cloudEnv); n != 0 {
		t.Errorf("cloud session woken: %d items", n)
	}

	// A worker's message wakes as well (workers may POST events in their environment).
	worker := h.token("worker", env)
	s2 := h.session(env)
	w2 := tcOnlyItem(t, h, env, s2)
	wantStatus(t, h.do("POST", workPath(env, w2.ID, "/stop"), ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+s2+"/events", msg, as(worker)), 200)
	if n := len(tcItemsOf(t, h, env, s2)); n != 2 {
		t.Errorf("worker's message: %d items, want 2", n)
	}
}

// TestSessionsDormantWakeUpArchived: API.md §3 makes the dormant wake-up depend only on
// the event (user.message), the session having no live work item and the environment
// being self_hosted. Neither an archived session nor an archived environment is an
// exception there (archiving an environment only stops new sessions; archiving a session
// leaves live work alone), so a user.message queues a new item in both cases.
func TestSessionsDormantWakeUpArchived(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	msg := `{"events":[{"type":"user.message","content":"wake up"}]}`

	// Archived environment, live session.
	env := h.env(true)
	sess := h.session(env)
	w := tcOnlyItem(t, h, env, sess)
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), ""), 200)
	wantStatus(t, h.do("POST", "/environments/"+env+"/archive", ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", msg), 200)
	if items := tcItemsOf(t, h, env, sess); len(items) != 2 || items[1].State != "queued" {
		t.Errorf("user.message in an archived self_hosted environment: %d items, want 2 (a new queued one): %+v", len(items), items)
	}

	// Archived session in a live environment.
	env2 := h.env(true)
	sess2 := h.session(env2)
	w2 := tcOnlyItem(t, h, env2, sess2)
	wantStatus(t, h.do("POST", workPath(env2, w2.ID, "/stop"), ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess2+"/archive", ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess2+"/events", msg), 200)
	if items := tcItemsOf(t, h, env2, sess2); len(items) != 2 {
		t.Errorf("user.message to an archived session with no live item: %d items, want 2 (API.md §3 dormant wake-up has no archived exception)", len(items))
	}
}
