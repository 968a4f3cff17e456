package api_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
)

// TestEnvironmentsCreateDefaults: POST /environments with only a name is 201 with the
// defaults of API.md §2: description "", a cloud config, metadata {}, archived_at null.
func TestEnvironmentsCreateDefaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	now := tcTS(h.clock.Now())
	r := h.do("POST", "/environments", `{"name":"byoc"}`)
	wantStatus(t, r, 201)
	var raw map[string]json.RawMessage
	r.decode(t, &raw)
	keys := []string{"id", "type", "name", "description", "config", "metadata", "archived_at", "created_at", "updated_at"}
	if len(raw) != len(keys) {
		t.Errorf("keys %v, want %v", raw, keys)
	}
	o := r.obj(t)
	id, _ := o["id"].(string)
	if !strings.HasPrefix(id, "env_") || len(id) != 36 {
		t.Errorf("id %q", id)
	}
	if o["type"] != "environment" || o["name"] != "byoc" || o["description"] != "" {
		t.Errorf("object %s", r.Body)
	}
	if cfg, _ := o["config"].(map[string]any); cfg == nil || cfg["type"] != "cloud" {
		t.Errorf("default config %v, want type cloud", o["config"])
	}
	if m, ok := o["metadata"].(map[string]any); !ok || len(m) != 0 {
		t.Errorf("metadata %v, want {}", o["metadata"])
	}
	if v, ok := o["archived_at"]; !ok || v != nil {
		t.Errorf("archived_at %v present=%t, want null", v, ok)
	}
	if o["created_at"] != now || o["updated_at"] != now {
		t.Errorf("created_at %v updated_at %v, want %s", o["created_at"], o["updated_at"], now)
	}
	// The object reads back the same.
	g := h.do("GET", "/environments/"+id, "")
	wantStatus(t, g, 200)
	if !reflect.DeepEqual(g.obj(t), o) {
		t.Errorf("GET %s\nPOST %s", g.Body, r.Body)
	}
	// Two environments get different, increasing IDs.
	id2 := tcCreateEnv(t, h, `{"name":"byoc"}`)["id"].(string)
	if id2 <= id {
		t.Errorf("second ID %s not after %s", id2, id)
	}
}

// TestEnvironmentsCreateFields: description, config and metadata are stored as given.
func TestEnvironmentsCreateFields(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := tcCreateEnv(t, h, `{"name":"n","description":"d é","config":{"type":"self_hosted","setup_script":"#!/bin/sh\necho hi"},"metadata":{"team":"a","cost":"b"}}`)
	if o["description"] != "d é" {
		t.Errorf("description %v", o["description"])
	}
	want := map[string]any{"type": "self_hosted", "setup_script": "#!/bin/sh\necho hi"}
	if !reflect.DeepEqual(o["config"], want) {
		t.Errorf("config %v, want %v", o["config"], want)
	}
	if !reflect.DeepEqual(o["metadata"], map[string]any{"team": "a", "cost": "b"}) {
		t.Errorf("metadata %v", o["metadata"])
	}
	// Self-hosted without setup_script.
	o = tcCreateEnv(t, h, `{"name":"n","config":{"type":"self_hosted"}}`)
	if !reflect.DeepEqual(o["config"], map[string]any{"type": "self_hosted"}) {
		t.Errorf("config %v", o["config"])
	}
	// metadata null on create is no metadata.
	o = tcCreateEnv(t, h, `{"name":"n","metadata":null,"description":null}`)
	if m, _ := o["metadata"].(map[string]any); len(m) != 0 || o["description"] != "" {
		t.Errorf("null metadata/description: %v %v", o["metadata"], o["description"])
	}
}

// TestEnvironmentsCreateName: name is required, a string, non-empty after trim and at most
// 255 characters; errors are 400 param name and create nothing.
func TestEnvironmentsCreateName(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bad := []string{
		`{}`,
		`{"name":null}`,
		`{"name":""}`,
		`{"name":"   "}`,
		`{"name":"\t\n "}`,
		`{"name":"` + tcRepeat("a", 256) + `"}`,
		`{"name":"` + tcRepeat("é", 256) + `"}`,
		`{"name":5}`,
		`{"name":true}`,
		`{"name":["x"]}`,
		`{"name":{"x":"y"}}`,
		`{"description":"no name"}`,
	}
	for _, b := range bad {
		r := h.do("POST", "/environments", b)
		tcWantErr(t, "create "+b[:min(len(b), 40)], r, 400, "invalid_request_error", "name")
	}
	if p := tcList(t, h, "/environments?include_archived=true"); len(p.Data) != 0 {
		t.Errorf("bad creates made %d environments", len(p.Data))
	}
	for _, name := range []string{tcRepeat("a", 255), tcRepeat("é", 255), " x ", "a"} {
		o := tcCreateEnv(t, h, jsonBody(map[string]any{"name": name}))
		if o["name"] != name {
			t.Errorf("name %q stored as %q", name, o["name"])
		}
	}
}

// TestEnvironmentsCreateConfig: config validation of API.md §2.
func TestEnvironmentsCreateConfig(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	script64k := tcRepeat("x", 64<<10)
	bad := []string{
		`null`,
		`{}`,
		`"cloud"`,
		`"self_hosted"`,
		`[]`,
		`[{"type":"cloud"}]`,
		`5`,
		`true`,
		`{"type":"nope"}`,
		`{"type":"Cloud"}`,
		`{"type":""}`,
		`{"type":5}`,
		`{"type":null}`,
		`{"setup_script":"x"}`,
		`{"type":"self_hosted","packages":{"apt":["curl"]}}`,
		`{"type":"self_hosted","networking":{"type":"limited"}}`,
		`{"type":"self_hosted","extra":1}`,
		`{"type":"self_hosted","setup_script":5}`,
		`{"type":"self_hosted","setup_script":"` + script64k + `x"}`,
		`{"type":"cloud","setup_script":"` + script64k + `x"}`,
		`{"type":"cloud","setup_script":["x"]}`,
		`{"type":"cloud","networking":{"type":"open"}}`,
		`{"type":"cloud","networking":"limited"}`,
		`{"type":"cloud","packages":{"apt":"curl"}}`,
		`{"type":"cloud","packages":{"pip":[1]}}`,
		`{"type":"cloud","packages":["curl"]}`,
	}
	for _, c := range bad {
		r := h.do("POST", "/environments", `{"name":"n","config":`+c+`}`)
		label := "config " + c[:min(len(c), 60)]
		if r.Status != 400 || tcErrOf(r).Error.Type != "invalid_request_error" {
			t.Errorf("%s: %d %s, want 400 invalid_request_error", label, r.Status, r.Body)
			continue
		}
		if p := tcErrOf(r).Error.Param; p == nil || (*p != "config" && !strings.HasPrefix(*p, "config.")) {
			t.Errorf("%s: param %v, want config or config.…", label, tcStr(p))
		}
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 0 {
		t.Errorf("bad configs created %d environments", len(p.Data))
	}

	// Accepted: setup_script of exactly 64 KiB, for both types.
	o := tcCreateEnv(t, h, `{"name":"n","config":{"type":"self_hosted","setup_script":"`+script64k+`"}}`)
	if cfg := o["config"].(map[string]any); cfg["setup_script"] != script64k || len(cfg) != 2 {
		t.Errorf("64 KiB self_hosted setup_script not stored")
	}
	// cloud with packages, networking and setup_script: stored.
	o = tcCreateEnv(t, h, `{"name":"n","config":{"type":"cloud","packages":{"apt":["curl","git"],"pip":["requests"],"npm":["left-pad"]},"networking":{"type":"limited"},"setup_script":"`+script64k+`"}}`)
	cfg := o["config"].(map[string]any)
	if cfg["type"] != "cloud" || cfg["setup_script"] != script64k {
		t.Errorf("cloud config %v", cfg["type"])
	}
	pk, _ := cfg["packages"].(map[string]any)
	for k, want := range map[string][]any{"apt": {"curl", "git"}, "pip": {"requests"}, "npm": {"left-pad"}} {
		if !reflect.DeepEqual(pk[k], want) {
			t.Errorf("packages.%s = %v, want %v", k, pk[k], want)
		}
	}
	if !reflect.DeepEqual(cfg["networking"], map[string]any{"type": "limited"}) {
		t.Errorf("networking %v", cfg["networking"])
	}
	o = tcCreateEnv(t, h, `{"name":"n","config":{"type":"cloud","networking":{"type":"unrestricted"}}}`)
	if !reflect.DeepEqual(o["config"].(map[string]any)["networking"], map[string]any{"type": "unrestricted"}) {
		t.Errorf("networking %v", o["config"])
	}
	// The stored config reads back the same.
	g := h.do("GET", "/environments/"+o["id"].(string), "")
	if !reflect.DeepEqual(g.obj(t)["config"], o["config"]) {
		t.Errorf("config reads back as %v, created %v", g.obj(t)["config"], o["config"])
	}
}

// TestEnvironmentsMetadataRules: metadata rules of API.md §1 on create and update.
func TestEnvironmentsMetadataRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key64, key65 := tcRepeat("k", 64), tcRepeat("k", 65)
	val512, val513 := tcRepeat("v", 512), tcRepeat("v", 513)
	bad := []struct {
		meta   string
		params []string
	}{
		{tcMetadata(17), []string{"metadata"}},
		{`{"k":5}`, []string{"metadata.k"}},
		{`{"k":true}`, []string{"metadata.k"}},
		{`{"k":{"a":"b"}}`, []string{"metadata.k"}},
		{`{"k":["a"]}`, []string{"metadata.k"}},
		{`{"ok":"v","k":1.5}`, []string{"metadata.k"}},
		{`{"` + key65 + `":"v"}`, []string{"metadata", "metadata." + key65}},
		{`{"":"v"}`, []string{"metadata", "metadata."}},
		{`{"k":"` + val513 + `"}`, []string{"metadata", "metadata.k"}},
		{`{"k":"` + tcRepeat("é", 513) + `"}`, []string{"metadata", "metadata.k"}},
		{`"x"`, []string{"metadata"}},
		{`["a"]`, []string{"metadata"}},
		{`5`, []string{"metadata"}},
	}
	for _, c := range bad {
		r := h.do("POST", "/environments", `{"name":"n","metadata":`+c.meta+`}`)
		tcWantErr(t, "create metadata "+c.meta[:min(len(c.meta), 50)], r, 400, "invalid_request_error", c.params...)
	}
	if p := tcList(t, h, "/environments"); len(p.Data) != 0 {
		t.Errorf("bad metadata created %d environments", len(p.Data))
	}
	// Limits themselves are fine.
	good := `{"` + key64 + `":"` + val512 + `","e":"","é":"` + tcRepeat("é", 512) + `"}`
	o := tcCreateEnv(t, h, `{"name":"n","metadata":`+good+`}`)
	if m := o["metadata"].(map[string]any); m[key64] != val512 || m["e"] != "" || len(m) != 3 {
		t.Errorf("metadata at the limits: %v", m)
	}
	o = tcCreateEnv(t, h, `{"name":"n","metadata":`+tcMetadata(16)+`}`)
	if m := o["metadata"].(map[string]any); len(m) != 16 {
		t.Errorf("16 keys: %d stored", len(m))
	}
	env := o["id"].(string)

	// Update: merge; null deletes; absent keys untouched; the 16-key limit is on the result.
	for _, c := range bad {
		r := h.do("POST", "/environments/"+env, `{"metadata":`+c.meta+`}`)
		tcWantErr(t, "update metadata "+c.meta[:min(len(c.meta), 50)], r, 400, "invalid_request_error", c.params...)
	}
	r := h.do("POST", "/environments/"+env, `{"metadata":{"new":"x"}}`)
	tcWantErr(t, "update to 17 keys", r, 400, "invalid_request_error", "metadata")
	r = h.do("POST", "/environments/"+env, `{"metadata":{"new":"x","k0":null}}`)
	wantStatus(t, r, 200)
	m := r.obj(t)["metadata"].(map[string]any)
	if len(m) != 16 || m["new"] != "x" || m["k0"] != nil || m["k1"] != "v" {
		t.Errorf("merge: %v", m)
	}
	r = h.do("POST", "/environments/"+env, `{"metadata":{"k1":"changed","absent":null}}`)
	wantStatus(t, r, 200)
	m = r.obj(t)["metadata"].(map[string]any)
	if len(m) != 16 || m["k1"] != "changed" || m["k2"] != "v" {
		t.Errorf("upsert: %v", m)
	}
	r = h.do("POST", "/environments/"+env, `{"name":"other"}`)
	if m2 := r.obj(t)["metadata"]; !reflect.DeepEqual(m2, any(m)) {
		t.Errorf("metadata changed by an update without metadata: %v", m2)
	}
	r = h.do("POST", "/environments/"+env, `{"metadata":null}`)
	if m2 := r.obj(t)["metadata"]; !reflect.DeepEqual(m2, any(m)) {
		t.Errorf("metadata changed by metadata: null: %v", m2)
	}
}

// TestEnvironmentsGet: GET by ID; unknown and malformed IDs are 404.
func TestEnvironmentsGet(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := tcCreateEnv(t, h, `{"name":"n","config":{"type":"self_hosted"},"metadata":{"a":"b"}}`)
	r := h.do("GET", "/environments/"+o["id"].(string), "")
	wantStatus(t, r, 200)
	if !reflect.DeepEqual(r.obj(t), o) {
		t.Errorf("GET %s, created %v", r.Body, o)
	}
	for _, id := range []string{"env_00000000000000000000000000000000", "env_ffffffffffffffffffffffffffffffff", "env_x", "x", "env_"} {
		tcWantErr(t, "GET "+id, h.do("GET", "/environments/"+id, ""), 404, "not_found_error")
	}
}

// TestEnvironmentsList: archived environments are listed only with include_archived=true;
// other values are 400.
func TestEnvironmentsList(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := tcCreateEnv(t, h, `{"name":"a"}`)["id"].(string)
	b := tcCreateEnv(t, h, `{"name":"b","config":{"type":"self_hosted"}}`)["id"].(string)
	c := tcCreateEnv(t, h, `{"name":"c"}`)["id"].(string)
	wantStatus(t, h.do("POST", "/environments/"+b+"/archive", ""), 200)
	tcWantPage(t, "default", tcList(t, h, "/environments"), []string{a, c}, false, nil)
	tcWantPage(t, "false", tcList(t, h, "/environments?include_archived=false"), []string{a, c}, false, nil)
	p := tcList(t, h, "/environments?include_archived=true")
	tcWantPage(t, "true", p, []string{a, b, c}, false, nil)
	if p.Data[1]["archived_at"] == nil || p.Data[1]["name"] != "b" {
		t.Errorf("archived environment listed as %v", p.Data[1])
	}
	// Objects in the list are the objects of GET.
	for _, d := range p.Data {
		g := h.do("GET", "/environments/"+d["id"].(string), "").obj(t)
		if !reflect.DeepEqual(g, d) {
			t.Errorf("listed %v, GET %v", d, g)
		}
	}
	for _, v := range []string{"yes", "maybe", "2", "truee"} {
		tcWantErr(t, "include_archived="+v, h.do("GET", "/environments?include_archived="+v, ""), 400, "invalid_request_error", "include_archived")
	}
}

// TestEnvironmentsUpdate: a partial update changes only the fields sent; config is
// replaced whole and may not change type; errors change nothing.
func TestEnvironmentsUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	created := tcCreateEnv(t, h, `{"name":"n","description":"d","config":{"type":"self_hosted","setup_script":"s"},"metadata":{"a":"1","b":"2"}}`)
	env := created["id"].(string)
	h.clock.Advance(90 * time.Second)
	later := tcTS(h.clock.Now())

	r := h.do("POST", "/environments/"+env, `{"name":"renamed"}`)
	wantStatus(t, r, 200)
	o := r.obj(t)
	if o["name"] != "renamed" || o["description"] != "d" || !reflect.DeepEqual(o["config"], created["config"]) ||
		!reflect.DeepEqual(o["metadata"], created["metadata"]) || o["created_at"] != created["created_at"] || o["updated_at"] != later {
		t.Errorf("name update: %s", r.Body)
	}
	r = h.do("POST", "/environments/"+env, `{"description":"new d"}`)
	wantStatus(t, r, 200)
	if o := r.obj(t); o["description"] != "new d" || o["name"] != "renamed" {
		t.Errorf("description update: %s", r.Body)
	}
	r = h.do("POST", "/environments/"+env, `{"config":{"type":"self_hosted"}}`)
	wantStatus(t, r, 200)
	if o := r.obj(t); !reflect.DeepEqual(o["config"], map[string]any{"type": "self_hosted"}) {
		t.Errorf("config replace: %v (setup_script must be gone)", o["config"])
	}
	r = h.do("POST", "/environments/"+env, `{"config":{"type":"self_hosted","setup_script":"t"}}`)
	wantStatus(t, r, 200)
	if o := r.obj(t); !reflect.DeepEqual(o["config"], map[string]any{"type": "self_hosted", "setup_script": "t"}) {
		t.Errorf("config replace: %v", o["config"])
	}
	r = h.do("POST", "/environments/"+env, `{"metadata":{"b":null,"c":"3"}}`)
	wantStatus(t, r, 200)
	if o := r.obj(t); !reflect.DeepEqual(o["metadata"], map[string]any{"a": "1", "c": "3"}) {
		t.Errorf("metadata merge: %v", o["metadata"])
	}
	current := h.do("GET", "/environments/"+env, "")

	// Errors, each without effect.
	h.clock.Advance(time.Minute)
	bad := []struct {
		body   string
		status int
		params []string
	}{
		{`{"config":{"type":"cloud"}}`, 400, []string{"config", "config.type"}},
		{`{"config":{"type":"cloud","packages":{"apt":["x"]}}}`, 400, []string{"config", "config.type"}},
		{`{"config":null}`, 400, []string{"config"}},
		{`{"config":{}}`, 400, []string{"config"}},
		{`{"config":"self_hosted"}`, 400, []string{"config"}},
		{`{"config":{"type":"self_hosted","extra":1}}`, 400, []string{"config", "config.extra"}},
		{`{"name":""}`, 400, []string{"name"}},
		{`{"name":"  "}`, 400, []string{"name"}},
		{`{"name":null}`, 400, []string{"name"}},
		{`{"name":5}`, 400, []string{"name"}},
		{`{"name":"` + tcRepeat("n", 256) + `"}`, 400, []string{"name"}},
		{`{"description":5}`, 400, []string{"description"}},
		{`{"metadata":{"a":5}}`, 400, []string{"metadata.a"}},
		{`{"name":"ok","metadata":{"a":5}}`, 400, []string{"metadata.a"}},
		{`{"name":"ok","config":{"type":"cloud"}}`, 400, []string{"config", "config.type"}},
	}
	for _, c := range bad {
		tcWantErr(t, "update "+c.body[:min(len(c.body), 50)], h.do("POST", "/environments/"+env, c.body), c.status, "invalid_request_error", c.params...)
	}
	if after := h.do("GET", "/environments/"+env, ""); !bytes.Equal(after.Body, current.Body) {
		t.Errorf("failed updates changed the environment:\n%s\n%s", current.Body, after.Body)
	}
	// A cloud environment cannot become self_hosted either.
	cloud := h.env(false)
	tcWantErr(t, "cloud → self_hosted", h.do("POST", "/environments/"+cloud, `{"config":{"type":"self_hosted"}}`), 400, "invalid_request_error", "config", "config.type")
	r = h.do("POST", "/environments/"+cloud, `{"config":{"type":"cloud","networking":{"type":"limited"}}}`)
	wantStatus(t, r, 200)
	if n := r.obj(t)["config"].(map[string]any)["networking"]; !reflect.DeepEqual(n, map[string]any{"type": "limited"}) {
		t.Errorf("cloud config replace: %v", n)
	}
	for _, id := range []string{"env_00000000000000000000000000000000", "env_bad"} {
		tcWantErr(t, "update "+id, h.do("POST", "/environments/"+id, `{"name":"x"}`), 404, "not_found_error")
	}
}

// TestEnvironmentsArchive: archive sets archived_at once (idempotent); an archived
// environment takes no new sessions but its work can still be drained.
func TestEnvironmentsArchive(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	h.clock.Advance(time.Minute)
	at := tcTS(h.clock.Now())
	r := h.do("POST", "/environments/"+env+"/archive", "{}\n")
	wantStatus(t, r, 200)
	o := r.obj(t)
	if o["archived_at"] != at || o["id"] != env || o["type"] != "environment" {
		t.Errorf("archive: %s (want archived_at %s)", r.Body, at)
	}
	h.clock.Advance(time.Hour)
	r2 := h.do("POST", "/environments/"+env+"/archive", "")
	wantStatus(t, r2, 200)
	if r2.obj(t)["archived_at"] != at || !bytes.Equal(r.Body, r2.Body) {
		t.Errorf("second archive: %s, want %s", r2.Body, r.Body)
	}
	if g := h.do("GET", "/environments/"+env, "").obj(t); g["archived_at"] != at {
		t.Errorf("GET after archive: archived_at %v", g["archived_at"])
	}

	// No new sessions: 400 param environment_id, nothing created.
	r = h.do("POST", "/sessions", `{"agent":"a","environment_id":"`+env+`"}`)
	tcWantErr(t, "session in archived env", r, 400, "invalid_request_error", "environment_id")
	if p := tcList(t, h, "/sessions?include_archived=true"); len(p.Data) != 1 {
		t.Errorf("%d sessions, want 1", len(p.Data))
	}
	// Existing work keeps working: the queued item is polled, acked and heartbeated.
	w := h.poll(env, "w1")
	if w == nil || w.Data["id"] != sess {
		t.Fatalf("poll in archived env: %+v", w)
	}
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), ""), 200)
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/heartbeat"), ""), 200)
	if g := h.do("GET", "/sessions/"+sess, "").obj(t); g["status"] != "running" {
		t.Errorf("session status %v", g["status"])
	}

	for _, id := range []string{"env_00000000000000000000000000000000", "env_bad"} {
		tcWantErr(t, "archive "+id, h.do("POST", "/environments/"+id+"/archive", ""), 404, "not_found_error")
	}
}

// TestEnvironmentsDelete: DELETE is admin only, 409 conflict_error while a session
// references the environment, then environment_deleted and 404 afterwards.
func TestEnvironmentsDelete(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	member := h.token(api.RoleMember, "")
	env := h.env(true)
	sess := h.session(env)
	archivedSess := h.session(env)
	wantStatus(t, h.do("POST", "/sessions/"+archivedSess+"/archive", ""), 200)

	// A worker of this environment may not delete it either.
	worker := h.token(api.RoleWorker, env)
	for _, tok := range []string{member, worker} {
		tcWantErr(t, "non-admin delete", h.do("DELETE", "/environments/"+env, "", as(tok)), 403, "permission_error")
	}
	wantStatus(t, h.do("GET", "/environments/"+env, ""), 200)

	r := h.do("DELETE", "/environments/"+env, "")
	tcWantErr(t, "delete referenced", r, 409, "conflict_error")
	wantStatus(t, h.do("GET", "/environments/"+env, ""), 200)
	wantStatus(t, h.do("GET", "/sessions/"+sess, ""), 200)

	wantStatus(t, h.do("DELETE", "/sessions/"+sess, ""), 200)
	// The archived session still references it.
	tcWantErr(t, "delete referenced by archived", h.do("DELETE", "/environments/"+env, ""), 409, "conflict_error")
	wantStatus(t, h.do("DELETE", "/sessions/"+archivedSess, ""), 200)

	// Members still may not, now that it is free.
	tcWantErr(t, "member delete free env", h.do("DELETE", "/environments/"+env, "", as(member)), 403, "permission_error")
	wantStatus(t, h.do("GET", "/environments/"+env, ""), 200)

	r = h.do("DELETE", "/environments/"+env, "")
	wantStatus(t, r, 200)
	want := map[string]any{"id": env, "type": "environment_deleted"}
	if got := r.obj(t); !reflect.DeepEqual(got, want) {
		t.Errorf("delete: %v, want %v", got, want)
	}
	tcWantErr(t, "GET deleted", h.do("GET", "/environments/"+env, ""), 404, "not_found_error")
	tcWantErr(t, "DELETE deleted", h.do("DELETE", "/environments/"+env, ""), 404, "not_found_error")
	tcWantErr(t, "update deleted", h.do("POST", "/environments/"+env, `{"name":"x"}`), 404, "not_found_error")
	tcWantErr(t, "archive deleted", h.do("POST", "/environments/"+env+"/archive", ""), 404, "not_found_error")
	tcWantErr(t, "work of deleted", h.do("GET", "/environments/"+env+"/work", ""), 404, "not_found_error")
	tcWantErr(t, "session in deleted", h.do("POST", "/sessions", `{"agent":"a","environment_id":"`+env+`"}`), 404, "not_found_error")
	if p := tcList(t, h, "/environments?include_archived=true"); len(p.Data) != 0 {
		t.Errorf("deleted environment still listed: %v", p.ids())
	}
	for _, id := range []string{"env_00000000000000000000000000000000", "env_bad"} {
		tcWantErr(t, "DELETE "+id, h.do("DELETE", "/environments/"+id, ""), 404, "not_found_error")
	}

	// A cloud environment without sessions deletes at once; a fresh one with a session
	// in another environment is not referenced.
	other := h.env(false)
	h.session(h.env(false))
	r = h.do("DELETE", "/environments/"+other, "")
	wantStatus(t, r, 200)
	if got := r.obj(t); got["id"] != other || got["type"] != "environment_deleted" {
		t.Errorf("delete: %v", got)
	}
}
