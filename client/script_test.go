package client_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// script is a stand-in server whose answers the test writes, for what a real berth
// never does (fail, drop connections, send odd bodies). It records every request.
type script struct {
	t      *testing.T
	url    string
	handle func(n int, w http.ResponseWriter, r *http.Request) // n counts requests from 1

	mu   sync.Mutex
	seen []seenRequest
}

// seenRequest is one request as the script received it.
type seenRequest struct {
	Method string
	URI    string // the request target as sent: escaped path and query
	Header http.Header
	Body   []byte
}

func newScript(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *script {
	t.Helper()
	s := &script{t: t, handle: handle}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.seen = append(s.seen, seenRequest{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: body})
		n := len(s.seen)
		s.mu.Unlock()
		s.handle(n, w, r)
	}))
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// client returns a client of the script under the usual base path. Backoff is tiny, and
// keep-alives are off so that net/http never retries a request on a reused connection
// by itself: every attempt the script counts is one the client made.
func (s *script) client(opts ...client.Option) *client.Client {
	s.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	opts = append([]client.Option{client.WithHTTPClient(hc), client.WithBackoff(time.Millisecond, 2*time.Millisecond)}, opts...)
	c, err := client.New(s.url+"/api/v1/cloud", "pt-test", opts...)
	if err != nil {
		s.t.Fatalf("client.New: %v", err)
	}
	return c
}

// requests returns the requests received so far.
func (s *script) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

// attempts is how many requests the script received.
func (s *script) attempts() int { return len(s.requests()) }

// failing answers with status (and the error envelope) for the first failures requests,
// then 200 with body.
func failing(failures, status int, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, r *http.Request) {
		if n <= failures {
			errorAnswer(w, status, "api_error", "try again")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

// errorAnswer writes berth's error envelope.
func errorAnswer(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-request-id", "req-script")
	w.WriteHeader(status)
	io.WriteString(w, `{"type":"error","request_id":"req-script","error":{"type":"`+typ+`","message":"`+msg+`"}}`)
}

// resetConnection drops the request's connection with a TCP reset, answering nothing.
func resetConnection(t *testing.T, w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}

const (
	envJSON  = `{"id":"env_1","type":"environment","name":"n","description":"","config":{"type":"self_hosted"},"metadata":{},"archived_at":null,"created_at":"2026-07-01T08:15:06.120394Z","updated_at":"2026-07-01T08:15:06.120394Z"}`
	workJSON = `{"id":"work_1","type":"work","environment_id":"env_1","data":{"type":"session","id":"sess_1"},"state":"starting","created_at":"2026-07-01T08:15:06Z","acknowledged_at":"2026-07-01T08:15:07.5Z","started_at":null,"latest_heartbeat_at":"2026-07-01T10:15:08.120394+02:00","stop_requested_at":null,"stopped_at":null,"metadata":{}}`
)
