package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/testserver"
)

// The README shows main.go as it is.
func TestREADMEShowsTheExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(readme, []byte("\n## Running Anthropic's workers against berth\n"))
	if !ok {
		t.Fatal("README has no section \"Running Anthropic's workers against berth\"")
	}
	if i := bytes.Index(section, []byte("\n## ")); i >= 0 {
		section = section[:i]
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(section, append(append([]byte("```go\n"), src...), "```\n"...)) {
		t.Error("the README's section does not show examples/anthropic-worker/main.go as it is")
	}
}

// The example, as the README runs it (environment variables, berth's root as the base
// URL, a worker token as the environment key), serves a session: an agent.tool_use for
// bash posted through berth gets its user.tool_result, and when the worker is stopped
// (its context ends, as on SIGINT) the item it holds is stopped.
func TestExampleServesASession(t *testing.T) {
	st := testserver.OpenStore(t)
	srv := api.New(api.Config{Store: st})
	if !hasStream(srv) {
		t.Skip("the session event stream (API.md §7) is not served yet")
	}
	answered := make(chan string, 1024) // "METHOD path status" of the worker's requests
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, status: 200}
		srv.ServeHTTP(rec, r)
		if strings.HasPrefix(r.URL.Path, api.AnthropicBasePath+"/") && !strings.HasSuffix(r.URL.Path, "/stream") {
			select {
			case answered <- r.Method + " " + r.URL.Path + " " + http.StatusText(rec.status):
			default:
			}
		}
	}))
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	admin, secret := api.NewToken("admin", api.RoleAdmin, "", testserver.Epoch)
	if _, err := st.CreateToken(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+api.BasePath+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		var out map[string]any
		json.Unmarshal(b, &out)
		return out
	}
	env := call("POST", "/environments", `{"name":"byoc","config":{"type":"self_hosted"}}`)["id"].(string)
	key := call("POST", "/tokens", `{"name":"sdk-worker","role":"worker","environment_id":"`+env+`"}`)["secret"].(string)
	sess := call("POST", "/sessions", `{"agent":"agent_demo","environment_id":"`+env+`"}`)["id"].(string)

	t.Setenv("ANTHROPIC_BASE_URL", ts.URL)
	t.Setenv("ANTHROPIC_ENVIRONMENT_ID", env)
	t.Setenv("ANTHROPIC_ENVIRONMENT_KEY", key)
	t.Setenv("ANTHROPIC_API_KEY", "")
	t.Chdir(t.TempDir()) // the worker's tools work in the current directory
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()

	// The worker has read the session's history once it lists its events; the tool use
	// then comes to it on the stream.
	await := func(want string) {
		t.Helper()
		for got := range answered {
			if got == want {
				return
			}
		}
	}
	await("GET " + api.AnthropicBasePath + "/sessions/" + sess + "/events OK")
	toolUse := call("POST", "/sessions/"+sess+"/events",
		`{"events":[{"type":"agent.tool_use","name":"bash","input":{"command":"echo hi"}}]}`)["data"].([]any)[0].(map[string]any)["id"]
	await("POST " + api.AnthropicBasePath + "/sessions/" + sess + "/events OK")
	var result map[string]any
	for _, e := range call("GET", "/sessions/"+sess+"/events?limit=1000", "")["data"].([]any) {
		if ev := e.(map[string]any); ev["type"] == "user.tool_result" && ev["tool_use_id"] == toolUse {
			result = ev
		}
	}
	if content, _ := json.Marshal(result["content"]); result["is_error"] != false || !strings.Contains(string(content), `hi`) {
		t.Fatalf("user.tool_result: %v", result)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	items := call("GET", "/environments/"+env+"/work", "")["data"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["state"] != "stopped" {
		t.Errorf("work items after the worker stopped: %v", items)
	}
}

func hasStream(srv *api.Server) bool {
	for _, rt := range srv.Routes() {
		if rt.Pattern == api.AnthropicBasePath+"/sessions/{session_id}/events/stream" {
			return true
		}
	}
	return false
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
