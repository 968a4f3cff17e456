package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
)

// An integer query parameter is plain digits: a leading "+" (sent escaped as %2B; a bare
// "+" in a query is a space) is refused with 400 naming the parameter, block_ms like the
// others.
func TestIntegerParametersRefuseASign(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	item := "work_00000000000000000000000000000001"
	cases := []struct{ method, path, param string }{
		{"GET", "/environments/" + env + "/work/poll?block_ms=", "block_ms"},
		{"GET", "/environments/" + env + "/work/poll?reclaim_older_than_ms=", "reclaim_older_than_ms"},
		{"POST", workPath(env, item, "/heartbeat") + "?desired_ttl_seconds=", "desired_ttl_seconds"},
		{"GET", "/environments?limit=", "limit"},
	}
	for _, c := range cases {
		for _, v := range []string{"%2B5", "+5", "%2B999", "%205", "5%20"} {
			r := h.do(c.method, c.path+v, "")
			wantError(t, r, 400, "invalid_request_error", c.param)
		}
		// Plain digits are fine.
		if r := h.do(c.method, c.path+"5", ""); r.Status == 400 {
			t.Errorf("%s %s5: %s", c.method, c.path, r.Body)
		}
	}
}

// A path not in canonical form (an empty, "." or ".." segment) is 404 not_found_error with
// the error envelope and x-request-id, for every method, rather than the mux's redirect
// with an HTML body; nothing is created through it. So is a request target of "*" or one
// without a path (CONNECT host:port). A method a path does not take is 405 with the
// envelope, never the mux's own text.
func TestUncleanPathsAreEnvelopes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	b := api.BasePath
	paths := []string{
		"//environments",
		b + "/./environments",
		b + "//environments",
		b + "/environments/.",
		b + "/environments/..",
		b + "/sessions/../environments",
		b + "/environments/" + env + "/work/../../" + env,
		b + "/environments/" + env + "//work/poll",
		"/./healthz",
		"//metrics",
	}
	for _, p := range paths {
		for _, m := range []string{"GET", "POST", "DELETE"} {
			body := ""
			if m == "POST" {
				body = `{"name":"sneaky","config":{"type":"self_hosted"}}`
			}
			r := h.doRaw(m, p, body, header("x-request-id", "unclean-1"))
			wantError(t, r, 404, "not_found_error", "")
			if r.Header.Get("Location") != "" || r.Header.Get("x-request-id") != "unclean-1" {
				t.Errorf("%s %s: Location %q, x-request-id %q", m, p, r.Header.Get("Location"), r.Header.Get("x-request-id"))
			}
		}
	}
	if ids := tcList(t, h, "/environments?limit=100").ids(); len(ids) != 1 {
		t.Errorf("environments %v, want only %s", ids, env)
	}
	for _, req := range []string{
		"GET * HTTP/1.1\r\nHost: berth\r\n\r\n",
		"CONNECT berth:443 HTTP/1.1\r\nHost: berth:443\r\n\r\n",
	} {
		r := rawExchange(t, h, req)
		wantError(t, r, 404, "not_found_error", "")
		checkRawAnswer(t, req, r)
	}
	for _, req := range []string{
		"PUT " + b + "/environments HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\n\r\n",
		"CONNECT " + b + "/environments HTTP/1.1\r\nHost: berth\r\n\r\n",
	} {
		r := rawExchange(t, h, req)
		wantError(t, r, 405, "invalid_request_error", "")
		checkRawAnswer(t, req, r)
	}
}

// The answers net/http gives by itself before any handler runs (a request it cannot
// parse, headers too large, an unsupported Transfer-Encoding, HTTP version or Expect) are
// the error envelope with x-request-id too, with net/http's status; each is counted in
// berth_http_requests_total under route "unparsed".
func TestNetHTTPAnswersAreEnvelopes(t *testing.T) {
	t.Parallel()
	const maxHeaderBytes = 1 << 10
	st := openTestStore(t)
	srv := api.New(api.Config{Store: st, Logger: discardLogger()})
	ts := httptest.NewUnstartedServer(srv)
	ts.Listener = srv.Listener(ts.Listener)
	ts.Config.MaxHeaderBytes = maxHeaderBytes
	// Only a safety net, should net/http read more than the test sends (see below): a
	// request it is still waiting for ends with no answer, failing the test, not hanging it.
	ts.Config.ReadHeaderTimeout = time.Minute
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		st.Close()
	})
	h := &harness{t: t, srv: srv, store: st, url: ts.URL, client: http.DefaultClient}

	// net/http reads at most MaxHeaderBytes+4096 bytes of a request's head. Exactly that
	// much, without the blank line that would end the head, is too large, and leaves no
	// byte unread (unread bytes would make the server's close a reset that can destroy
	// the answer before it is read).
	head := "GET " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\nX-Big: "
	tooLarge := head + strings.Repeat("a", maxHeaderBytes+4096-len(head))

	cases := []struct {
		name, req string
		status    int
		typ       string
	}{
		{"bad percent-escape", "GET " + api.BasePath + "/environments/%zz HTTP/1.1\r\nHost: berth\r\n\r\n", 400, "invalid_request_error"},
		{"bad percent-escape, POST", "POST " + api.BasePath + "/environments/%zz/archive HTTP/1.1\r\nHost: berth\r\nContent-Length: 2\r\n\r\n{}", 400, "invalid_request_error"},
		{"malformed request line", "G@T / HTTP/1.1\r\nHost: berth\r\n\r\n", 400, "invalid_request_error"},
		{"no Host", "GET " + api.BasePath + "/environments HTTP/1.1\r\n\r\n", 400, "invalid_request_error"},
		{"invalid header name", "GET " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\nBad Name: x\r\n\r\n", 400, "invalid_request_error"},
		{"headers too large", tooLarge, 431, "invalid_request_error"},
		{"unknown Transfer-Encoding", "POST " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "api_error"},
		{"HTTP/2.0 over HTTP/1", "GET " + api.BasePath + "/environments HTTP/2.0\r\nHost: berth\r\n\r\n", 505, "api_error"},
		{"unknown Expect", "GET " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\nExpect: teapot\r\n\r\n", 417, "invalid_request_error"},
	}
	counted := map[int]float64{}
	for _, c := range cases {
		r := rawExchange(t, h, c.req)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d; %s", c.name, r.Status, c.status, r.Body)
		}
		wantError(t, r, c.status, c.typ, "")
		checkRawAnswer(t, c.name, r)
		counted[c.status]++
	}
	m := h.doRaw("GET", "/metrics", "", as(""))
	for code, want := range counted {
		sample := fmt.Sprintf(`berth_http_requests_total{code="%d",method="unknown",route="unparsed"}`, code)
		if got, _ := metricValue(m.Body, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
}

// rawExchange writes req as it is on a connection of its own to h's server and reads one
// answer.
func rawExchange(t *testing.T, h *harness, req string) *response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write %q: %v", req[:min(len(req), 60)], err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("answer to %q: %v", req[:min(len(req), 60)], err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("answer to %q: %v", req[:min(len(req), 60)], err)
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// checkRawAnswer asserts what API.md §1 says of every error answer: JSON, x-request-id,
// the envelope with request_id equal to it.
func checkRawAnswer(t *testing.T, what string, r *response) {
	t.Helper()
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("x-request-id") == "" {
		t.Errorf("%s: Content-Type %q, x-request-id %q", what, r.Header.Get("Content-Type"), r.Header.Get("x-request-id"))
	}
	checkEnvelope(t, r)
}
