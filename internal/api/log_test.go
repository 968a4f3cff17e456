package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/testserver"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// logLines decodes every JSON log line written to b so far.
func logLines(t *testing.T, b *lockedBuffer) (out []map[string]any, raw string) {
	t.Helper()
	raw = b.String()
	for _, l := range strings.Split(strings.TrimSpace(raw), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out, raw
}

// Every line logged while serving a request carries its request_id (the access line, and
// the warning of a failed readiness check); no line holds a token secret; a request made
// in-process under api.Quiet logs its access line at Debug.
func TestLogLinesCarryTheRequestIDAndNoSecret(t *testing.T) {
	t.Parallel()
	st := openTestStore(t)
	logs := &lockedBuffer{}
	clock := testserver.NewClock()
	srv := api.New(api.Config{Store: st, Now: clock.Now,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	h := &harness{t: t, srv: srv, store: st, clock: clock, url: ts.URL}
	h.admin = h.token(api.RoleAdmin, "")
	unknown := "pt-" + strings.Repeat("Z", 43)

	ids := map[string]int{} // request ID → its expected status
	record := func(r *response) {
		ids[r.Header.Get("x-request-id")] = r.Status
	}
	body := `{"name":"logs","config":{"type":"self_hosted"}}`
	record(h.do("POST", "/environments", body, header("Idempotency-Key", "k1")))
	record(h.do("POST", "/environments", body, header("Idempotency-Key", "k1"))) // replay
	record(h.do("GET", "/environments", ""))
	record(h.do("GET", "/environments", "", as(unknown)))
	record(h.do("GET", "/no-such-route", ""))
	record(h.do("GET", "/environments", "", header("x-request-id", "caller-chosen-id-1")))

	// In-process, quiet: the dashboard's way.
	req := httptest.NewRequestWithContext(api.Quiet(context.Background()), "GET", api.BasePath+"/environments", nil)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	quietID := rec.Header().Get("x-request-id")
	ids[quietID] = rec.Code

	// A failed readiness check logs a warning during the request.
	st.Close()
	ready := h.doRaw("GET", "/readyz", "", as(""))
	if ready.Status != http.StatusServiceUnavailable {
		t.Fatalf("readyz on a closed store: %d", ready.Status)
	}
	record(ready)

	lines, raw := logLines(t, logs)
	for _, secret := range []string{h.admin, unknown, "Bearer"} {
		if strings.Contains(raw, secret) {
			t.Errorf("the log holds %q:\n%s", secret, raw)
		}
	}
	seen := map[string]int{}
	warned := false
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		if l["msg"] == "request" {
			if _, ok := ids[id]; !ok {
				t.Errorf("access line with request_id %q, not one of the answers': %v", id, l)
				continue
			}
			seen[id]++
			if int(l["status"].(float64)) != ids[id] {
				t.Errorf("access line %v: status, want %d", l, ids[id])
			}
			wantLevel := "INFO"
			if id == quietID {
				wantLevel = "DEBUG"
			}
			if l["level"] != wantLevel {
				t.Errorf("access line %v: level, want %s", l, wantLevel)
			}
		}
		if strings.HasPrefix(l["msg"].(string), "readyz") {
			warned = true
			if id != ready.Header.Get("x-request-id") {
				t.Errorf("readiness warning %v: request_id, want %s", l, ready.Header.Get("x-request-id"))
			}
		}
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("request %s: %d access lines, want 1", id, seen[id])
		}
	}
	if seen["caller-chosen-id-1"] != 1 {
		t.Errorf("the caller's x-request-id is not the logged one:\n%s", raw)
	}
	if !warned {
		t.Errorf("no readiness warning in the log:\n%s", raw)
	}
}

// A poll that delivered nothing (200 null) is logged at Debug, so that idle workers do
// not fill the log at Info; a poll that delivered an item, or failed, stays at Info, as
// does every other request.
func TestEmptyPollsAreLoggedAtDebug(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	h := newHarnessWith(t, func(c *api.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	env := h.do("POST", "/environments", `{"name":"polls","config":{"type":"self_hosted"}}`).str(t, "id")
	poll := "/environments/" + env + "/work/poll"
	want := map[string]string{} // request ID → the access line's level
	record := func(r *response, level string) {
		t.Helper()
		want[r.Header.Get("x-request-id")] = level
	}
	empty := h.do("GET", poll, "", header("Worker-ID", "w1"))
	if empty.Status != 200 || string(empty.Body) != "null" {
		t.Fatalf("poll of an empty queue: %d %s", empty.Status, empty.Body)
	}
	record(empty, "DEBUG")
	record(h.do("POST", "/sessions", `{"agent":"agent_log","environment_id":"`+env+`"}`), "INFO")
	delivered := h.do("GET", poll, "", header("Worker-ID", "w1"))
	if delivered.Status != 200 || delivered.str(t, "type") != "work" {
		t.Fatalf("poll after a session: %d %s", delivered.Status, delivered.Body)
	}
	record(delivered, "INFO")
	record(h.do("GET", poll+"?block_ms=1000", ""), "INFO")                                          // 400
	record(h.do("GET", "/environments/env_0190f3be4fd2475d9a784bf2c739e119/work/poll", ""), "INFO") // 404
	record(h.do("GET", "/environments/"+env+"/work/stats", ""), "INFO")

	lines, raw := logLines(t, logs)
	seen := 0
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		level, ok := want[id]
		if l["msg"] != "request" || !ok {
			continue
		}
		seen++
		if l["level"] != level {
			t.Errorf("access line %v: level, want %s", l, level)
		}
	}
	if seen != len(want) {
		t.Errorf("%d access lines of the %d requests:\n%s", seen, len(want), raw)
	}
}
