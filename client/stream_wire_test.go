package client_test

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// evJSON is a stored event's JSON with the given id and type.
func evJSON(id, typ string) string {
	return `{"id":"` + id + `","type":"` + typ + `","created_at":"2026-07-01T08:15:06Z"}`
}

// sse answers 200 text/event-stream with body.
func sse(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, body)
}

// collect runs a stream against the script from LastEventID evt_0 and returns what it
// yielded and its final error.
func collect(t *testing.T, s *script) ([]string, error) {
	t.Helper()
	var got []string
	for e, err := range s.client().StreamEvents(t.Context(), "sess_1", client.StreamEventsParams{LastEventID: "evt_0"}) {
		if err != nil {
			return got, err
		}
		got = append(got, e.ID+" "+e.Type)
	}
	return got, nil
}

// TestStreamEventsParsesFrames: comments, pings, frames without data, CRLF and CR line
// ends, a byte order mark, data split over lines and unknown fields.
func TestStreamEventsParsesFrames(t *testing.T) {
	t.Parallel()
	s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) {
		sse(w, "\uFEFF: hello\n\n"+
			"id: evt_1\nevent: user.message\ndata: "+evJSON("evt_1", "user.message")+"\n\n"+
			": heartbeat\n\n"+
			"event: ping\ndata: {}\n\n"+
			"id: evt_x\nevent: nothing\n\n"+
			"retry: 1000\r\nid: evt_2\r\nevent: agent.message\r\ndata: "+evJSON("evt_2", "agent.message")+"\r\n\r\n"+
			"id:evt_3\revent:system.message\rdata:{\"id\":\"evt_3\",\rdata:\"type\":\"system.message\"}\r\r"+
			"id: evt_4\nevent: session.deleted\ndata: "+evJSON("evt_4", "session.deleted")+"\n\n"+
			"id: evt_5\nevent: user.message\ndata: "+evJSON("evt_5", "user.message")+"\n\n")
	})
	got, err := collect(t, s)
	want := []string{"evt_1 user.message", "evt_2 agent.message", "evt_3 system.message", "evt_4 session.deleted"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %q, %v; want %q and a clean end at session.deleted", got, err, want)
	}
	req := s.requests()[0]
	if req.URI != "/api/v1/cloud/sessions/sess_1/events/stream" || req.Header.Get("Accept") != "text/event-stream" ||
		req.Header.Get("Last-Event-ID") != "evt_0" || req.Header.Get("Authorization") != "Bearer pt-test" {
		t.Errorf("request %s %v", req.URI, req.Header)
	}
}

// TestStreamEventsReconnects: an end of stream before a terminal event, a cut frame, a
// 503 and a 429 are reconnected, each time with Last-Event-ID of the last event yielded;
// an event cut off by the end of a connection is not yielded.
func TestStreamEventsReconnects(t *testing.T) {
	t.Parallel()
	s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			sse(w, "id: evt_1\nevent: user.message\ndata: "+evJSON("evt_1", "user.message")+"\n\n")
		case 2:
			sse(w, "id: evt_2\nevent: user.message\ndata: "+evJSON("evt_2", "user.message")+"\n\nid: evt_3\nevent: user.mess")
		case 3:
			errorAnswer(w, 503, "api_error", "shutting down")
		case 4:
			w.Header().Set("Retry-After", "0")
			errorAnswer(w, 429, "rate_limit_error", "slow down")
		case 5:
			resetConnection(t, w)
		default:
			sse(w, "id: evt_3\nevent: user.message\ndata: "+evJSON("evt_3", "user.message")+"\n\n"+
				"id: evt_4\nevent: session.status_terminated\ndata: "+evJSON("evt_4", "session.status_terminated")+"\n\n")
		}
	})
	got, err := collect(t, s)
	want := []string{"evt_1 user.message", "evt_2 user.message", "evt_3 user.message", "evt_4 session.status_terminated"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	var last []string
	for _, r := range s.requests() {
		last = append(last, r.Header.Get("Last-Event-ID"))
	}
	if want := []string{"evt_0", "evt_1", "evt_2", "evt_2", "evt_2", "evt_2"}; !slices.Equal(last, want) {
		t.Errorf("Last-Event-ID per connection %q, want %q", last, want)
	}
}

// TestStreamEventsEnds: what ends a stream with an error, after how many connections.
func TestStreamEventsEnds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		handle   func(w http.ResponseWriter)
		status   int // of the *client.Error; 0: another error
		wantErr  error
		attempts int
	}{
		{name: "404", handle: func(w http.ResponseWriter) { errorAnswer(w, 404, "not_found_error", "no session") }, status: 404, attempts: 1},
		{name: "403", handle: func(w http.ResponseWriter) { errorAnswer(w, 403, "permission_error", "no") }, status: 403, attempts: 1},
		{name: "409 never retried", handle: func(w http.ResponseWriter) { errorAnswer(w, 409, "conflict_error", "no") }, status: 409, attempts: 1},
		{name: "x-should-retry false", handle: func(w http.ResponseWriter) {
			w.Header().Set("x-should-retry", "false")
			errorAnswer(w, 503, "api_error", "down")
		}, status: 503, attempts: 1},
		{name: "error event", handle: func(w http.ResponseWriter) {
			sse(w, `event: error`+"\n"+`data: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}`+"\n\n")
		}, status: 200, attempts: 1},
		{name: "done", handle: func(w http.ResponseWriter) { sse(w, "data: [DONE]\n\n") }, wantErr: client.ErrStreamEnded, attempts: 1},
		{name: "not an event", handle: func(w http.ResponseWriter) { sse(w, "id: evt_1\ndata: {nope\n\n") }, attempts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) { tc.handle(w) })
			got, err := collect(t, s)
			if len(got) != 0 || err == nil {
				t.Fatalf("got %q, %v; want an error", got, err)
			}
			var e *client.Error
			switch {
			case tc.status != 0:
				if !errors.As(err, &e) || e.StatusCode != tc.status {
					t.Errorf("err = %v, want *client.Error %d", err, tc.status)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
			default:
				if errors.As(err, &e) || !strings.Contains(err.Error(), "evt_1") {
					t.Errorf("err = %v", err)
				}
			}
			if n := s.attempts(); n != tc.attempts {
				t.Errorf("%d connections, want %d", n, tc.attempts)
			}
		})
	}
}

// TestStreamEventsShouldRetryHeader: x-should-retry: true makes a 400 worth a reconnection.
func TestStreamEventsShouldRetryHeader(t *testing.T) {
	t.Parallel()
	s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("x-should-retry", "true")
			errorAnswer(w, 400, "invalid_request_error", "later")
			return
		}
		sse(w, "id: evt_1\nevent: session.deleted\ndata: "+evJSON("evt_1", "session.deleted")+"\n\n")
	})
	got, err := collect(t, s)
	if err != nil || len(got) != 1 || s.attempts() != 2 {
		t.Fatalf("got %q, %v after %d connections", got, err, s.attempts())
	}
}

// TestStreamEventsBreak: breaking the loop closes the connection and connects no more.
func TestStreamEventsBreak(t *testing.T) {
	t.Parallel()
	s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) {
		sse(w, "id: evt_1\nevent: user.message\ndata: "+evJSON("evt_1", "user.message")+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	for e, err := range s.client().StreamEvents(t.Context(), "sess_1", client.StreamEventsParams{LastEventID: "evt_0"}) {
		if err != nil || e.ID != "evt_1" {
			t.Fatalf("%v %v", e, err)
		}
		break
	}
	if s.attempts() != 1 {
		t.Errorf("%d connections", s.attempts())
	}
}

// TestStreamEventsFirstConnection: until a connection has been made, failures are retried
// as any GET (WithMaxRetries), then end the stream.
func TestStreamEventsFirstConnection(t *testing.T) {
	t.Parallel()
	s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) { resetConnection(t, w) })
	reconnects := 0
	var err error
	for _, err = range s.client(client.WithMaxRetries(2)).StreamEvents(t.Context(), "sess_1", client.StreamEventsParams{
		LastEventID: "evt_0", OnReconnect: func(error, time.Duration) { reconnects++ }}) {
	}
	var e *client.Error
	if err == nil || errors.As(err, &e) || s.attempts() != 3 || reconnects != 2 {
		t.Fatalf("err %v after %d connections and %d reconnects, want a transport error after 3 and 2", err, s.attempts(), reconnects)
	}
}
