package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// answering answers every request with 200 and body.
func answering(body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

func TestWhatGoesOnTheWire(t *testing.T) {
	t.Parallel()
	s := newScript(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		// Lists and sent events answer {"data":[…]}; everything else a work item, which
		// decodes into any of the other objects well enough.
		p := r.URL.Path
		if strings.HasSuffix(p, "/events") || (r.Method == "GET" &&
			(strings.HasSuffix(p, "/environments") || strings.HasSuffix(p, "/sessions") || strings.HasSuffix(p, "/work"))) {
			io.WriteString(w, `{"data":[],"first_id":null,"last_id":null,"has_more":false,"next_page":null}`)
			return
		}
		io.WriteString(w, workJSON)
	})
	c := s.client()
	ctx := t.Context()
	zero := 0
	calls := []struct {
		do         func() error
		method     string
		uri        string
		body       string // "-" for none
		workerID   string
		wantHeader map[string]string
	}{
		{
			do: func() error {
				_, err := c.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "n", Config: &client.EnvironmentConfig{Type: client.ConfigSelfHosted}})
				return err
			},
			method: "POST", uri: "/api/v1/cloud/environments", body: `{"name":"n","config":{"type":"self_hosted"}}`,
		},
		{
			do: func() error {
				_, err := c.UpdateEnvironment(ctx, "env_1", client.UpdateEnvironmentParams{Metadata: map[string]*string{"gone": nil, "kept": client.String("v")}})
				return err
			},
			method: "POST", uri: "/api/v1/cloud/environments/env_1", body: `{"metadata":{"gone":null,"kept":"v"}}`,
		},
		{
			do: func() error {
				_, err := c.ListEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 5, Page: "env_2"}, IncludeArchived: true})
				return err
			},
			method: "GET", uri: "/api/v1/cloud/environments?include_archived=true&limit=5&page=env_2", body: "-",
		},
		{
			do:     func() error { _, err := c.ArchiveEnvironment(ctx, "env_1"); return err },
			method: "POST", uri: "/api/v1/cloud/environments/env_1/archive", body: `{}`,
		},
		{
			do:     func() error { _, err := c.DeleteEnvironment(ctx, "env_1"); return err },
			method: "DELETE", uri: "/api/v1/cloud/environments/env_1", body: "-",
		},
		{
			do: func() error {
				_, err := c.ListSessions(ctx, client.ListSessionsParams{ListParams: client.ListParams{BeforeID: "sess_9"}, EnvironmentID: "env_1"})
				return err
			},
			method: "GET", uri: "/api/v1/cloud/sessions?before_id=sess_9&environment_id=env_1", body: "-",
		},
		{
			do: func() error {
				_, err := c.SendEvents(ctx, "sess_1", []any{json.RawMessage(`{"type":"user.interrupt"}`)})
				return err
			},
			method: "POST", uri: "/api/v1/cloud/sessions/sess_1/events", body: `{"events":[{"type":"user.interrupt"}]}`,
		},
		{
			do: func() error {
				_, err := c.ListWork(ctx, "env_1", client.ListWorkParams{ListParams: client.ListParams{AfterID: "work_0"}, States: []client.State{client.StateQueued, client.StateActive}})
				return err
			},
			method: "GET", uri: "/api/v1/cloud/environments/env_1/work?after_id=work_0&state=queued%2Cactive", body: "-",
		},
		{
			do: func() error {
				_, err := c.PollWork(ctx, "env_1", client.PollParams{BlockMS: 5, ReclaimOlderThanMS: &zero, WorkerID: "w 1"})
				return err
			},
			method: "GET", uri: "/api/v1/cloud/environments/env_1/work/poll?block_ms=5&reclaim_older_than_ms=0", body: "-", workerID: "w 1",
		},
		{
			do: func() error {
				_, err := c.AckWork(ctx, "env_1", "work_1", client.AckParams{WorkerID: "w1"})
				return err
			},
			method: "POST", uri: "/api/v1/cloud/environments/env_1/work/work_1/ack", body: `{}`, workerID: "w1",
		},
		{
			do: func() error {
				_, err := c.HeartbeatWork(ctx, "env_1", "work_1", client.HeartbeatParams{ExpectedLastHeartbeat: "2026-07-01T08:15:06.120394+00:00", DesiredTTLSeconds: 30})
				return err
			},
			method: "POST", body: "-",
			uri: "/api/v1/cloud/environments/env_1/work/work_1/heartbeat?desired_ttl_seconds=30&expected_last_heartbeat=2026-07-01T08%3A15%3A06.120394%2B00%3A00",
		},
		{
			do:     func() error { _, err := c.StopWork(ctx, "env_1", "work_1", true); return err },
			method: "POST", uri: "/api/v1/cloud/environments/env_1/work/work_1/stop", body: `{"force":true}`,
		},
		{
			do:     func() error { _, err := c.StopWork(ctx, "env_1", "work_1", false); return err },
			method: "POST", uri: "/api/v1/cloud/environments/env_1/work/work_1/stop", body: `{"force":false}`,
		},
		{
			do: func() error {
				_, err := c.CreateToken(ctx, client.CreateTokenParams{Name: "w", Role: client.RoleWorker, EnvironmentID: "env_1"})
				return err
			},
			method: "POST", uri: "/api/v1/cloud/tokens", body: `{"name":"w","role":"worker","environment_id":"env_1"}`,
		},
		{
			do:     func() error { return c.Healthz(ctx) },
			method: "GET", uri: "/healthz", body: "-",
		},
	}
	for i, call := range calls {
		if err := call.do(); err != nil {
			t.Fatalf("call %d (%s %s): %v", i, call.method, call.uri, err)
		}
		reqs := s.requests()
		r := reqs[len(reqs)-1]
		if r.Method != call.method || r.URI != call.uri {
			t.Errorf("call %d: %s %s, want %s %s", i, r.Method, r.URI, call.method, call.uri)
		}
		wantCT := "application/json"
		if call.body == "-" {
			wantCT = ""
			if len(r.Body) != 0 {
				t.Errorf("%s %s: body %q, want none", r.Method, r.URI, r.Body)
			}
		} else if string(r.Body) != call.body {
			t.Errorf("%s %s: body %s, want %s", r.Method, r.URI, r.Body, call.body)
		}
		if ct := r.Header.Get("Content-Type"); ct != wantCT {
			t.Errorf("%s %s: Content-Type %q, want %q", r.Method, r.URI, ct, wantCT)
		}
		if w := r.Header.Get("Worker-ID"); w != call.workerID {
			t.Errorf("%s %s: Worker-ID %q, want %q", r.Method, r.URI, w, call.workerID)
		}
		if r.Header.Get("Accept") != "application/json" || r.Header.Get("Authorization") != "Bearer pt-test" ||
			!strings.HasPrefix(r.Header.Get("User-Agent"), "berth-client/") || r.Header.Get("Idempotency-Key") != "" {
			t.Errorf("%s %s: headers %v", r.Method, r.URI, r.Header)
		}
	}

	// Options replace the client's own headers.
	c2 := s.client(client.WithUserAgent("my-worker/1.0"))
	if _, err := c2.GetWork(ctx, "env_1", "work_1", client.WithHeader("Authorization", "Bearer pt-other")); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	if h := reqs[len(reqs)-1].Header; h.Get("User-Agent") != "my-worker/1.0" || h.Get("Authorization") != "Bearer pt-other" {
		t.Errorf("headers %v", h)
	}
}

func TestPathIDsAreOneSegment(t *testing.T) {
	t.Parallel()
	s := newScript(t, answering(workJSON))
	c := s.client()
	if _, err := c.GetEnvironment(t.Context(), "segment /?%#"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetWork(t.Context(), "..", "."); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	want := []string{
		"/api/v1/cloud/environments/segment%20%2F%3F%25%23",
		"/api/v1/cloud/environments/%2E%2E/work/%2E",
	}
	for i, r := range reqs {
		if r.URI != want[i] {
			t.Errorf("request %d: %s, want %s", i, r.URI, want[i])
		}
	}

	// An empty ID fails before anything is sent.
	for _, err := range []error{
		func() error { _, err := c.GetEnvironment(t.Context(), ""); return err }(),
		func() error { _, err := c.StopWork(t.Context(), "env_1", "", false); return err }(),
		func() error { _, err := c.RevokeToken(t.Context(), ""); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("empty ID: %v", err)
		}
	}
	if n := s.attempts(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestPathIDsAgainstBerth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	for _, id := range []string{env.ID + "/work", "env/../" + env.ID, "..", "%2F", env.ID + "?x=1"} {
		if _, err := b.admin.GetEnvironment(b.ctx, id); !client.IsNotFound(err) {
			t.Errorf("GetEnvironment(%q): %v, want 404", id, err)
		}
		if _, err := b.admin.GetWork(b.ctx, env.ID, id); !client.IsNotFound(err) {
			t.Errorf("GetWork(%q): %v, want 404", id, err)
		}
	}
}

func TestBaseURLs(t *testing.T) {
	t.Parallel()
	s := newScript(t, answering(envJSON))
	for _, tc := range []struct {
		base, env, health string
	}{
		{s.url + "/api/v1/cloud", "/api/v1/cloud/environments/e", "/healthz"},
		{s.url + "/api/v1/cloud/", "/api/v1/cloud/environments/e", "/healthz"},
		{s.url + "/api/v1/cloud?ignored=1", "/api/v1/cloud/environments/e", "/healthz"},
		{s.url + "/proxy/berth/api/v1/cloud", "/proxy/berth/api/v1/cloud/environments/e", "/proxy/berth/healthz"},
		{s.url + "/v9", "/v9/environments/e", "/healthz"},
		{s.url, "/environments/e", "/healthz"},
	} {
		c, err := client.New(tc.base, "")
		if err != nil {
			t.Fatalf("New(%q): %v", tc.base, err)
		}
		if _, err := c.GetEnvironment(t.Context(), "e"); err != nil {
			t.Fatal(err)
		}
		if err := c.Healthz(t.Context()); err != nil {
			t.Fatal(err)
		}
		reqs := s.requests()
		if got := reqs[len(reqs)-2]; got.URI != tc.env || got.Header.Get("Authorization") != "" {
			t.Errorf("base %s: %s (Authorization %q), want %s", tc.base, got.URI, got.Header.Get("Authorization"), tc.env)
		}
		if got := reqs[len(reqs)-1].URI; got != tc.health {
			t.Errorf("base %s: health at %s, want %s", tc.base, got, tc.health)
		}
	}

	c, err := client.New("", "")
	if err != nil || c.BaseURL() != client.DefaultBaseURL+"/" {
		t.Errorf("default base: %v %v", c, err)
	}
	for _, bad := range []string{"ftp://host/api", "localhost:8080", "http://", "http://a b/"} {
		if _, err := client.New(bad, ""); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	for _, opt := range []client.Option{
		client.WithMaxRetries(-1),
		client.WithBackoff(0, time.Second),
		client.WithBackoff(2*time.Second, time.Second),
		client.WithHTTPClient(nil),
	} {
		if _, err := client.New("", "", opt); err == nil {
			t.Error("New accepted a bad option")
		}
	}
}

func TestPollWithNothingToDeliver(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]func(w http.ResponseWriter){
		"null":       func(w http.ResponseWriter) { io.WriteString(w, "null") },
		"null+space": func(w http.ResponseWriter) { io.WriteString(w, " null\n") },
		"empty":      func(w http.ResponseWriter) {},
		"blank":      func(w http.ResponseWriter) { io.WriteString(w, " \n") },
		"204":        func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newScript(t, func(_ int, w http.ResponseWriter, _ *http.Request) { answer(w) })
			w, err := s.client().PollWork(t.Context(), "env_1", client.PollParams{})
			if w != nil || err != nil {
				t.Fatalf("poll: %+v %v", w, err)
			}
			// Any other call needs its object.
			if w, err := s.client().GetWork(t.Context(), "env_1", "work_1"); w != nil || err == nil {
				t.Fatalf("get: %+v %v", w, err)
			}
		})
	}
}

func TestWorkKeepsHeartbeatText(t *testing.T) {
	t.Parallel()
	s := newScript(t, answering(workJSON))
	w, err := s.client().PollWork(t.Context(), "env_1", client.PollParams{})
	if err != nil || w == nil {
		t.Fatalf("poll %+v %v", w, err)
	}
	// A service that writes an offset: the text is kept as sent, the time is the instant.
	if w.LatestHeartbeatAtRaw != "2026-07-01T10:15:08.120394+02:00" ||
		!w.LatestHeartbeatAt.Equal(time.Date(2026, 7, 1, 8, 15, 8, 120394000, time.UTC)) ||
		w.StartedAt != nil || w.AcknowledgedAt == nil || w.State != client.StateStarting {
		t.Fatalf("decoded %+v", w)
	}
}

func TestErrorBodies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   client.Error
		text   string
	}{
		{
			name: "html", status: 502, header: map[string]string{"x-request-id": "rid-1", "Content-Type": "text/html"},
			body: "<html>bad gateway</html>\n",
			want: client.Error{StatusCode: 502, Message: "<html>bad gateway</html>", RequestID: "rid-1"},
			text: "berth: HTTP 502: <html>bad gateway</html> (request_id=rid-1)",
		},
		{
			name: "empty", status: 503,
			want: client.Error{StatusCode: 503, Message: "Service Unavailable"},
			text: "berth: HTTP 503: Service Unavailable",
		},
		{
			name: "envelope", status: 400, header: map[string]string{"x-request-id": "from-header"},
			body: `{"type":"error","request_id":"from-body","error":{"type":"invalid_request_error","message":"limit must be a positive integer","param":"limit"}}`,
			want: client.Error{StatusCode: 400, Type: "invalid_request_error", Message: "limit must be a positive integer", Param: "limit", RequestID: "from-body"},
			text: "berth: HTTP 400 invalid_request_error: limit must be a positive integer (request_id=from-body)",
		},
		{
			name: "412", status: 412,
			body: `{"type":"error","request_id":"r","error":{"type":"precondition_failed_error","message":"stale","details":{"current_state":{"state":"active","ttl_seconds":60,"last_heartbeat":null}}}}`,
			want: client.Error{StatusCode: 412, Type: "precondition_failed_error", Message: "stale", RequestID: "r",
				Details:      json.RawMessage(`{"current_state":{"state":"active","ttl_seconds":60,"last_heartbeat":null}}`),
				CurrentState: &client.HeartbeatState{State: client.StateActive, TTLSeconds: 60}},
			text: "berth: HTTP 412 precondition_failed_error: stale (request_id=r)",
		},
		{
			name: "other JSON", status: 400, body: `{"error":"nope"}`,
			want: client.Error{StatusCode: 400, Message: `{"error":"nope"}`},
			text: `berth: HTTP 400: {"error":"nope"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScript(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, err := s.client(client.WithMaxRetries(0)).AckWork(t.Context(), "env_1", "work_1", client.AckParams{})
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %T %v", err, err)
			}
			if e.StatusCode != tc.want.StatusCode || e.Type != tc.want.Type || e.Message != tc.want.Message ||
				e.Param != tc.want.Param || e.RequestID != tc.want.RequestID || string(e.Details) != string(tc.want.Details) ||
				(e.CurrentState == nil) != (tc.want.CurrentState == nil) ||
				(e.CurrentState != nil && *e.CurrentState != *tc.want.CurrentState) {
				t.Errorf("got %+v (state %+v), want %+v", e, e.CurrentState, tc.want)
			}
			if e.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", e.Error(), tc.text)
			}
		})
	}
}

func TestUndecodableSuccess(t *testing.T) {
	t.Parallel()
	s := newScript(t, answering(`<html>ok</html>`))
	_, err := s.client().GetEnvironment(t.Context(), "env_1")
	var e *client.Error
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("err = %v", err)
	}
}
