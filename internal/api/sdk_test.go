package api_test

// Requests shaped exactly like the official Go and Python SDKs send them (CLIENTS.md §1,
// §3, §4), and the answers' key sets and order compared with the responses recorded by
// the Go SDK's wkContract tests (spec/contracts/qoder-sdk-contracts.json,
// EnvironmentWorkService entries).

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
)

// wkSDKClient sends requests with exactly the headers an SDK sends: nothing is added but
// what net/http itself writes (Host, Content-Length, Accept-Encoding).
type wkSDKClient struct {
	h       *harness
	token   string
	headers [][2]string // sent on every request, in order, with Add (repeats allowed)
}

// goSDK is the Go SDK (CLIENTS.md §1): Accept, User-Agent Qoder/Go, X-Qoder-Retry-Count,
// the six platform headers, Authorization, and one x-qoder-beta line per beta.
func wkGoSDK(h *harness, token string) *wkSDKClient {
	return &wkSDKClient{h: h, token: token, headers: [][2]string{
		{"Accept", "application/json"},
		{"User-Agent", "Qoder/Go"},
		{"X-Qoder-Retry-Count", "0"},
		{"X-Qoder-Lang", "go"},
		{"X-Qoder-Package-Version", "0.1.0"},
		{"X-Qoder-OS", "linux"},
		{"X-Qoder-Arch", "amd64"},
		{"X-Qoder-Runtime", "go"},
		{"X-Qoder-Runtime-Version", "go1.26.0"},
		{"x-qoder-beta", "environments-2026-05-01"},
		{"x-qoder-beta", "work-2026-06-01"},
	}}
}

// pythonSDK is the Python SDK (CLIENTS.md §4): qca-python User-Agent, the platform
// headers with Lang python, X-Qoder-Timeout 60, and x-qoder-beta joined with commas.
func wkPythonSDK(h *harness, token string) *wkSDKClient {
	return &wkSDKClient{h: h, token: token, headers: [][2]string{
		{"Accept", "application/json"},
		{"User-Agent", "qca-python/0.3.0"},
		{"X-Qoder-Lang", "python"},
		{"X-Qoder-Package-Version", "0.3.0"},
		{"X-Qoder-OS", "Linux"},
		{"X-Qoder-Arch", "x86_64"},
		{"X-Qoder-Runtime", "CPython"},
		{"X-Qoder-Runtime-Version", "3.12.3"},
		{"X-Qoder-Retry-Count", "0"},
		{"X-Qoder-Timeout", "60"},
		{"x-qoder-beta", "environments-2026-05-01,work-2026-06-01"},
	}}
}

// send sends one request. body nil means no body at all (no Content-Type, Content-Length
// 0); otherwise the bytes are sent as they are with Content-Type: application/json.
// extra headers are added after the client's.
func (c *wkSDKClient) send(method, path, rawQuery string, body []byte, extra ...[2]string) *response {
	t := c.h.t
	t.Helper()
	u := c.h.url + api.BasePath + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for _, kv := range c.headers {
		req.Header.Add(kv[0], kv[1])
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, kv := range extra {
		req.Header.Add(kv[0], kv[1])
	}
	res, err := c.h.httpClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	r := &response{Status: res.StatusCode, Header: res.Header, Body: b}
	// Every answer: x-request-id, JSON content type, no x-should-retry on success, the
	// OpenAPI document.
	c.h.check(method, req.URL, r)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if !json.Valid(r.Body) {
		t.Errorf("%s %s: body is not JSON: %q", method, path, r.Body)
	}
	return r
}

// wkContract is one recorded SDK response.
type wkContract struct {
	Service  string          `json:"service"`
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

// workContracts loads the EnvironmentWorkService responses by name, from the spec's
// fixture, or from the copy of its environment and work entries kept in
// internal/openapi/testdata when the spec directory is not there.
func wkContracts(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("/work/shared/spec/contracts/qoder-sdk-contracts.json")
	if err != nil {
		t.Logf("spec fixture not readable (%v); using internal/openapi/testdata/contracts.json", err)
		if b, err = os.ReadFile("../openapi/testdata/contracts.json"); err != nil {
			t.Fatalf("read contracts: %v", err)
		}
	}
	var all []wkContract
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatalf("decode contracts: %v", err)
	}
	out := map[string]json.RawMessage{}
	for _, c := range all {
		if c.Service == "EnvironmentWorkService" {
			out[c.Name] = c.Response
		}
	}
	for _, name := range []string{"Get", "Update", "List", "Ack", "Heartbeat", "Poll", "Stats", "Stop"} {
		if _, ok := out[name]; !ok {
			t.Fatalf("no EnvironmentWorkService %s contract", name)
		}
	}
	return out
}

// sameShape asserts that got has the wkContract's keys in the wkContract's order, and the
// same JSON kind for every value that is not null in either; nested objects ("data") are
// compared the same way.
func wkSameShape(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	gk, wk := wkKeyOrder(t, got), wkKeyOrder(t, want)
	if !slices.Equal(gk, wk) {
		t.Errorf("%s: keys %v, wkContract has %v", what, gk, wk)
		return
	}
	var g, w map[string]json.RawMessage
	_ = json.Unmarshal(got, &g)
	_ = json.Unmarshal(want, &w)
	for _, k := range wk {
		gv, wv := strings.TrimSpace(string(g[k])), strings.TrimSpace(string(w[k]))
		if gv == "null" || wv == "null" {
			continue
		}
		if wkKind(gv) != wkKind(wv) {
			t.Errorf("%s: %s is %s, wkContract has %s", what, k, gv, wv)
			continue
		}
		if wkKind(gv) == '{' && k != "metadata" {
			wkSameShape(t, what+"."+k, json.RawMessage(gv), json.RawMessage(wv))
		}
	}
}

// kind is the first character of a JSON value, '0' for numbers.
func wkKind(v string) byte {
	switch c := v[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		return '0'
	default:
		return c
	}
}

// TestSDKGoWorker runs a worker's whole loop with the Go SDK's requests: poll with
// Worker-ID, ack with {}\n, heartbeat POSTs without body or Content-Type, echo of
// last_heartbeat with %3A, metadata update, stop with {} (no newline) twice, and stats,
// get and list; every answer is compared with the recorded wkContract.
func TestSDKGoWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	contracts := wkContracts(t)
	env := h.env(true)
	sess := h.wkSessionWith(`{"agent":"agent_x","environment_id":"` + env + `","metadata":{"job":"daily-report"}}`)
	c := wkGoSDK(h, h.token(api.RoleWorker, env))
	base := "/environments/" + env + "/work"

	r := c.send("GET", base+"/stats", "", nil)
	wantStatus(t, r, 200)
	wkSameShape(t, "stats", r.Body, contracts["Stats"])

	// Poll: url.Values encoding, keys sorted; Worker-ID set.
	q := url.Values{"block_ms": {"999"}, "reclaim_older_than_ms": {"5000"}}.Encode()
	r = c.send("GET", base+"/poll", q, nil, [2]string{"Worker-ID", "byoc-worker-01"})
	wantStatus(t, r, 200)
	if string(r.Body) == "null" {
		t.Fatal("poll answered null with a queued item")
	}
	wkSameShape(t, "poll", r.Body, contracts["Get"])
	w := wkWorkOf(t, r)
	if w.Data["id"] != sess || w.State != "queued" || w.Metadata["job"] != "daily-report" {
		t.Fatalf("polled %+v", w)
	}
	item := base + "/" + url.PathEscape(w.ID)

	// Ack: a bare POST is {} and a newline, with Content-Type.
	r = c.send("POST", item+"/ack", "", []byte("{}\n"))
	wantStatus(t, r, 200)
	wkSameShape(t, "ack", r.Body, contracts["Ack"])
	if wkWorkOf(t, r).State != "starting" {
		t.Errorf("ack: %s", r.Body)
	}

	// Heartbeat: query only, no body, no Content-Type.
	q = url.Values{"desired_ttl_seconds": {"60"}, "expected_last_heartbeat": {"NO_HEARTBEAT"}}.Encode()
	r = c.send("POST", item+"/heartbeat", q, nil)
	wantStatus(t, r, 200)
	wkSameShape(t, "heartbeat", r.Body, contracts["Heartbeat"])
	var hb wkHeartbeatAnswer
	r.decode(t, &hb)
	if hb.State != "active" || !hb.LeaseExtended || hb.TTLSeconds != 60 {
		t.Errorf("heartbeat: %s", r.Body)
	}

	// The echo, exactly as returned, percent-encoded by url.Values (":" → "%3A").
	q = url.Values{"desired_ttl_seconds": {"60"}, "expected_last_heartbeat": {hb.LastHeartbeat}}.Encode()
	if !strings.Contains(q, "%3A") {
		t.Fatalf("query %s does not encode ':' as %%3A", q)
	}
	h.clock.Advance(5*time.Second + 120394*time.Microsecond) // a fractional last_heartbeat
	r = c.send("POST", item+"/heartbeat", q, nil)
	wantStatus(t, r, 200)
	r.decode(t, &hb)
	if !strings.Contains(hb.LastHeartbeat, ".120394") {
		t.Errorf("last_heartbeat %s, want microseconds .120394", hb.LastHeartbeat)
	}
	// A stale echo: 412, not retried by the SDK (a POST, below 500, not 429).
	r = c.send("POST", item+"/heartbeat", q, nil)
	wkWantErrorType(t, r, 412, "precondition_failed_error")
	if r.Header.Get("x-should-retry") == "true" {
		t.Errorf("412 with x-should-retry: true")
	}

	// Metadata update: the marshaller's JSON, no newline.
	r = c.send("POST", item, "", []byte(`{"metadata":{"worker":"byoc-worker-01"}}`))
	wantStatus(t, r, 200)
	wkSameShape(t, "update", r.Body, contracts["Update"])
	if m := wkWorkOf(t, r).Metadata; !reflect.DeepEqual(m, map[string]string{"job": "daily-report", "worker": "byoc-worker-01"}) {
		t.Errorf("metadata %v", m)
	}

	r = c.send("GET", item, "", nil)
	wantStatus(t, r, 200)
	wkSameShape(t, "get", r.Body, contracts["Get"])

	// List: page keys and the item's keys.
	r = c.send("GET", base, url.Values{"limit": {"20"}}.Encode(), nil)
	wantStatus(t, r, 200)
	wkSameShape(t, "list", r.Body, contracts["List"])
	var page, cpage struct {
		Data []json.RawMessage `json:"data"`
	}
	r.decode(t, &page)
	_ = json.Unmarshal(contracts["List"], &cpage)
	if len(page.Data) != 1 {
		t.Fatalf("list: %s", r.Body)
	}
	wkSameShape(t, "list data[0]", page.Data[0], cpage.Data[0])

	// Stop: {} without newline → stopping; heartbeat reports it; stop again → stopped.
	r = c.send("POST", item+"/stop", "", []byte("{}"))
	wantStatus(t, r, 200)
	wkSameShape(t, "stop", r.Body, contracts["Stop"])
	if wkWorkOf(t, r).State != "stopping" {
		t.Errorf("stop: %s", r.Body)
	}
	q = url.Values{"expected_last_heartbeat": {hb.LastHeartbeat}}.Encode()
	r = c.send("POST", item+"/heartbeat", q, nil)
	wantStatus(t, r, 200)
	r.decode(t, &hb)
	if hb.State != "stopping" {
		t.Errorf("heartbeat after stop: %s", r.Body)
	}
	r = c.send("POST", item+"/stop", "", []byte(`{"force":false}`))
	wantStatus(t, r, 200)
	if wkWorkOf(t, r).State != "stopped" {
		t.Errorf("confirming stop: %s", r.Body)
	}

	// No work: null, as recorded; a retried GET (X-Qoder-Retry-Count 1) is the same.
	for _, retry := range []string{"0", "1", "2"} {
		c.headers[2][1] = retry
		r = c.send("GET", base+"/poll", "", nil, [2]string{"Worker-ID", "byoc-worker-01"})
		wantStatus(t, r, 200)
		if string(r.Body) != "null" || string(contracts["Poll"]) != "null" {
			t.Errorf("empty poll: %q, wkContract %s", r.Body, contracts["Poll"])
		}
	}

	// Errors are envelopes the SDK reads type and message from, with x-request-id.
	r = c.send("POST", item+"/ack", "", []byte("{}\n"))
	wkWantErrorType(t, r, 409, "invalid_request_error")
	if r.Header.Get("x-request-id") == "" {
		t.Errorf("409 without x-request-id")
	}
}

// TestSDKPythonWorker runs the same loop with the Python SDK's requests: {} bodies on
// every POST (heartbeat included), qoder-workspace-id on get/update/stats/stop,
// comma-joined x-qoder-beta, Python's strict answer types, and a DELETE with {}.
func TestSDKPythonWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	contracts := wkContracts(t)
	env := h.env(true)
	sess := h.session(env)
	c := wkPythonSDK(h, h.token(api.RoleWorker, env))
	ws := [2]string{"qoder-workspace-id", "wrk_0123"}
	base := "/environments/" + env + "/work"

	r := c.send("GET", base+"/stats", "", nil, ws)
	wantStatus(t, r, 200)
	wkSameShape(t, "stats", r.Body, contracts["Stats"])

	r = c.send("GET", base+"/poll", "block_ms=500", nil, [2]string{"Worker-ID", "py-worker"})
	wantStatus(t, r, 200)
	w := wkWorkOf(t, r)
	if w.Data["id"] != sess {
		t.Fatalf("polled %s", r.Body)
	}
	item := base + "/" + w.ID

	r = c.send("POST", item+"/ack", "", []byte("{}"))
	wantStatus(t, r, 200)
	wkStrictWork(t, r)

	r = c.send("POST", item+"/heartbeat", "expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=30", []byte("{}"))
	wantStatus(t, r, 200)
	wkStrictHeartbeat(t, r)
	var hb wkHeartbeatAnswer
	r.decode(t, &hb)
	if hb.State != "active" || hb.TTLSeconds != 30 {
		t.Errorf("heartbeat: %s", r.Body)
	}

	// The echo as a string, encoded by httpx; then as a parsed datetime's isoformat,
	// whose offset is +00:00 (encoded %2B00%3A00).
	h.clock.Advance(1500 * time.Millisecond)
	r = c.send("POST", item+"/heartbeat", "expected_last_heartbeat="+url.QueryEscape(hb.LastHeartbeat), []byte("{}"))
	wantStatus(t, r, 200)
	r.decode(t, &hb)
	iso := strings.TrimSuffix(hb.LastHeartbeat, "Z") + "+00:00"
	q := "expected_last_heartbeat=" + url.QueryEscape(iso)
	if !strings.Contains(q, "%2B00%3A00") {
		t.Fatalf("query %s", q)
	}
	h.clock.Advance(time.Millisecond)
	r = c.send("POST", item+"/heartbeat", q, []byte("{}"))
	wantStatus(t, r, 200)
	wkStrictHeartbeat(t, r)

	r = c.send("POST", item, "", []byte(`{"metadata":{"worker":"py-worker","gone":null}}`), ws)
	wantStatus(t, r, 200)
	wkStrictWork(t, r)
	wkSameShape(t, "update", r.Body, contracts["Update"])

	r = c.send("GET", item, "", nil, ws)
	wantStatus(t, r, 200)
	wkStrictWork(t, r)

	// force=None is sent as null: graceful.
	r = c.send("POST", item+"/stop", "", []byte(`{"force": null}`), ws)
	wantStatus(t, r, 200)
	if wkWorkOf(t, r).State != "stopping" {
		t.Errorf("stop with force null: %s", r.Body)
	}
	r = c.send("POST", item+"/stop", "", []byte(`{"force": true}`), ws)
	wantStatus(t, r, 200)
	wkStrictWork(t, r)
	if wkWorkOf(t, r).State != "stopped" {
		t.Errorf("forced stop: %s", r.Body)
	}

	// A heartbeat on the stopped item: 409 (the SDK's ConflictError).
	r = c.send("POST", item+"/heartbeat", "", []byte("{}"))
	wkWantErrorType(t, r, 409, "invalid_request_error")

	// DELETE with a {} body, as Python sends it (members only: the admin token).
	admin := wkPythonSDK(h, h.admin)
	s2 := h.session(env)
	r = admin.send("DELETE", "/sessions/"+s2, "", []byte("{}"))
	wantStatus(t, r, 200)
	for _, it := range h.wkItemsOf(env, s2) {
		if it.State != "stopped" {
			t.Errorf("item of the deleted session: %s", it.State)
		}
	}
}

// strictWork checks a work answer the way Python's pydantic models do: type is the literal
// "work", state a known state, metadata values strings, timestamps strings or null.
func wkStrictWork(t *testing.T, r *response) {
	t.Helper()
	var m map[string]any
	r.decode(t, &m)
	if m["type"] != "work" {
		t.Errorf("type %v, want work", m["type"])
	}
	if s, _ := m["state"].(string); !slices.Contains([]string{"queued", "starting", "active", "stopping", "stopped"}, s) {
		t.Errorf("state %v", m["state"])
	}
	meta, ok := m["metadata"].(map[string]any)
	if !ok {
		t.Errorf("metadata %v is not an object", m["metadata"])
	}
	for k, v := range meta {
		if _, ok := v.(string); !ok {
			t.Errorf("metadata.%s = %v, not a string", k, v)
		}
	}
	for _, k := range wkStampKeys {
		if v, ok := m[k]; !ok {
			t.Errorf("%s missing", k)
		} else if _, isStr := v.(string); v != nil && !isStr {
			t.Errorf("%s = %v, want a string or null", k, v)
		}
	}
	data, _ := m["data"].(map[string]any)
	if data["type"] != "session" {
		t.Errorf("data %v", m["data"])
	}
}

// strictHeartbeat checks a heartbeat answer as pydantic would: type literal, ttl_seconds an
// integer, lease_extended a boolean.
func wkStrictHeartbeat(t *testing.T, r *response) {
	t.Helper()
	var m map[string]json.RawMessage
	r.decode(t, &m)
	if string(m["type"]) != `"work_heartbeat"` {
		t.Errorf("type %s", m["type"])
	}
	if v := string(m["ttl_seconds"]); v == "" || strings.ContainsAny(v, ".eE\"") {
		t.Errorf("ttl_seconds %s, want an integer", v)
	}
	if v := string(m["lease_extended"]); v != "true" && v != "false" {
		t.Errorf("lease_extended %s, want a boolean", v)
	}
	if v := string(m["last_heartbeat"]); !strings.HasPrefix(v, `"`) {
		t.Errorf("last_heartbeat %s, want a string", v)
	}
}

// TestSDKHeaderVariants: the official clients' header variants are all accepted on the
// work endpoints: repeated and comma-joined x-qoder-beta, qoder-workspace-id present or
// absent, X-Qoder-Timeout, Idempotency-Key absent, unknown anthropic-* headers.
func TestSDKHeaderVariants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	tok := h.token(api.RoleWorker, env)
	for _, c := range []*wkSDKClient{wkGoSDK(h, tok), wkPythonSDK(h, tok)} {
		for _, extra := range [][][2]string{
			nil,
			{{"qoder-workspace-id", "wrk_1"}},
			{{"x-qoder-beta", "a"}, {"x-qoder-beta", "b,c"}},
			{{"anthropic-version", "2023-06-01"}, {"anthropic-beta", "x"}},
			{{"X-Qoder-Timeout", "600"}},
		} {
			w := h.queuedItem(env)
			item := "/environments/" + env + "/work/" + w.ID
			wantStatus(t, c.send("GET", item, "", nil, extra...), 200)
			wantStatus(t, c.send("POST", item+"/ack", "", []byte("{}\n"), extra...), 200)
			wantStatus(t, c.send("POST", item+"/heartbeat", "expected_last_heartbeat=NO_HEARTBEAT", nil, extra...), 200)
			wantStatus(t, c.send("POST", item+"/stop", "", []byte("{}"), extra...), 200)
			wantStatus(t, c.send("GET", "/environments/"+env+"/work/stats", "", nil, extra...), 200)
			if got := h.work(env, w.ID); got.State != "stopping" {
				t.Errorf("%v: state %s, want stopping", extra, got.State)
			}
		}
	}
}
