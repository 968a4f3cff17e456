package api_test

// HTTP tests of the work endpoints (API.md §4): the transition table, every error row,
// the ack Worker-ID rules (§4.6), heartbeats (§4.7), stop (§4.8), metadata updates (§4.5),
// the list filter (§4.1) and the effects of session operations on work (§3).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
)

// wkTimeLayout is API.md §1's timestamp layout.
const wkTimeLayout = "2006-01-02T15:04:05.999999Z07:00"

// ts writes t as the API does.
func wkTS(t time.Time) string { return t.UTC().Format(wkTimeLayout) }

// The keys of the served objects, in the order API.md gives them.
var (
	wkWorkKeys      = []string{"id", "type", "environment_id", "data", "state", "created_at", "acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at", "metadata"}
	wkHeartbeatKeys = []string{"type", "last_heartbeat", "lease_extended", "state", "ttl_seconds"}
	wkStatsKeys     = []string{"type", "depth", "pending", "oldest_queued_at", "workers_polling"}
)

// keyOrder returns the keys of the JSON object raw, in the order they appear.
func wkKeyOrder(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", raw)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("bad JSON object %s: %v", raw, err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("bad JSON object %s: %v", raw, err)
		}
	}
	return keys
}

// wantKeys asserts that the body is a JSON object with exactly keys, in that order.
func wkWantKeys(t *testing.T, what string, raw []byte, keys []string) {
	t.Helper()
	if got := wkKeyOrder(t, raw); !slices.Equal(got, keys) {
		t.Errorf("%s: keys %v, want %v", what, got, keys)
	}
}

// wantErrorType asserts status and error.type, whatever error.param says.
func wkWantErrorType(t *testing.T, r *response, status int, errType string) {
	t.Helper()
	var env struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &env)
	if r.Status != status || env.Error.Type != errType {
		t.Errorf("got %d %s, want %d %s; body %s", r.Status, env.Error.Type, status, errType, r.Body)
	}
}

// addHeader adds a header line (repeated header lines, as the Go SDK sends x-qoder-beta).
func wkAddHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Add(k, v) } }

// try is do for goroutines: it never calls t.Fatal (only the checks' t.Errorf), and
// returns transport errors.
func (h *harness) wkTry(method, path, body string, opts ...reqOpt) (*response, error) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+api.BasePath+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.admin)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	res, err := h.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	r := &response{Status: res.StatusCode, Header: res.Header, Body: b}
	h.check(method, req.URL, r)
	return r, nil
}

// workOf decodes a work object answer.
func wkWorkOf(t *testing.T, r *response) workJSON {
	t.Helper()
	var w workJSON
	r.decode(t, &w)
	return w
}

// wkHeartbeatAnswer is a heartbeat answer (API.md §4.7).
type wkHeartbeatAnswer struct {
	Type          string `json:"type"`
	LastHeartbeat string `json:"last_heartbeat"`
	LeaseExtended bool   `json:"lease_extended"`
	State         string `json:"state"`
	TTLSeconds    int    `json:"ttl_seconds"`
}

// heartbeat sends a heartbeat with the given raw query ("" for none) and no body.
func (h *harness) wkHeartbeat(env, id, query string, opts ...reqOpt) *response {
	h.t.Helper()
	p := workPath(env, id, "/heartbeat")
	if query != "" {
		p += "?" + query
	}
	return h.do("POST", p, "", opts...)
}

// beat sends a heartbeat that must succeed and returns its answer.
func (h *harness) wkBeat(env, id, query string) wkHeartbeatAnswer {
	h.t.Helper()
	r := h.wkHeartbeat(env, id, query)
	wantStatus(h.t, r, 200)
	var a wkHeartbeatAnswer
	r.decode(h.t, &a)
	return a
}

// expect is the query of a heartbeat expecting last (percent-encoded like the SDKs do).
func wkExpect(last string) string { return "expected_last_heartbeat=" + url.QueryEscape(last) }

// sessionWith creates a session in env from a full request body and returns its ID.
func (h *harness) wkSessionWith(body string) string {
	h.t.Helper()
	r := h.do("POST", "/sessions", body)
	wantStatus(h.t, r, 201)
	return r.str(h.t, "id")
}

// list returns every item of env matching the raw query (e.g. "state=queued").
func (h *harness) wkList(env, query string) []workJSON {
	h.t.Helper()
	r := h.do("GET", "/environments/"+env+"/work?limit=100&"+query, "")
	wantStatus(h.t, r, 200)
	var page struct {
		Data    []workJSON `json:"data"`
		HasMore bool       `json:"has_more"`
	}
	r.decode(h.t, &page)
	if page.HasMore {
		h.t.Fatalf("more than 100 items in %s", env)
	}
	return page.Data
}

// itemsOf returns the items of env that belong to session sess, in ID order.
func (h *harness) wkItemsOf(env, sess string) []workJSON {
	h.t.Helper()
	var out []workJSON
	for _, w := range h.wkList(env, "") {
		if w.Data["id"] == sess {
			out = append(out, w)
		}
	}
	return out
}

// sessionStatus reads a session's status.
func (h *harness) wkSessionStatus(sess string) string {
	h.t.Helper()
	r := h.do("GET", "/sessions/"+sess, "")
	wantStatus(h.t, r, 200)
	return r.str(h.t, "status")
}

func wkNull(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

// stamps are an item's timestamps by key.
func wkStamps(w workJSON) map[string]*string {
	return map[string]*string{
		"created_at": w.CreatedAt, "acknowledged_at": w.AcknowledgedAt, "started_at": w.StartedAt,
		"latest_heartbeat_at": w.LatestHeartbeatAt, "stop_requested_at": w.StopRequestedAt, "stopped_at": w.StoppedAt,
	}
}

var wkStampKeys = []string{"created_at", "acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at"}

// TestWorkTransitionTable drives every cell of API.md §4's table through HTTP: each
// operation on an item in each state, the status, the state reached, and which timestamps
// the operation set (to the clock's now) while all others stay as they were.
func TestWorkTransitionTable(t *testing.T) {
	t.Parallel()
	type cell struct {
		status int      // 200, or 409 invalid_request_error
		state  string   // state afterwards
		set    []string // timestamps set to now by the operation
	}
	ok := func(state string, set ...string) cell { return cell{200, state, set} }
	conflict := func(state string) cell { return cell{409, state, nil} }

	ops := []struct {
		name  string
		do    func(h *harness, env, id string) *response
		cells map[string]cell
	}{
		{
			name: "poll",
			do: func(h *harness, env, _ string) *response {
				return h.do("GET", "/environments/"+env+"/work/poll", "", header("Worker-ID", "w1"))
			},
			// "delivered (stays queued)"; every other state is never delivered.
			cells: map[string]cell{
				"queued": ok("queued"), "starting": ok("starting"), "active": ok("active"),
				"stopping": ok("stopping"), "stopped": ok("stopped"),
			},
		},
		{
			name: "ack",
			do: func(h *harness, env, id string) *response {
				return h.do("POST", workPath(env, id, "/ack"), "{}\n")
			},
			cells: map[string]cell{
				"queued": ok("starting", "acknowledged_at"), "starting": ok("starting"), "active": ok("active"),
				"stopping": conflict("stopping"), "stopped": conflict("stopped"),
			},
		},
		{
			name: "heartbeat",
			do: func(h *harness, env, id string) *response {
				return h.do("POST", workPath(env, id, "/heartbeat"), "")
			},
			cells: map[string]cell{
				"queued":   conflict("queued"),
				"starting": ok("active", "started_at", "latest_heartbeat_at"),
				"active":   ok("active", "latest_heartbeat_at"),
				"stopping": ok("stopping", "latest_heartbeat_at"),
				"stopped":  conflict("stopped"),
			},
		},
		{
			name: "stop force=false",
			do: func(h *harness, env, id string) *response {
				return h.do("POST", workPath(env, id, "/stop"), `{"force":false}`)
			},
			cells: map[string]cell{
				"queued":   ok("stopped", "stopped_at"),
				"starting": ok("stopping", "stop_requested_at"),
				"active":   ok("stopping", "stop_requested_at"),
				"stopping": ok("stopped", "stopped_at"),
				"stopped":  ok("stopped"),
			},
		},
		{
			name: "stop force=true",
			do: func(h *harness, env, id string) *response {
				return h.do("POST", workPath(env, id, "/stop"), `{"force":true}`)
			},
			cells: map[string]cell{
				"queued":   ok("stopped", "stopped_at"),
				"starting": ok("stopped", "stopped_at"),
				"active":   ok("stopped", "stopped_at"),
				"stopping": ok("stopped", "stopped_at"),
				"stopped":  ok("stopped"),
			},
		},
		{
			name: "update metadata",
			do: func(h *harness, env, id string) *response {
				return h.do("POST", workPath(env, id, ""), `{"metadata":{"cell":"x"}}`)
			},
			cells: map[string]cell{
				"queued": ok("queued"), "starting": ok("starting"), "active": ok("active"),
				"stopping": ok("stopping"), "stopped": ok("stopped"),
			},
		},
	}
	for _, op := range ops {
		for _, from := range []string{"queued", "starting", "active", "stopping", "stopped"} {
			want := op.cells[from]
			t.Run(op.name+"/"+from, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t)
				env := h.env(true)
				before := h.itemIn(env, from)
				h.clock.Advance(7*time.Second + 123456*time.Microsecond)
				now := wkTS(h.clock.Now())

				r := op.do(h, env, before.ID)
				if want.status == 409 {
					wkWantErrorType(t, r, 409, "invalid_request_error")
				} else {
					wantStatus(t, r, 200)
				}
				after := h.work(env, before.ID)
				afterRaw := h.do("GET", workPath(env, before.ID, ""), "")
				wkWantKeys(t, "work object", afterRaw.Body, wkWorkKeys)
				if after.State != want.state {
					t.Errorf("state %s → %s, want %s", from, after.State, want.state)
				}

				// The answer of a 200.
				switch {
				case want.status != 200:
				case op.name == "poll":
					if from == "queued" {
						if string(r.Body) == "null" {
							t.Fatalf("poll of a queued item answered null")
						}
						if got := wkWorkOf(t, r); !reflect.DeepEqual(got, after) {
							t.Errorf("poll answer %+v differs from the item %+v", got, after)
						}
					} else if string(r.Body) != "null" {
						t.Errorf("poll delivered a %s item: %s", from, r.Body)
					}
				case op.name == "heartbeat":
					var a wkHeartbeatAnswer
					r.decode(t, &a)
					if a.State != want.state || a.LastHeartbeat != wkNull(after.LatestHeartbeatAt) || !a.LeaseExtended {
						t.Errorf("heartbeat answer %+v; item state %s, latest_heartbeat_at %s", a, after.State, wkNull(after.LatestHeartbeatAt))
					}
				default:
					if got := wkWorkOf(t, r); !reflect.DeepEqual(got, after) {
						t.Errorf("answer %+v differs from the item as read back %+v", got, after)
					}
				}

				// Timestamps: set ones are now, the others unchanged.
				b, a := wkStamps(before), wkStamps(after)
				for _, k := range wkStampKeys {
					if slices.Contains(want.set, k) {
						if wkNull(a[k]) != now {
							t.Errorf("%s = %s, want %s (set by %s on %s)", k, wkNull(a[k]), now, op.name, from)
						}
					} else if wkNull(a[k]) != wkNull(b[k]) {
						t.Errorf("%s changed from %s to %s (%s on %s must not set it)", k, wkNull(b[k]), wkNull(a[k]), op.name, from)
					}
				}
				// Metadata: only the update changes it.
				wantMeta := map[string]string{}
				if op.name == "update metadata" {
					wantMeta["cell"] = "x"
				}
				if !reflect.DeepEqual(after.Metadata, wantMeta) {
					t.Errorf("metadata %v, want %v", after.Metadata, wantMeta)
				}
				// Unchanged cells leave the whole item as it was.
				if want.status == 409 || (len(want.set) == 0 && op.name != "update metadata") {
					if !reflect.DeepEqual(before, after) {
						t.Errorf("item changed:\nbefore %+v\nafter  %+v", before, after)
					}
				}
			})
		}
	}
}

// wkEndpoint is one of the 8 work endpoints; item endpoints take a work ID.
type wkEndpoint struct {
	name   string
	method string
	suffix string // after /environments/{env}/work ("/{id}" is replaced by the item's ID)
	body   string
}

var wkEndpoints = []wkEndpoint{
	{"list", "GET", "", ""},
	{"poll", "GET", "/poll", ""},
	{"stats", "GET", "/stats", ""},
	{"get", "GET", "/{id}", ""},
	{"update", "POST", "/{id}", `{"metadata":{"a":"b"}}`},
	{"ack", "POST", "/{id}/ack", "{}\n"},
	{"heartbeat", "POST", "/{id}/heartbeat", ""},
	{"stop", "POST", "/{id}/stop", "{}"},
}

func (e wkEndpoint) path(env, id string) string {
	return "/environments/" + env + "/work" + strings.Replace(e.suffix, "{id}", id, 1)
}

func (e wkEndpoint) item() bool { return strings.Contains(e.suffix, "{id}") }

// TestWorkEnvironmentErrors checks the prelude of every work endpoint (API.md §4): the
// environment must exist (404, also for a malformed ID) and be self_hosted (400); a worker
// token of another environment gets 403 (§1), while its own environment's work is open.
func TestWorkEnvironmentErrors(t *testing.T) {
	t.Parallel()
	for _, ep := range wkEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			self := h.env(true)
			cloud := h.env(false)
			other := h.env(true)
			w := h.itemIn(self, "starting")
			unknownEnv := "env_0190000000007000800000000000abcd"

			cases := []struct {
				name    string
				env     string
				status  int
				errType string
			}{
				{"unknown environment", unknownEnv, 404, "not_found_error"},
				{"malformed environment ID", "env_nothex", 404, "not_found_error"},
				{"wrong prefix", strings.Replace(self, "env_", "sess_", 1), 404, "not_found_error"},
				{"uppercase ID", strings.ToUpper(self), 404, "not_found_error"},
				{"not self_hosted", cloud, 400, "invalid_request_error"},
			}
			for _, c := range cases {
				r := h.do(ep.method, ep.path(c.env, w.ID), ep.body)
				if r.Status != c.status {
					t.Errorf("%s: %s %s → %d, want %d: %s", c.name, ep.method, ep.path(c.env, w.ID), r.Status, c.status, r.Body)
				}
				wkWantErrorType(t, r, c.status, c.errType)
			}

			// The environment is loaded first: bad parameters or bodies sent to an unknown
			// environment are still 404.
			bad := map[string]string{"list": "?state=bogus", "poll": "?block_ms=0", "stats": "", "get": "",
				"update": "", "ack": "", "heartbeat": "?desired_ttl_seconds=0", "stop": ""}
			badBody := ep.body
			if ep.method == "POST" {
				badBody = "{"
			}
			r := h.do(ep.method, ep.path(unknownEnv, w.ID)+bad[ep.name], badBody)
			wkWantErrorType(t, r, 404, "not_found_error")

			// A worker token bound to another environment: 403 on every work endpoint.
			foreign := h.token(api.RoleWorker, other)
			r = h.do(ep.method, ep.path(self, w.ID), ep.body, as(foreign))
			wkWantErrorType(t, r, 403, "permission_error")
			if got := h.work(self, w.ID); !reflect.DeepEqual(got, w) && ep.method == "POST" {
				t.Errorf("a refused %s changed the item: %+v → %+v", ep.name, w, got)
			}
			// The environment's own worker token is let in.
			own := h.token(api.RoleWorker, self)
			r = h.do(ep.method, ep.path(self, w.ID), ep.body, as(own))
			wantStatus(t, r, 200)
		})
	}
}

// TestWorkItemNotFound: an unknown work ID, a malformed one, and an item of another
// environment are 404 on every item endpoint (API.md §1 "IDs", §1 404 row).
func TestWorkItemNotFound(t *testing.T) {
	t.Parallel()
	for _, ep := range wkEndpoints {
		if !ep.item() {
			continue
		}
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			envA := h.env(true)
			envB := h.env(true)
			inB := h.itemIn(envB, "starting")
			h.itemIn(envA, "starting") // envA has items of its own
			for _, c := range []struct{ name, env, id string }{
				{"unknown", envA, "work_0190000000007000800000000000abcd"},
				{"malformed", envA, "work_xyz"},
				{"wrong prefix", envA, strings.Replace(inB.ID, "work_", "sess_", 1)},
				{"too short", envA, inB.ID[:len(inB.ID)-1]},
				{"another environment's item", envA, inB.ID},
			} {
				r := h.do(ep.method, ep.path(c.env, c.id), ep.body)
				if r.Status != 404 {
					t.Errorf("%s: %s %s → %d, want 404", c.name, ep.method, ep.path(c.env, c.id), r.Status)
				}
				wkWantErrorType(t, r, 404, "not_found_error")
			}
			if got := h.work(envB, inB.ID); !reflect.DeepEqual(got, inB) {
				t.Errorf("item of envB changed through envA: %+v → %+v", inB, got)
			}
		})
	}
}

// TestWorkPercentEncodedIDs: path IDs may arrive percent-encoded (API.md §1 "Bodies").
func TestWorkPercentEncodedIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.queuedItem(env)
	enc := func(id string) string { return strings.Replace(id, "_", "%5F", 1) }
	r := h.do("GET", "/environments/"+enc(env)+"/work/"+enc(w.ID), "")
	wantStatus(t, r, 200)
	if got := wkWorkOf(t, r); got.ID != w.ID {
		t.Errorf("got item %s, want %s", got.ID, w.ID)
	}
	r = h.do("POST", "/environments/"+enc(env)+"/work/"+enc(w.ID)+"/ack", "{}")
	wantStatus(t, r, 200)
	if got := h.work(env, w.ID); got.State != "starting" {
		t.Errorf("state %s, want starting", got.State)
	}
}

// TestWorkMalformedBody: every work POST answers malformed JSON with 400 and the message
// API.md §1 gives, and a body that is JSON but no object with 400; nothing changes.
func TestWorkMalformedBody(t *testing.T) {
	t.Parallel()
	for _, ep := range wkEndpoints {
		if ep.method != "POST" {
			continue
		}
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			env := h.env(true)
			w := h.itemIn(env, "starting")
			for _, body := range []string{`{`, `{"force":}`, `not json`, `{"a":1}}`, "\x00"} {
				r := h.do("POST", ep.path(env, w.ID), body)
				wantError(t, r, 400, "invalid_request_error", "")
				var e struct {
					Error struct {
						Message string `json:"message"`
					} `json:"error"`
				}
				r.decode(t, &e)
				if e.Error.Message != "Request body must be valid JSON." {
					t.Errorf("body %q: message %q, want %q", body, e.Error.Message, "Request body must be valid JSON.")
				}
			}
			if ep.name != "heartbeat" { // heartbeat reads only its query (CLIENTS.md §6)
				for _, body := range []string{`[]`, `"x"`, `1`} {
					r := h.do("POST", ep.path(env, w.ID), body)
					wkWantErrorType(t, r, 400, "invalid_request_error")
				}
			}
			if got := h.work(env, w.ID); !reflect.DeepEqual(got, w) {
				t.Errorf("a refused request changed the item: %+v → %+v", w, got)
			}
		})
	}
}

// TestWorkPollParams: block_ms must be an integer 1–999 and reclaim_older_than_ms an
// integer ≥ 0 (API.md §4.2), else 400 naming the parameter; nothing is delivered.
func TestWorkPollParams(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.queuedItem(env)
	poll := "/environments/" + env + "/work/poll?"
	for _, v := range []string{"0", "1000", "-1", "x", "", "1.5", "99999999999999999999", "1e2"} {
		r := h.do("GET", poll+"block_ms="+url.QueryEscape(v), "")
		wantError(t, r, 400, "invalid_request_error", "block_ms")
	}
	for _, v := range []string{"-1", "x", "", "1.5", "-0.5"} {
		r := h.do("GET", poll+"reclaim_older_than_ms="+url.QueryEscape(v), "")
		wantError(t, r, 400, "invalid_request_error", "reclaim_older_than_ms")
	}
	// Nothing was delivered by the refused polls: the item is still fresh.
	if got := h.poll(env, "w1"); got == nil || got.ID != w.ID {
		t.Fatalf("after refused polls, poll = %+v, want %s", got, w.ID)
	}
	// The bounds themselves are accepted.
	for _, q := range []string{"block_ms=1", "block_ms=999&reclaim_older_than_ms=0", "reclaim_older_than_ms=0"} {
		r := h.do("GET", poll+q, "")
		wantStatus(t, r, 200)
	}
}

// TestWorkHeartbeatParams: expected_last_heartbeat garbage → 400; desired_ttl_seconds must
// be a positive integer (else 400) and is clamped to [10, 600], default 60 (API.md §4.7).
func TestWorkHeartbeatParams(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.itemIn(env, "starting")
	for _, v := range []string{"garbage", "no_heartbeat", "NO_HEARTBEATS", "", "2026-07-01", "2026-07-01T08:15:00", "2026-07-01 08:15:00Z", "1751357700", "null"} {
		r := h.wkHeartbeat(env, w.ID, "expected_last_heartbeat="+url.QueryEscape(v))
		wantError(t, r, 400, "invalid_request_error", "expected_last_heartbeat")
	}
	for _, v := range []string{"0", "-5", "x", "", "1.5", "10s"} {
		r := h.wkHeartbeat(env, w.ID, "desired_ttl_seconds="+url.QueryEscape(v))
		wantError(t, r, 400, "invalid_request_error", "desired_ttl_seconds")
	}
	if got := h.work(env, w.ID); !reflect.DeepEqual(got, w) {
		t.Fatalf("refused heartbeats changed the item: %+v → %+v", w, got)
	}
	for _, c := range []struct {
		query string
		ttl   int
	}{
		{"desired_ttl_seconds=5", 10},
		{"desired_ttl_seconds=1", 10},
		{"desired_ttl_seconds=10", 10},
		{"desired_ttl_seconds=11", 11},
		{"desired_ttl_seconds=600", 600},
		{"desired_ttl_seconds=9999", 600},
		{"", 60},
		{"desired_ttl_seconds=45", 45},
		{"", 60},
		// A positive integer beyond int64 is still a positive integer: clamped, not 400.
		{"desired_ttl_seconds=99999999999999999999", 600},
	} {
		r := h.wkHeartbeat(env, w.ID, c.query)
		if r.Status != 200 {
			t.Errorf("heartbeat %q: status %d, want 200 with ttl_seconds %d; body %s", c.query, r.Status, c.ttl, r.Body)
			continue
		}
		var a wkHeartbeatAnswer
		r.decode(t, &a)
		if a.TTLSeconds != c.ttl {
			t.Errorf("heartbeat %q: ttl_seconds %d, want %d", c.query, a.TTLSeconds, c.ttl)
		}
	}
}

// TestWorkStopForce: force must be a boolean (else 400 param force); an empty body, {},
// {"force":false} and {"force":null} are graceful; {"force":true} is forced (API.md §4.8).
func TestWorkStopForce(t *testing.T) {
	t.Parallel()
	t.Run("non-boolean force", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		w := h.itemIn(env, "active")
		for _, body := range []string{`{"force":"yes"}`, `{"force":1}`, `{"force":0}`, `{"force":"true"}`, `{"force":{}}`, `{"force":[]}`} {
			r := h.do("POST", workPath(env, w.ID, "/stop"), body)
			wantError(t, r, 400, "invalid_request_error", "force")
		}
		if got := h.work(env, w.ID); !reflect.DeepEqual(got, w) {
			t.Errorf("refused stops changed the item: %+v → %+v", w, got)
		}
	})
	for _, c := range []struct {
		name, body, want string
	}{
		{"no body", "", "stopping"},
		{"empty object", "{}", "stopping"},
		{"empty object and newline", "{}\n", "stopping"},
		{"force false", `{"force":false}`, "stopping"},
		{"force null", `{"force":null}`, "stopping"},
		{"unknown field", `{"reason":"x"}`, "stopping"},
		{"force true", `{"force":true}`, "stopped"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			env := h.env(true)
			w := h.itemIn(env, "active")
			r := h.do("POST", workPath(env, w.ID, "/stop"), c.body)
			wantStatus(t, r, 200)
			if got := wkWorkOf(t, r); got.State != c.want {
				t.Errorf("stop %q on active: %s, want %s", c.body, got.State, c.want)
			}
		})
	}
}

// TestWorkUpdateMetadata: the body's metadata is merged (string upserts, null deletes,
// absent untouched); absent metadata changes nothing; a value that is not a string → 400
// with param metadata.<key> (API.md §1 "Metadata", §4.5).
func TestWorkUpdateMetadata(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	h.wkSessionWith(`{"agent":"a","environment_id":"` + env + `","metadata":{"keep":"k","drop":"d","up":"old"}}`)
	w := h.wkList(env, "")[0]
	if !reflect.DeepEqual(w.Metadata, map[string]string{"keep": "k", "drop": "d", "up": "old"}) {
		t.Fatalf("item metadata %v is not a copy of the session's", w.Metadata)
	}
	p := workPath(env, w.ID, "")

	r := h.do("POST", p, `{"metadata":{"up":"new","drop":null,"add":"a"}}`)
	wantStatus(t, r, 200)
	want := map[string]string{"keep": "k", "up": "new", "add": "a"}
	if got := wkWorkOf(t, r); !reflect.DeepEqual(got.Metadata, want) {
		t.Errorf("merged metadata %v, want %v", got.Metadata, want)
	}
	for _, body := range []string{`{}`, "", `{"metadata":null}`, `{"metadata":{}}`, `{"other":1}`} {
		r := h.do("POST", p, body)
		wantStatus(t, r, 200)
		if got := wkWorkOf(t, r); !reflect.DeepEqual(got.Metadata, want) {
			t.Errorf("update %q changed metadata to %v, want %v", body, got.Metadata, want)
		}
	}
	for _, c := range []struct{ body, param string }{
		{`{"metadata":{"n":1}}`, "metadata.n"},
		{`{"metadata":{"b":true}}`, "metadata.b"},
		{`{"metadata":{"o":{"x":"y"}}}`, "metadata.o"},
		{`{"metadata":{"ok":"fine","arr":["x"]}}`, "metadata.arr"},
	} {
		r := h.do("POST", p, c.body)
		wantError(t, r, 400, "invalid_request_error", c.param)
	}
	if got := h.work(env, w.ID); !reflect.DeepEqual(got.Metadata, want) {
		t.Errorf("refused updates changed metadata to %v, want %v", got.Metadata, want)
	}
	// A non-object metadata names metadata.
	r = h.do("POST", p, `{"metadata":"x"}`)
	wantError(t, r, 400, "invalid_request_error", "metadata")

	// Limits: a value over 512 characters names its key; more than 20 keys (a work item's
	// limit, see TestWorkMetadataLimitLeavesRoomForTheOutcome), or a key over 64
	// characters, is a 400 about metadata.
	r = h.do("POST", p, `{"metadata":{"long":"`+strings.Repeat("v", 513)+`"}}`)
	wantError(t, r, 400, "invalid_request_error", "metadata.long")
	wantStatus(t, h.do("POST", p, `{"metadata":{"max":"`+strings.Repeat("v", 512)+`"}}`), 200)
	var many []string
	for i := range 17 { // 4 keys now (keep, up, add, max): 4 + 16 = 20 is fine, 4 + 17 = 21 is not
		many = append(many, `"k`+string(rune('a'+i))+`":"v"`)
	}
	r = h.do("POST", p, `{"metadata":{`+strings.Join(many[:17], ",")+`}}`)
	wkWantErrorType(t, r, 400, "invalid_request_error")
	wantStatus(t, h.do("POST", p, `{"metadata":{`+strings.Join(many[:16], ",")+`}}`), 200)
	r = h.do("POST", p, `{"metadata":{"`+strings.Repeat("k", 65)+`":"v"}}`)
	wkWantErrorType(t, r, 400, "invalid_request_error")
	if got := h.work(env, w.ID); len(got.Metadata) != 20 {
		t.Errorf("metadata has %d keys, want 20: %v", len(got.Metadata), got.Metadata)
	}
}

// TestWorkMetadataLimitLeavesRoomForTheOutcome: a work item's metadata may hold 20 keys,
// 4 more than a session's 16, so that a worker can record exit_code in an item copied
// from a session at the limit (README, "Choices where the specification is silent").
// Sessions keep 16.
func TestWorkMetadataLimitLeavesRoomForTheOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	full := map[string]string{}
	for i := range 16 {
		full[fmt.Sprintf("s%02d", i)] = "v"
	}
	r := h.do("POST", "/sessions", jsonBody(map[string]any{"agent": "a", "environment_id": env, "metadata": full}))
	wantStatus(t, r, 201)
	sess := r.str(t, "id")
	w := h.wkList(env, "")[0]
	if !reflect.DeepEqual(w.Metadata, full) {
		t.Fatalf("item metadata %v is not a copy of the session's 16 keys", w.Metadata)
	}
	p := workPath(env, w.ID, "")
	worker := as(h.token(api.RoleWorker, env))

	// The worker's outcome lands: 17 keys.
	r = h.do("POST", p, `{"metadata":{"exit_code":"3"}}`, worker)
	wantStatus(t, r, 200)
	if got := wkWorkOf(t, r); got.Metadata["exit_code"] != "3" || len(got.Metadata) != 17 {
		t.Fatalf("after exit_code: %d keys, exit_code %q", len(got.Metadata), got.Metadata["exit_code"])
	}
	// Up to 20.
	wantStatus(t, h.do("POST", p, `{"metadata":{"a":"1","b":"2","c":"3"}}`, worker), 200)
	// A 21st key is refused, and changes nothing; replacing or deleting keys at 20 is fine.
	wantError(t, h.do("POST", p, `{"metadata":{"d":"4"}}`, worker), 400, "invalid_request_error", "metadata")
	wantStatus(t, h.do("POST", p, `{"metadata":{"a":null,"d":"4","exit_code":"0"}}`, worker), 200)
	got := h.work(env, w.ID)
	if len(got.Metadata) != 20 || got.Metadata["exit_code"] != "0" || got.Metadata["d"] != "4" {
		t.Errorf("item metadata %v, want 20 keys with exit_code 0 and d", got.Metadata)
	}

	// The session itself keeps the general limit.
	r = h.do("POST", "/sessions/"+sess, `{"metadata":{"exit_code":"3"}}`)
	wantError(t, r, 400, "invalid_request_error", "metadata")
}

// TestWorkListStateFilter: the [ext] state filter takes a comma-separated list; an invalid
// state → 400 (API.md §4.1). Without it every state is listed, in ascending ID order.
func TestWorkListStateFilter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	byState := map[string]string{}
	var all []string
	for _, s := range []string{"queued", "starting", "active", "stopping", "stopped"} {
		w := h.itemIn(env, s)
		byState[s] = w.ID
		all = append(all, w.ID)
	}
	ids := func(ws []workJSON) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	if got := ids(h.wkList(env, "")); !slices.Equal(got, all) {
		t.Errorf("unfiltered list %v, want %v", got, all)
	}
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{"queued", []string{byState["queued"]}},
		{"queued,active", []string{byState["queued"], byState["active"]}},
		{"active,queued", []string{byState["queued"], byState["active"]}},
		{"stopped", []string{byState["stopped"]}},
		{"starting,stopping,stopped", []string{byState["starting"], byState["stopping"], byState["stopped"]}},
	} {
		got := h.wkList(env, "state="+url.QueryEscape(c.filter))
		if !slices.Equal(ids(got), c.want) {
			t.Errorf("state=%s: %v, want %v", c.filter, ids(got), c.want)
		}
	}
	for _, bad := range []string{"running", "queued,bogus", "QUEUED", "queued,"} {
		r := h.do("GET", "/environments/"+env+"/work?state="+url.QueryEscape(bad), "")
		wantError(t, r, 400, "invalid_request_error", "state")
	}
}

// TestWorkAckWorkerID checks API.md §4.6: an item delivered to a Worker-ID refuses an ack
// from another (409) but takes one without a Worker-ID; once acknowledged, an ack from a
// different Worker-ID → 409 and the same one (or none) → 200 unchanged.
func TestWorkAckWorkerID(t *testing.T) {
	t.Parallel()
	ack := func(h *harness, env, id, worker string) *response {
		var opts []reqOpt
		if worker != "" {
			opts = append(opts, header("Worker-ID", worker))
		}
		return h.do("POST", workPath(env, id, "/ack"), "{}\n", opts...)
	}
	t.Run("delivered to A, ack by B", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		h.queuedItem(env)
		w := h.poll(env, "A")
		r := ack(h, env, w.ID, "B")
		wkWantErrorType(t, r, 409, "invalid_request_error")
		if got := h.work(env, w.ID); got.State != "queued" || got.AcknowledgedAt != nil {
			t.Errorf("refused ack changed the item: %+v", got)
		}
		r = ack(h, env, w.ID, "A")
		wantStatus(t, r, 200)
		if got := wkWorkOf(t, r); got.State != "starting" {
			t.Errorf("ack by A: %s, want starting", got.State)
		}
	})
	t.Run("delivered to A, ack without Worker-ID", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		h.queuedItem(env)
		w := h.poll(env, "A")
		r := ack(h, env, w.ID, "")
		wantStatus(t, r, 200)
		if got := wkWorkOf(t, r); got.State != "starting" || got.AcknowledgedAt == nil {
			t.Errorf("ack without Worker-ID: %+v", got)
		}
	})
	t.Run("acknowledged by A", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		h.queuedItem(env)
		w := h.poll(env, "A")
		wantStatus(t, ack(h, env, w.ID, "A"), 200)
		acked := h.work(env, w.ID)
		h.clock.Advance(time.Second)
		for _, c := range []struct {
			worker string
			status int
		}{{"B", 409}, {"A", 200}, {"", 200}, {"B", 409}} {
			r := ack(h, env, w.ID, c.worker)
			if c.status == 409 {
				wkWantErrorType(t, r, 409, "invalid_request_error")
			} else {
				wantStatus(t, r, 200)
				if got := wkWorkOf(t, r); !reflect.DeepEqual(got, acked) {
					t.Errorf("repeated ack by %q changed the item: %+v → %+v", c.worker, acked, got)
				}
			}
		}
		// Still the same once active.
		h.wkBeat(env, w.ID, "")
		active := h.work(env, w.ID)
		wkWantErrorType(t, ack(h, env, w.ID, "B"), 409, "invalid_request_error")
		r := ack(h, env, w.ID, "A")
		wantStatus(t, r, 200)
		if got := wkWorkOf(t, r); !reflect.DeepEqual(got, active) {
			t.Errorf("ack by A of the active item changed it: %+v → %+v", active, got)
		}
	})
	t.Run("never delivered, acknowledged by A", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		w := h.queuedItem(env)
		wantStatus(t, ack(h, env, w.ID, "A"), 200)
		wkWantErrorType(t, ack(h, env, w.ID, "B"), 409, "invalid_request_error")
		wantStatus(t, ack(h, env, w.ID, "A"), 200)
	})
	t.Run("delivered without Worker-ID, ack by B", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		h.queuedItem(env)
		w := h.poll(env, "")
		wantStatus(t, ack(h, env, w.ID, "B"), 200)
		wkWantErrorType(t, ack(h, env, w.ID, "C"), 409, "invalid_request_error")
	})
	t.Run("redelivered to B after the reclaim window, ack by A", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		h.queuedItem(env)
		w := h.poll(env, "A")
		h.clock.Advance(5 * time.Second)
		w2 := h.poll(env, "B")
		if w2 == nil || w2.ID != w.ID {
			t.Fatalf("item not redelivered after 5 s: %+v", w2)
		}
		wkWantErrorType(t, ack(h, env, w.ID, "A"), 409, "invalid_request_error")
		wantStatus(t, ack(h, env, w.ID, "B"), 200)
	})
}

// TestWorkConcurrentAcks: two Worker-IDs acknowledging the same fresh item at once: exactly
// one wins (200), the other gets 409 (API.md §4.6), every time.
func TestWorkConcurrentAcks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	for round := range 20 {
		w := h.queuedItem(env)
		start := make(chan struct{})
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		bodies := make([][]byte, 2)
		for i, worker := range []string{"A", "B"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := h.wkTry("POST", workPath(env, w.ID, "/ack"), "{}\n", header("Worker-ID", worker))
				if err != nil {
					t.Errorf("ack by %s: %v", worker, err)
					return
				}
				statuses[i], bodies[i] = r.Status, r.Body
			}()
		}
		close(start)
		wg.Wait()
		slices.Sort(statuses)
		if statuses[0] != 200 || statuses[1] != 409 {
			t.Fatalf("round %d: statuses %v, want one 200 and one 409; bodies %s / %s", round, statuses, bodies[0], bodies[1])
		}
		if got := h.work(env, w.ID); got.State != "starting" {
			t.Fatalf("round %d: state %s, want starting", round, got.State)
		}
	}
}

// TestHeartbeatExpectation checks API.md §4.7's compare-and-set: NO_HEARTBEAT, then the
// echo of last_heartbeat (percent-encoded) succeeds; a stale echo → 412 with
// error.details.current_state; the same instant written with +00:00 (or another offset)
// matches; an absent expectation is unconditional.
func TestHeartbeatExpectation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.itemIn(env, "starting")
	h.clock.Advance(1*time.Second + 123456*time.Microsecond)

	a1 := h.wkBeat(env, w.ID, wkExpect("NO_HEARTBEAT"))
	if a1.State != "active" || a1.LastHeartbeat != wkTS(h.clock.Now()) {
		t.Fatalf("first heartbeat %+v, want active at %s", a1, wkTS(h.clock.Now()))
	}
	// NO_HEARTBEAT once there was a heartbeat: 412.
	r := h.wkHeartbeat(env, w.ID, wkExpect("NO_HEARTBEAT"))
	wantError(t, r, 412, "precondition_failed_error", "expected_last_heartbeat")

	h.clock.Advance(2 * time.Second)
	a2 := h.wkBeat(env, w.ID, wkExpect(a1.LastHeartbeat)+"&desired_ttl_seconds=30")
	if a2.LastHeartbeat == a1.LastHeartbeat || a2.LastHeartbeat != wkTS(h.clock.Now()) {
		t.Fatalf("echo heartbeat %+v, want last_heartbeat %s", a2, wkTS(h.clock.Now()))
	}
	if got := h.work(env, w.ID); wkNull(got.LatestHeartbeatAt) != a2.LastHeartbeat || wkNull(got.StartedAt) != a1.LastHeartbeat {
		t.Errorf("item after heartbeats: latest %s started %s, want %s and %s",
			wkNull(got.LatestHeartbeatAt), wkNull(got.StartedAt), a2.LastHeartbeat, a1.LastHeartbeat)
	}

	// A stale echo: 412 with the current state.
	before := h.work(env, w.ID)
	r = h.wkHeartbeat(env, w.ID, wkExpect(a1.LastHeartbeat))
	wantError(t, r, 412, "precondition_failed_error", "expected_last_heartbeat")
	var e struct {
		Error struct {
			Details struct {
				CurrentState json.RawMessage `json:"current_state"`
			} `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &e)
	if len(e.Error.Details.CurrentState) == 0 {
		t.Fatalf("412 without error.details.current_state: %s", r.Body)
	}
	var cur struct {
		State         string  `json:"state"`
		TTLSeconds    int     `json:"ttl_seconds"`
		LastHeartbeat *string `json:"last_heartbeat"`
	}
	if err := json.Unmarshal(e.Error.Details.CurrentState, &cur); err != nil {
		t.Fatalf("current_state: %v", err)
	}
	if cur.State != "active" || cur.TTLSeconds != 30 || wkNull(cur.LastHeartbeat) != a2.LastHeartbeat {
		t.Errorf("current_state %s, want active, 30, %s", e.Error.Details.CurrentState, a2.LastHeartbeat)
	}
	keys := wkKeyOrder(t, e.Error.Details.CurrentState)
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"last_heartbeat", "state", "ttl_seconds"}) {
		t.Errorf("current_state keys %v, want state, ttl_seconds, last_heartbeat", keys)
	}
	if got := h.work(env, w.ID); !reflect.DeepEqual(got, before) {
		t.Errorf("a 412 changed the item: %+v → %+v", before, got)
	}

	// The same instant with +00:00, with another offset, and with trailing zeros.
	instant, err := time.Parse(time.RFC3339Nano, a2.LastHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	last := a2.LastHeartbeat
	for _, form := range []func(time.Time) string{
		func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.999999") + "+00:00" },
		func(t time.Time) string { return t.In(time.FixedZone("", 2*3600)).Format(time.RFC3339Nano) },
		func(t time.Time) string { return t.In(time.FixedZone("", -(5*3600 + 30*60))).Format(time.RFC3339Nano) },
		func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") },
	} {
		h.clock.Advance(time.Second)
		q := form(instant)
		a := h.wkBeat(env, w.ID, wkExpect(q))
		if a.LastHeartbeat == last {
			t.Errorf("heartbeat expecting %s did not move last_heartbeat", q)
		}
		last = a.LastHeartbeat
		instant, _ = time.Parse(time.RFC3339Nano, last)
	}
	// A microsecond off does not match.
	r = h.wkHeartbeat(env, w.ID, wkExpect(wkTS(instant.Add(time.Microsecond))))
	wantError(t, r, 412, "precondition_failed_error", "expected_last_heartbeat")
	r = h.wkHeartbeat(env, w.ID, wkExpect(wkTS(instant.Add(-time.Microsecond))))
	wantError(t, r, 412, "precondition_failed_error", "expected_last_heartbeat")

	// No expectation: unconditional, also without moving the clock (last_heartbeat still
	// moves on, so it stays a unique echo).
	a3 := h.wkBeat(env, w.ID, "")
	a4 := h.wkBeat(env, w.ID, "")
	if a3.LastHeartbeat == last || a4.LastHeartbeat == a3.LastHeartbeat {
		t.Errorf("unconditional heartbeats: %s then %s after %s", a3.LastHeartbeat, a4.LastHeartbeat, last)
	}
	if got := h.work(env, w.ID); wkNull(got.LatestHeartbeatAt) != a4.LastHeartbeat {
		t.Errorf("latest_heartbeat_at %s, want the last answer's %s", wkNull(got.LatestHeartbeatAt), a4.LastHeartbeat)
	}
	// The echo of an answer given without clock movement works too.
	h.wkBeat(env, w.ID, wkExpect(a4.LastHeartbeat))
}

// TestHeartbeatNoHeartbeatOnFreshItem: NO_HEARTBEAT matches an acknowledged item that never
// had a heartbeat, and a timestamp expectation on it is a 412 (there is no heartbeat to
// match).
func TestHeartbeatNoHeartbeatOnFreshItem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.itemIn(env, "starting")
	r := h.wkHeartbeat(env, w.ID, wkExpect(wkTS(h.clock.Now())))
	wantError(t, r, 412, "precondition_failed_error", "expected_last_heartbeat")
	var e struct {
		Error struct {
			Details struct {
				CurrentState struct {
					State         string  `json:"state"`
					TTLSeconds    int     `json:"ttl_seconds"`
					LastHeartbeat *string `json:"last_heartbeat"`
				} `json:"current_state"`
			} `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &e)
	if cs := e.Error.Details.CurrentState; cs.State != "starting" || cs.LastHeartbeat != nil || cs.TTLSeconds != 60 {
		t.Errorf("current_state %+v, want starting, ttl 60 (ack's default lease), last_heartbeat null", cs)
	}
	if got := h.work(env, w.ID); got.State != "starting" {
		t.Errorf("state %s after a 412, want starting", got.State)
	}
	a := h.wkBeat(env, w.ID, wkExpect("NO_HEARTBEAT"))
	if a.State != "active" {
		t.Errorf("state %s, want active", a.State)
	}
}

// TestHeartbeatAnswer checks the answer's shape and key order (API.md §4.7), that stopping
// is reported so the worker drains, and that the Go SDK's bodiless POST and Python's {}
// are both accepted.
func TestHeartbeatAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.itemIn(env, "starting")

	r := h.do("POST", workPath(env, w.ID, "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"), "")
	wantStatus(t, r, 200)
	wkWantKeys(t, "heartbeat answer", r.Body, wkHeartbeatKeys)
	var a wkHeartbeatAnswer
	r.decode(t, &a)
	if a.Type != "work_heartbeat" || !a.LeaseExtended || a.State != "active" || a.TTLSeconds != 60 || a.LastHeartbeat != wkTS(h.clock.Now()) {
		t.Errorf("answer %s", r.Body)
	}
	var raw map[string]json.RawMessage
	r.decode(t, &raw)
	if string(raw["lease_extended"]) != "true" || string(raw["ttl_seconds"]) != "60" {
		t.Errorf("lease_extended %s, ttl_seconds %s: want JSON true and integer 60", raw["lease_extended"], raw["ttl_seconds"])
	}

	// Python sends {}.
	h.clock.Advance(time.Second)
	r = h.do("POST", workPath(env, w.ID, "/heartbeat?"+wkExpect(a.LastHeartbeat)), "{}")
	wantStatus(t, r, 200)
	r.decode(t, &a)

	// A graceful stop: the heartbeat reports stopping, and keeps extending the lease.
	wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), "{}"), 200)
	h.clock.Advance(time.Second)
	r = h.do("POST", workPath(env, w.ID, "/heartbeat?"+wkExpect(a.LastHeartbeat)+"&desired_ttl_seconds=20"), "")
	wantStatus(t, r, 200)
	wkWantKeys(t, "heartbeat answer (stopping)", r.Body, wkHeartbeatKeys)
	r.decode(t, &a)
	if a.State != "stopping" || !a.LeaseExtended || a.TTLSeconds != 20 || a.LastHeartbeat != wkTS(h.clock.Now()) {
		t.Errorf("heartbeat on a stopping item: %s", r.Body)
	}
	// The drained worker confirms with stop.
	r = h.do("POST", workPath(env, w.ID, "/stop"), "{}")
	wantStatus(t, r, 200)
	if got := wkWorkOf(t, r); got.State != "stopped" {
		t.Errorf("confirming stop: %s, want stopped", got.State)
	}
	r = h.wkHeartbeat(env, w.ID, "")
	wkWantErrorType(t, r, 409, "invalid_request_error")
}

// TestHeartbeatRace: two heartbeats with the same expected_last_heartbeat at once: exactly
// one 200 and one 412 (API.md §4.7 "exactly one wins"), 30 times over.
func TestHeartbeatRace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.itemIn(env, "starting")
	last := "NO_HEARTBEAT"
	for round := range 30 {
		if round%3 == 0 {
			h.clock.Advance(time.Millisecond) // also race with the clock standing still
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		res := make([]*response, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := h.wkTry("POST", workPath(env, w.ID, "/heartbeat?"+wkExpect(last)), "")
				if err != nil {
					t.Errorf("heartbeat: %v", err)
					return
				}
				res[i] = r
			}()
		}
		close(start)
		wg.Wait()
		if res[0] == nil || res[1] == nil {
			t.FailNow()
		}
		var winner *response
		statuses := []int{res[0].Status, res[1].Status}
		for _, r := range res {
			if r.Status == 200 {
				winner = r
			}
		}
		slices.Sort(statuses)
		if !slices.Equal(statuses, []int{200, 412}) {
			t.Fatalf("round %d expecting %s: statuses %v, want [200 412]; bodies %s / %s", round, last, statuses, res[0].Body, res[1].Body)
		}
		var a wkHeartbeatAnswer
		winner.decode(t, &a)
		if a.LastHeartbeat == last {
			t.Fatalf("round %d: last_heartbeat did not move", round)
		}
		last = a.LastHeartbeat
	}
	if got := h.work(env, w.ID); wkNull(got.LatestHeartbeatAt) != last {
		t.Errorf("latest_heartbeat_at %s, want the last winner's %s", wkNull(got.LatestHeartbeatAt), last)
	}
}

// TestSessionEffectsOnWork checks §3's session operations on work: cancel requests a
// graceful stop (202); delete force-stops the items, which stay readable; the session's
// status is running while its item is starting/active/stopping and idle otherwise.
func TestSessionEffectsOnWork(t *testing.T) {
	t.Parallel()
	t.Run("status mirrors the item", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		sess := h.session(env)
		w := h.wkItemsOf(env, sess)[0]
		if s := h.wkSessionStatus(sess); s != "idle" {
			t.Errorf("queued: status %s, want idle", s)
		}
		h.poll(env, "w1")
		if s := h.wkSessionStatus(sess); s != "idle" {
			t.Errorf("delivered, queued: status %s, want idle", s)
		}
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n"), 200)
		if s := h.wkSessionStatus(sess); s != "running" {
			t.Errorf("starting: status %s, want running", s)
		}
		h.wkBeat(env, w.ID, "")
		if s := h.wkSessionStatus(sess); s != "running" {
			t.Errorf("active: status %s, want running", s)
		}
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), "{}"), 200)
		if s := h.wkSessionStatus(sess); s != "running" {
			t.Errorf("stopping: status %s, want running", s)
		}
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), "{}"), 200)
		if s := h.wkSessionStatus(sess); s != "idle" {
			t.Errorf("stopped: status %s, want idle", s)
		}
		// In the list too.
		r := h.do("GET", "/sessions?environment_id="+env, "")
		wantStatus(t, r, 200)
		if !strings.Contains(string(r.Body), `"status":"idle"`) {
			t.Errorf("listed session not idle: %s", r.Body)
		}
	})
	t.Run("cancel with an active item", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		sess := h.session(env)
		w := h.wkItemsOf(env, sess)[0]
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n"), 200)
		h.wkBeat(env, w.ID, "")
		h.clock.Advance(3 * time.Second)
		r := h.do("POST", "/sessions/"+sess+"/cancel", "{}\n")
		wantStatus(t, r, 202)
		if r.str(t, "status") != "canceling" {
			t.Errorf("cancel answer %s", r.Body)
		}
		got := h.work(env, w.ID)
		if got.State != "stopping" || wkNull(got.StopRequestedAt) != wkTS(h.clock.Now()) || got.StoppedAt != nil {
			t.Errorf("after cancel: %+v, want stopping with stop_requested_at %s", got, wkTS(h.clock.Now()))
		}
		if s := h.wkSessionStatus(sess); s != "running" {
			t.Errorf("status %s while stopping, want running", s)
		}
		// The worker sees stopping on its next heartbeat.
		if a := h.wkBeat(env, w.ID, ""); a.State != "stopping" {
			t.Errorf("heartbeat after cancel: %s, want stopping", a.State)
		}
		// A second cancel does not confirm the stop.
		h.do("POST", "/sessions/"+sess+"/cancel", "{}\n")
		if got := h.work(env, w.ID); got.State != "stopping" {
			t.Errorf("second cancel: %s, want stopping", got.State)
		}
	})
	t.Run("cancel with a queued item", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		sess := h.session(env)
		w := h.wkItemsOf(env, sess)[0]
		h.clock.Advance(time.Second)
		r := h.do("POST", "/sessions/"+sess+"/cancel", "{}\n")
		wantStatus(t, r, 202)
		// A graceful stop of a queued item stops it (API.md §4's table).
		got := h.work(env, w.ID)
		if got.State != "stopped" || wkNull(got.StoppedAt) != wkTS(h.clock.Now()) {
			t.Errorf("queued item after cancel: %+v, want stopped", got)
		}
		if p := h.poll(env, "w1"); p != nil {
			t.Errorf("poll delivered %s after cancel", p.ID)
		}
	})
	t.Run("cancel with no live item", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		sess := h.session(env)
		w := h.wkItemsOf(env, sess)[0]
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/stop"), `{"force":true}`), 200)
		stopped := h.work(env, w.ID)
		r := h.do("POST", "/sessions/"+sess+"/cancel", "{}\n")
		wantStatus(t, r, 200)
		if r.str(t, "status") != "canceling" {
			t.Errorf("cancel answer %s", r.Body)
		}
		if got := h.work(env, w.ID); !reflect.DeepEqual(got, stopped) {
			t.Errorf("cancel changed a stopped item: %+v → %+v", stopped, got)
		}
	})
	t.Run("delete stops the items", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		sess := h.session(env)
		w := h.wkItemsOf(env, sess)[0]
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n"), 200)
		h.wkBeat(env, w.ID, "")
		other := h.queuedItem(env) // another session's item is left alone
		h.clock.Advance(2 * time.Second)
		r := h.do("DELETE", "/sessions/"+sess, "")
		wantStatus(t, r, 200)
		if r.str(t, "type") != "session_deleted" {
			t.Errorf("delete answer %s", r.Body)
		}
		got := h.work(env, w.ID)
		if got.State != "stopped" || wkNull(got.StoppedAt) != wkTS(h.clock.Now()) || got.Data["id"] != sess {
			t.Errorf("item after session delete: %+v, want stopped at %s", got, wkTS(h.clock.Now()))
		}
		wkWantErrorType(t, h.do("GET", "/sessions/"+sess, ""), 404, "not_found_error")
		if len(h.wkList(env, "state=stopped")) != 1 {
			t.Errorf("the stopped item is not listed")
		}
		if o := h.work(env, other.ID); o.State != "queued" {
			t.Errorf("another session's item is %s, want queued", o.State)
		}
		// The deleted session's worker learns on its next heartbeat.
		wkWantErrorType(t, h.wkHeartbeat(env, w.ID, ""), 409, "invalid_request_error")
	})
	t.Run("delete stops a queued item", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		sess := h.session(env)
		w := h.wkItemsOf(env, sess)[0]
		wantStatus(t, h.do("DELETE", "/sessions/"+sess, ""), 200)
		if got := h.work(env, w.ID); got.State != "stopped" || got.StoppedAt == nil {
			t.Errorf("queued item after session delete: %+v", got)
		}
		if got := h.poll(env, "w1"); got != nil {
			t.Errorf("poll delivered %s of a deleted session", got.ID)
		}
	})
}

// TestHeartbeatFirstOnStopping: an item stopped gracefully before its first heartbeat is
// stopping; its first heartbeat sets started_at (the first successful heartbeat) and
// reports stopping.
func TestHeartbeatFirstOnStopping(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	w := h.itemIn(env, "starting")
	h.clock.Advance(time.Second)
	r := h.do("POST", workPath(env, w.ID, "/stop"), "{}")
	wantStatus(t, r, 200)
	if got := wkWorkOf(t, r); got.State != "stopping" || wkNull(got.StopRequestedAt) != wkTS(h.clock.Now()) || got.StartedAt != nil {
		t.Fatalf("graceful stop of a starting item: %+v", got)
	}
	h.clock.Advance(time.Second)
	a := h.wkBeat(env, w.ID, wkExpect("NO_HEARTBEAT"))
	if a.State != "stopping" {
		t.Errorf("heartbeat: state %s, want stopping", a.State)
	}
	got := h.work(env, w.ID)
	if got.State != "stopping" || wkNull(got.StartedAt) != wkTS(h.clock.Now()) || wkNull(got.LatestHeartbeatAt) != a.LastHeartbeat {
		t.Errorf("after the first heartbeat on a stopping item: %+v", got)
	}
}

// TestWorkArchivedEnvironment: an archived environment takes no new sessions, but its
// existing work keeps working so that workers can drain (API.md §2).
func TestWorkArchivedEnvironment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	active := h.itemIn(env, "active")
	queued := h.queuedItem(env)
	wantStatus(t, h.do("POST", "/environments/"+env+"/archive", "{}\n"), 200)
	wkWantErrorType(t, h.do("POST", "/sessions", `{"agent":"a","environment_id":"`+env+`"}`), 400, "invalid_request_error")

	wantStatus(t, h.do("GET", "/environments/"+env+"/work", ""), 200)
	wantStatus(t, h.do("GET", "/environments/"+env+"/work/stats", ""), 200)
	if got := h.poll(env, "w1"); got == nil || got.ID != queued.ID {
		t.Errorf("poll in an archived environment: %+v, want %s", got, queued.ID)
	}
	wantStatus(t, h.do("POST", workPath(env, queued.ID, "/ack"), "{}\n", header("Worker-ID", "w1")), 200)
	h.wkBeat(env, active.ID, "")
	wantStatus(t, h.do("POST", workPath(env, active.ID, ""), `{"metadata":{"a":"b"}}`), 200)
	r := h.do("POST", workPath(env, active.ID, "/stop"), "{}")
	wantStatus(t, r, 200)
	if got := wkWorkOf(t, r); got.State != "stopping" {
		t.Errorf("stop: %s", got.State)
	}
}
