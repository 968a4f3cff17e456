package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/work"
)

// frame is one server-sent event, or a comment (Comment set).
type frame struct {
	ID, Event, Data string
	Comment         string
}

// eventStream is an open GET /sessions/{id}/events/stream.
type eventStream struct {
	t      *testing.T
	res    *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
}

// openStream opens a session's event stream as the admin (opts change that), and
// returns it once its headers have arrived: from then on the stream has begun, and every
// event committed later is on it.
func (h *harness) openStream(sessionID string, opts ...reqOpt) *eventStream {
	h.t.Helper()
	s, r := h.tryStream(api.BasePath+"/sessions/"+sessionID+"/events/stream", opts...)
	if s == nil {
		h.t.Fatalf("stream of %s: %d %s", sessionID, r.Status, r.Body)
	}
	return s
}

// tryStream opens path as a stream; a refusal comes back as the response instead, after
// the checks every answer gets.
func (h *harness) tryStream(path string, opts ...reqOpt) (*eventStream, *response) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", h.url+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.admin)
	for _, o := range opts {
		o(req)
	}
	res, err := h.httpClient().Do(req)
	if err != nil {
		cancel()
		h.t.Fatalf("stream %s: %v", path, err)
	}
	if res.StatusCode != 200 {
		defer cancel()
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		r := &response{Status: res.StatusCode, Header: res.Header, Body: b}
		h.check("GET", req.URL, r)
		return nil, r
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		h.t.Errorf("stream Content-Type %q, want text/event-stream", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		h.t.Errorf("stream Cache-Control %q, want no-cache", cc)
	}
	s := &eventStream{t: h.t, res: res, rd: bufio.NewReader(res.Body), cancel: cancel}
	h.t.Cleanup(s.close)
	return s, nil
}

// streamRefused asserts that a session's stream is refused with the given error.
func (h *harness) streamRefused(sessionID string, status int, errType string, opts ...reqOpt) {
	h.t.Helper()
	s, r := h.tryStream(api.BasePath+"/sessions/"+sessionID+"/events/stream", opts...)
	if s != nil {
		h.t.Fatalf("the stream of %s opened, want %d %s", sessionID, status, errType)
	}
	wantError(h.t, r, status, errType, "")
}

func (s *eventStream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next reads the next frame or comment; io.EOF at the stream's clean end.
func (s *eventStream) next() (frame, error) {
	var f frame
	seen := false
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			if err == io.EOF && (seen || line != "") {
				return f, io.ErrUnexpectedEOF
			}
			return f, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return f, nil
			}
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			f.Comment = value
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			if f.Data != "" {
				s.t.Errorf("a frame with more than one data line: %q", line)
			}
			f.Data = value
		default:
			s.t.Errorf("unexpected line %q", line)
		}
	}
}

// event reads the next event frame, skipping heartbeats, and checks that its id and
// event lines agree with its data.
func (s *eventStream) event() frame {
	s.t.Helper()
	for {
		f, err := s.next()
		if err != nil {
			s.t.Fatalf("stream: %v", err)
		}
		if f.Comment != "" {
			continue
		}
		var obj struct{ ID, Type string }
		if err := json.Unmarshal([]byte(f.Data), &obj); err != nil {
			s.t.Fatalf("frame data %q: %v", f.Data, err)
		}
		if obj.ID != f.ID || obj.Type != f.Event {
			s.t.Fatalf("frame id %q event %q, data says id %q type %q", f.ID, f.Event, obj.ID, obj.Type)
		}
		return f
	}
}

// ended asserts the stream's clean end, after any heartbeats.
func (s *eventStream) ended() {
	s.t.Helper()
	for {
		f, err := s.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.t.Fatalf("stream ended with %v, want a clean end", err)
		}
		if f.Comment == "" {
			s.t.Fatalf("stream went on with %+v, want its end", f)
		}
	}
}

// send posts events to a session as the admin and returns the stored events.
func (h *harness) send(sessionID string, events ...string) []json.RawMessage {
	h.t.Helper()
	r := h.do("POST", "/sessions/"+sessionID+"/events", `{"events":[`+strings.Join(events, ",")+`]}`)
	wantStatus(h.t, r, 200)
	var out struct{ Data []json.RawMessage }
	r.decode(h.t, &out)
	return out.Data
}

func userMessage(text string) string {
	return `{"type":"user.message","content":[{"type":"text","text":` + jsonBody(text) + `}]}`
}

func eventID(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var e struct{ ID string }
	if err := json.Unmarshal(raw, &e); err != nil || e.ID == "" {
		t.Fatalf("event %s has no id", raw)
	}
	return e.ID
}

// history lists every event of a session, ascending.
func (h *harness) history(sessionID string) []json.RawMessage {
	h.t.Helper()
	var all []json.RawMessage
	q := "?limit=1000"
	for {
		r := h.do("GET", "/sessions/"+sessionID+"/events"+q, "")
		wantStatus(h.t, r, 200)
		var page struct {
			Data     []json.RawMessage
			NextPage *string `json:"next_page"`
		}
		r.decode(h.t, &page)
		all = append(all, page.Data...)
		if page.NextPage == nil {
			return all
		}
		q = "?limit=1000&page=" + *page.NextPage
	}
}

// TestStreamFrames: a stream without Last-Event-ID carries exactly the events committed
// after it began, each as one frame whose data is the stored event as the history
// serves it.
func TestStreamFrames(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	h.send(sess, userMessage("before"))
	s := h.openStream(sess)
	sent := h.send(sess, userMessage("one"), `{"type":"agent.message","content":[{"type":"text","text":"two"}]}`)
	sent = append(sent, h.send(sess, "{\n\"type\": \"user.message\",\n \"content\": [ ]\n}")...)
	hist := h.history(sess)
	if len(hist) != 4 {
		t.Fatalf("history holds %d events, want 4", len(hist))
	}
	for i, want := range sent {
		f := s.event()
		if f.ID != eventID(t, want) || f.Data != string(hist[i+1]) || f.Data != string(want) {
			t.Errorf("frame %d: id %s data %s; want the stored event %s", i, f.ID, f.Data, hist[i+1])
		}
	}
}

// TestStreamResume: Last-Event-ID (header or query) first sends the events after it,
// then the live ones, with no gap and no duplicate.
func TestStreamResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	var ids []string
	for i := range 5 {
		ids = append(ids, eventID(t, h.send(sess, userMessage(fmt.Sprint(i)))[0]))
	}
	for _, opt := range []struct {
		name string
		open func(last string) *eventStream
	}{
		{"header", func(last string) *eventStream { return h.openStream(sess, header("Last-Event-ID", last)) }},
		{"query", func(last string) *eventStream {
			s, r := h.tryStream(api.BasePath + "/sessions/" + sess + "/events/stream?last_event_id=" + last + "&event_deltas[]=x")
			if s == nil {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			return s
		}},
	} {
		s := opt.open(ids[1])
		for _, want := range ids[2:] {
			if f := s.event(); f.ID != want {
				t.Fatalf("%s: resumed stream sent %s, want %s", opt.name, f.ID, want)
			}
		}
		live := eventID(t, h.send(sess, userMessage("live"))[0])
		if f := s.event(); f.ID != live {
			t.Fatalf("%s: stream sent %s after the history, want the live %s", opt.name, f.ID, live)
		}
		ids = append(ids, live)
		s.close()
	}
	// Resuming from the newest event sends only what comes after it.
	s := h.openStream(sess, header("Last-Event-ID", ids[len(ids)-1]))
	live := eventID(t, h.send(sess, userMessage("after"))[0])
	if f := s.event(); f.ID != live {
		t.Fatalf("stream resumed at the newest event sent %s, want %s", f.ID, live)
	}
}

// TestStreamRefusals: what a stream refuses, with the error envelope.
func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env, other := h.env(true), h.env(true)
	sess, otherSess := h.session(env), h.session(other)
	otherEvent := eventID(t, h.send(otherSess, userMessage("x"))[0])
	path := func(s string) string { return api.BasePath + "/sessions/" + s + "/events/stream" }
	for _, c := range []struct {
		name   string
		path   string
		opts   []reqOpt
		status int
		typ    string
		param  string
	}{
		{"malformed Last-Event-ID", path(sess), []reqOpt{header("Last-Event-ID", "nope")}, 400, "invalid_request_error", "Last-Event-ID"},
		{"another session's event", path(sess), []reqOpt{header("Last-Event-ID", otherEvent)}, 400, "invalid_request_error", "Last-Event-ID"},
		{"malformed last_event_id", path(sess) + "?last_event_id=evt_1", nil, 400, "invalid_request_error", "Last-Event-ID"},
		{"unknown session", path("sess_0000000000000000000000000000000a"), nil, 404, "not_found_error", ""},
		{"no token", path(sess), []reqOpt{as("")}, 401, "authentication_error", ""},
		{"worker of another environment", path(sess), []reqOpt{as(h.token(api.RoleWorker, other))}, 403, "permission_error", ""},
	} {
		s, r := h.tryStream(c.path, c.opts...)
		if s != nil {
			t.Errorf("%s: the stream opened", c.name)
			continue
		}
		wantError(t, r, c.status, c.typ, c.param)
	}
	// A worker token of the session's environment may follow it.
	s := h.openStream(sess, as(h.token(api.RoleWorker, env)))
	want := eventID(t, h.send(sess, userMessage("w"))[0])
	if f := s.event(); f.ID != want {
		t.Fatalf("worker's stream sent %s, want %s", f.ID, want)
	}
}

// TestStreamEndsWhenTheSessionIsDeleted: a session.deleted frame, then the clean end.
func TestStreamEndsWhenTheSessionIsDeleted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	s1, s2 := h.openStream(sess), h.openStream(sess)
	wantStatus(t, h.do("DELETE", "/sessions/"+sess, ""), 200)
	for _, s := range []*eventStream{s1, s2} {
		if f := s.event(); f.Event != "session.deleted" {
			t.Fatalf("stream of a deleted session sent %+v, want session.deleted", f)
		}
		s.ended()
	}
	h.streamRefused(sess, 404, "not_found_error")
}

// TestStreamShutdown: shutting the server down ends every stream cleanly, and a stream
// opened afterwards is refused with 503.
func TestStreamShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	s1, s2 := h.openStream(sess), h.openStream(sess)
	h.srv.Shutdown()
	s1.ended()
	s2.ended()
	h.streamRefused(sess, 503, "api_error")
}

// TestStreamHeartbeat: an idle stream gets a heartbeat comment every 15 s (on the
// bubble's clock), and events still come after them.
func TestStreamHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, done := newSyncHarness(t)
		defer done()
		env := h.env(false)
		sess := h.session(env)
		s := h.openStream(sess)
		start := time.Now()
		for i := 1; i <= 3; i++ {
			f, err := s.next()
			if err != nil || f.Comment != "heartbeat" {
				t.Fatalf("heartbeat %d: %+v, %v", i, f, err)
			}
			if d := time.Since(start); d != time.Duration(i)*15*time.Second {
				t.Fatalf("heartbeat %d after %v, want %v", i, d, time.Duration(i)*15*time.Second)
			}
		}
		want := eventID(t, h.send(sess, userMessage("x"))[0])
		if f := s.event(); f.ID != want {
			t.Fatalf("stream sent %s, want %s", f.ID, want)
		}
		s.close()
	})
}

// TestStreamEndsWhenItsTokenIsRevoked: a stream opened with a token that is revoked
// afterwards ends at its next heartbeat, and cannot be opened again.
func TestStreamEndsWhenItsTokenIsRevoked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, done := newSyncHarness(t)
		defer done()
		env := h.env(true)
		sess := h.session(env)
		r := h.do("POST", "/tokens", `{"name":"w","role":"worker","environment_id":"`+env+`"}`)
		wantStatus(t, r, 201)
		tokID, secret := r.str(t, "id"), r.str(t, "secret")
		s := h.openStream(sess, as(secret))
		time.Sleep(16 * time.Second)
		if f, err := s.next(); err != nil || f.Comment != "heartbeat" {
			t.Fatalf("before the revocation: %+v, %v", f, err)
		}
		wantStatus(t, h.do("POST", "/tokens/"+tokID+"/revoke", ""), 200)
		s.ended()
		h.streamRefused(sess, 401, "authentication_error", as(secret))
	})
}

// TestStreamCutsASlowReader: a reader that does not keep up is cut when its buffer is
// full, counted, and resumes with Last-Event-ID without a gap; the writers were never
// held back (every send answered while the reader read nothing).
func TestStreamCutsASlowReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, done := newSyncHarnessWith(t, func(c *api.Config) { c.StreamBuffer = 2 })
		defer done()
		env := h.env(false)
		sess := h.session(env)
		s := h.openStream(sess)
		var ids []string
		for i := range 20 {
			ids = append(ids, eventID(t, h.send(sess, userMessage(fmt.Sprint(i)))[0]))
			synctest.Wait()
		}
		var got []string
		for {
			f, err := s.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("slow stream: %v", err)
			}
			got = append(got, f.ID)
		}
		if len(got) == 0 || len(got) >= len(ids) {
			t.Fatalf("the slow reader got %d of %d events before its end, want it cut", len(got), len(ids))
		}
		if v := h.metric("berth_event_stream_slow_readers_total"); v != 1 {
			t.Errorf("berth_event_stream_slow_readers_total = %v, want 1", v)
		}
		r := h.openStream(sess, header("Last-Event-ID", got[len(got)-1]))
		for _, want := range ids[len(got):] {
			if f := r.event(); f.ID != want {
				t.Fatalf("resumed stream sent %s, want %s", f.ID, want)
			}
		}
		r.close()
	})
}

// TestStreamResumesUnderConcurrentWriters: a reader that reconnects every few events
// with Last-Event-ID, while writers append and a worker acks and stops the session's
// items (status events, written by other transactions than the appends), sees every
// event exactly once, in the order of the history.
func TestStreamResumesUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	const writers, each, cycles = 4, 25, 10
	var wg sync.WaitGroup
	s := h.openStream(sess)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				h.send(sess, userMessage(fmt.Sprintf("%d-%d", w, i)))
			}
		})
	}
	statusEvents := 0
	wg.Go(func() {
		for range cycles {
			// The writers' messages queue a fresh item whenever the session has none.
			it := h.poll(env, "w")
			if it == nil {
				h.send(sess, userMessage("wake"))
				continue
			}
			if r := h.do("POST", workPath(env, it.ID, "/ack"), "", header("Worker-ID", "w")); r.Status == 200 {
				statusEvents++
			}
			if r := h.do("POST", workPath(env, it.ID, "/stop"), `{"force":true}`); r.Status == 200 {
				statusEvents++
			}
		}
	})
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var got []string
	for done := false; !done; {
		// Whether the writers had finished before the history was read: then the
		// history is whole, and the stream has sent it all once it has sent as much.
		select {
		case <-finished:
			done = true
		default:
		}
		hist := h.history(sess)
		for len(got) < len(hist) {
			got = append(got, s.event().ID)
			if len(got)%7 == 0 {
				s.close()
				s = h.openStream(sess, header("Last-Event-ID", got[len(got)-1]))
			}
		}
	}
	if statusEvents == 0 {
		t.Fatal("no item was acknowledged or stopped: the test wrote no status event")
	}
	hist := h.history(sess)
	if len(hist) != len(got) {
		t.Fatalf("the stream sent %d events, the history holds %d", len(got), len(hist))
	}
	for i, e := range hist {
		if id := eventID(t, e); id != got[i] {
			t.Fatalf("event %d: stream sent %s, history has %s", i, got[i], id)
		}
	}
}

// TestStreamStatusEvents: a session's status changes are events in its history and on
// its stream: running at the ack, idle (end_turn) at the stop, once each.
func TestStreamStatusEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	s := h.openStream(sess)
	it := h.poll(env, "w1")
	if it == nil {
		t.Fatal("no item")
	}
	wantStatus(t, h.do("POST", workPath(env, it.ID, "/ack"), "", header("Worker-ID", "w1")), 200)
	f := s.event()
	if f.Event != "session.status_running" {
		t.Fatalf("after the ack the stream sent %+v, want session.status_running", f)
	}
	if st := h.do("GET", "/sessions/"+sess, "").str(t, "status"); st != "running" {
		t.Fatalf("session status %s, want running", st)
	}
	wantStatus(t, h.do("POST", workPath(env, it.ID, "/heartbeat"), ""), 200)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/cancel", ""), 202) // stopping: still running
	wantStatus(t, h.do("POST", workPath(env, it.ID, "/stop"), ""), 200)
	f = s.event()
	var idle struct {
		Type       string
		StopReason struct{ Type string } `json:"stop_reason"`
	}
	json.Unmarshal([]byte(f.Data), &idle)
	if idle.Type != "session.status_idle" || idle.StopReason.Type != "end_turn" {
		t.Fatalf("after the stop the stream sent %s, want session.status_idle with stop_reason end_turn", f.Data)
	}
	var types []string
	for _, e := range h.history(sess) {
		var ev struct{ Type string }
		json.Unmarshal(e, &ev)
		types = append(types, ev.Type)
	}
	if got := strings.Join(types, " "); got != "session.status_running session.status_idle" {
		t.Fatalf("history types %q", got)
	}
}

// TestStreamStatusEventOnLeaseExpiry: an expired lease turns the session idle, with its
// event, written with the expiry.
func TestStreamStatusEventOnLeaseExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	it := h.itemIn(env, "active")
	s := h.openStream(it.Data["id"])
	h.clock.Advance(time.Duration(work.DefaultTTL+1) * time.Second)
	if err := h.srv.ExpireLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := s.event(); f.Event != "session.status_idle" {
		t.Fatalf("after the expiry of %s the stream sent %+v, want session.status_idle", it.ID, f)
	}
}

// TestAgentEvents: who may post which events (API.md §3 "Agent-side events"), and a tool
// use answered by a worker over the stream.
func TestAgentEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	sess := h.session(env)
	worker := h.token(api.RoleWorker, env)
	member := h.token(api.RoleMember, "")
	post := func(secret, events string) *response {
		return h.do("POST", "/sessions/"+sess+"/events", `{"events":[`+events+`]}`, as(secret))
	}
	toolUse := `{"type":"agent.tool_use","name":"bash","input":{"command":"echo hi"}}`
	for _, c := range []struct {
		name, secret, events string
		status               int
		param                string
	}{
		{"member posts a tool use", member, toolUse, 200, ""},
		{"admin posts an agent message", h.admin, `{"type":"agent.message","content":[{"type":"text","text":"hi"}]}`, 200, ""},
		{"admin posts a custom tool use", h.admin, `{"type":"agent.custom_tool_use","name":"x","input":{}}`, 200, ""},
		{"worker posts a message", worker, userMessage("hi"), 200, ""},
		{"worker posts a custom tool result", worker, `{"type":"user.custom_tool_result","custom_tool_use_id":"evt_1","content":[]}`, 200, ""},
		{"worker posts a tool use", worker, toolUse, 403, ""},
		{"worker posts an interrupt", worker, `{"type":"user.interrupt"}`, 403, ""},
		{"admin posts a status event", h.admin, `{"type":"session.status_running"}`, 400, "events[0].type"},
		{"worker posts session.deleted", worker, `{"type":"session.deleted"}`, 400, "events[0].type"},
		{"tool use without a name", h.admin, `{"type":"agent.tool_use","input":{}}`, 400, "events[0].name"},
		{"tool use with an empty name", h.admin, `{"type":"agent.tool_use","name":"","input":{}}`, 400, "events[0].name"},
		{"tool use with an array input", h.admin, `{"type":"agent.tool_use","name":"x","input":[]}`, 400, "events[0].input"},
		{"tool use without input", h.admin, `{"type":"agent.tool_use","name":"x"}`, 400, "events[0].input"},
		{"agent message without content", h.admin, `{"type":"agent.message"}`, 400, "events[0].content"},
		{"unknown type", h.admin, `{"type":"agent.thinking"}`, 400, "events[0].type"},
	} {
		r := post(c.secret, c.events)
		if c.status == 200 {
			if r.Status != 200 {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
			}
			continue
		}
		typ := map[int]string{400: "invalid_request_error", 403: "permission_error"}[c.status]
		if r.Status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.Status, r.Body, c.status)
			continue
		}
		wantError(t, r, c.status, typ, c.param)
	}

	// The round trip a self-hosted worker makes: it follows the stream, sees the tool
	// use, and answers it by the tool use's id.
	s := h.openStream(sess, as(worker))
	use := eventID(t, h.send(sess, toolUse)[0])
	f := s.event()
	if f.ID != use || f.Event != "agent.tool_use" {
		t.Fatalf("worker's stream sent %+v, want the tool use %s", f, use)
	}
	r := post(worker, `{"type":"user.tool_result","tool_use_id":"`+use+`","is_error":false,"content":[{"type":"text","text":"hi\n"}]}`)
	wantStatus(t, r, 200)
	f = h.openStream(sess, header("Last-Event-ID", use)).event()
	var res struct {
		Type      string
		ToolUseID string `json:"tool_use_id"`
	}
	json.Unmarshal([]byte(f.Data), &res)
	if res.Type != "user.tool_result" || res.ToolUseID != use {
		t.Fatalf("after the tool use came %s, want its user.tool_result", f.Data)
	}
}

// TestEventHistoryOrderAndLimit: order=desc reverses the history and its cursors follow
// it; limit goes up to 1000 here.
func TestEventHistoryOrderAndLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	var ids []string
	for range 3 {
		var evs []string
		for i := range 50 {
			evs = append(evs, userMessage(fmt.Sprint(i)))
		}
		for _, e := range h.send(sess, evs...) {
			ids = append(ids, eventID(t, e))
		}
	}
	list := func(q string) (got []string, next *string) {
		r := h.do("GET", "/sessions/"+sess+"/events?"+q, "")
		wantStatus(t, r, 200)
		var page struct {
			Data []struct{ ID string }
			Next *string `json:"next_page"`
		}
		r.decode(t, &page)
		for _, e := range page.Data {
			got = append(got, e.ID)
		}
		return got, page.Next
	}
	if got, next := list("limit=1000"); len(got) != 150 || next != nil {
		t.Fatalf("limit=1000 listed %d events (next %v), want all 150", len(got), next)
	}
	if got, _ := list("limit=5000"); len(got) != 150 {
		t.Fatalf("limit=5000 listed %d", len(got))
	}
	var desc []string
	q := "order=desc&limit=40"
	for {
		got, next := list(q)
		desc = append(desc, got...)
		if next == nil {
			break
		}
		q = "order=desc&limit=40&page=" + *next
	}
	if len(desc) != len(ids) {
		t.Fatalf("order=desc paged %d events, want %d", len(desc), len(ids))
	}
	for i := range ids {
		if desc[i] != ids[len(ids)-1-i] {
			t.Fatalf("order=desc event %d is %s, want %s", i, desc[i], ids[len(ids)-1-i])
		}
	}
	if got, _ := list("order=desc&limit=2&before_id=" + ids[100]); len(got) != 2 || got[0] != ids[102] || got[1] != ids[101] {
		t.Fatalf("order=desc before_id listed %v", got)
	}
	if got, _ := list("order=asc&limit=2"); len(got) != 2 || got[0] != ids[0] {
		t.Fatalf("order=asc listed %v", got)
	}
	wantError(t, h.do("GET", "/sessions/"+sess+"/events?order=up", ""), 400, "invalid_request_error", "order")
}

// metric reads one sample of the server's /metrics (0 when it is not there).
func (h *harness) metric(sample string) float64 {
	h.t.Helper()
	r := h.doRaw("GET", "/metrics", "")
	v, _ := metricValue(r.Body, sample)
	return v
}

// TestStreamAcrossReplicas: an event committed through one replica reaches a stream on
// the other by its notice (the streams' own catch-up reads are an hour apart), a resumed
// stream on the other replica has no gap and no duplicate, and a deletion through one
// ends the other's streams.
func TestStreamAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := newReplicas(t)
	env := a.env(true)
	sess := a.session(env)
	s := b.openStream(sess)
	var ids []string
	for i := range 10 {
		ids = append(ids, eventID(t, a.send(sess, userMessage(fmt.Sprint(i)))[0]))
		if f := s.event(); f.ID != ids[i] {
			t.Fatalf("the stream on B sent %s, want %s (sent through A)", f.ID, ids[i])
		}
	}
	s.close()
	more := eventID(t, a.send(sess, userMessage("more"))[0])
	r := b.openStream(sess, header("Last-Event-ID", ids[4]))
	for _, want := range append(ids[5:], more) {
		if f := r.event(); f.ID != want {
			t.Fatalf("resumed on B: %s, want %s", f.ID, want)
		}
	}
	wantStatus(t, a.do("DELETE", "/sessions/"+sess, ""), 200)
	if f := r.event(); f.Event != "session.deleted" {
		t.Fatalf("after a delete through A the stream on B sent %+v", f)
	}
	r.ended()
}

// cuttingWriter ends a response, as a dropped connection would, after a number of
// frames: the handler's next write fails.
type cuttingWriter struct {
	http.ResponseWriter
	frames int
}

func (w *cuttingWriter) Write(b []byte) (int, error) {
	if w.frames <= 0 {
		return 0, io.ErrClosedPipe
	}
	w.frames -= strings.Count(string(b), "\n\n")
	return w.ResponseWriter.Write(b)
}

func (w *cuttingWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *cuttingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestStreamWithAnSSEClientLibrary: a well-kept SSE client (tmaxmax/go-sse), unchanged,
// follows a session through connections cut every few frames, resuming by itself with
// Last-Event-ID, and sees every event once, in order.
func TestStreamWithAnSSEClientLibrary(t *testing.T) {
	t.Parallel()
	h := newHarnessWrapped(t, nil, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/events/stream") {
				w = &cuttingWriter{ResponseWriter: w, frames: 4}
			}
			next.ServeHTTP(w, r)
		})
	})
	env := h.env(false)
	sess := h.session(env)
	first := eventID(t, h.send(sess, userMessage("first"))[0])

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+api.BasePath+"/sessions/"+sess+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	req.Header.Set("Last-Event-ID", first) // go-sse resumes from the last id it saw
	var reconnects atomic.Int64
	client := &sse.Client{
		HTTPClient: h.httpClient(),
		Backoff:    sse.Backoff{InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond},
		OnRetry:    func(error, time.Duration) { reconnects.Add(1) },
	}
	conn := client.NewConnection(req)
	got := make(chan sse.Event, 100)
	conn.SubscribeToAll(func(e sse.Event) { got <- e })
	connected := make(chan error, 1)
	go func() { connected <- conn.Connect() }()

	var ids []string
	for i := range 20 {
		ids = append(ids, eventID(t, h.send(sess, userMessage(fmt.Sprint(i)))[0]))
	}
	for i, want := range ids {
		select {
		case e := <-got:
			var obj struct{ ID string }
			json.Unmarshal([]byte(e.Data), &obj)
			if e.LastEventID != want || obj.ID != want || e.Type != "user.message" {
				t.Fatalf("event %d: id %s type %s data %s, want %s", i, e.LastEventID, e.Type, e.Data, want)
			}
		case err := <-connected:
			t.Fatalf("the SSE client stopped after %d events: %v", i, err)
		}
	}
	if reconnects.Load() < 4 {
		t.Errorf("%d reconnects, want at least 4 (a cut every 4 frames)", reconnects.Load())
	}
	cancel()
	<-connected
	select {
	case e := <-got:
		t.Fatalf("an event beyond the history: %+v", e)
	default:
	}
}
