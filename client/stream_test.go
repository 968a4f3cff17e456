package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
)

// history lists every event of a session, oldest first.
func (b *bundle) history(sessionID string) []string {
	b.t.Helper()
	var ids []string
	for e, err := range b.admin.AllEvents(b.ctx, sessionID, client.ListEventsParams{ListParams: client.ListParams{Limit: 1000}}) {
		if err != nil {
			b.t.Fatalf("history: %v", err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// follow iterates over a stream in a goroutine and hands each event (and the final
// error, nil at a clean end) to the test over channels.
type follow struct {
	events    chan client.Event
	done      chan error
	connected chan struct{} // a value per connection answered 200
	cancel    context.CancelFunc
}

func startFollow(t *testing.T, c *client.Client, sessionID string, p client.StreamEventsParams) *follow {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	f := &follow{events: make(chan client.Event, 10000), done: make(chan error, 1), connected: make(chan struct{}, 100), cancel: cancel}
	p.OnConnect = func() { f.connected <- struct{}{} }
	go func() {
		for e, err := range c.StreamEvents(ctx, sessionID, p) {
			if err != nil {
				f.done <- err
				return
			}
			f.events <- e
		}
		f.done <- nil
	}()
	t.Cleanup(cancel)
	return f
}

func (f *follow) next(t *testing.T) client.Event {
	t.Helper()
	select {
	case e := <-f.events:
		return e
	case err := <-f.done:
		select {
		case e := <-f.events: // sent before the end: both were ready
			f.done <- err
			return e
		default:
		}
		t.Fatalf("the stream ended (%v) where an event was expected", err)
	}
	return client.Event{}
}

// end waits for the end of the stream and returns its error; an event first fails.
func (f *follow) end(t *testing.T) error {
	t.Helper()
	select {
	case e := <-f.events:
		t.Fatalf("event %s %s where the end of the stream was expected", e.ID, e.Type)
	case err := <-f.done:
		select {
		case e := <-f.events:
			t.Fatalf("event %s %s where the end of the stream was expected", e.ID, e.Type)
		default:
		}
		return err
	}
	return nil
}

func ids(evs []client.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// TestStreamEventsHistoryThenLiveUntilDeleted: with History the stream yields the whole
// history, then each new event live, and ends cleanly after session.deleted.
func TestStreamEventsHistoryThenLiveUntilDeleted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	sess, err := b.admin.CreateSession(b.ctx, client.CreateSessionParams{Agent: "agent_x", EnvironmentID: env.ID,
		InitialEvents: []any{client.UserMessage("one"), client.UserMessage("two")}})
	if err != nil {
		t.Fatal(err)
	}
	f := startFollow(t, b.admin, sess.ID, client.StreamEventsParams{History: true})
	before := b.history(sess.ID)
	var got []client.Event
	for range before {
		got = append(got, f.next(t))
	}
	if !slices.Equal(ids(got), before) {
		t.Fatalf("history on the stream %v, want %v", ids(got), before)
	}
	sent, err := b.admin.SendEvents(b.ctx, sess.ID, []any{
		map[string]any{"type": "agent.tool_use", "name": "bash", "input": map[string]any{"command": "ls"}},
		client.UserMessage("three"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sent {
		if e := f.next(t); e.ID != s.ID || e.Type != s.Type || string(e.Raw) != string(s.Raw) {
			t.Fatalf("live event %s %s %s, want %s", e.ID, e.Type, e.Raw, s.Raw)
		}
	}
	if _, err := b.admin.DeleteSession(b.ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if e := f.next(t); e.Type != "session.deleted" {
		t.Fatalf("after the delete: %s %s, want session.deleted", e.ID, e.Type)
	}
	if err := f.end(t); err != nil {
		t.Fatalf("the stream ended with %v, want a clean end", err)
	}
}

// TestStreamEventsStartingPoints: without LastEventID or History the stream yields what
// is committed after the call (also for a session with no events yet); with LastEventID
// every event after it.
func TestStreamEventsStartingPoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	sess := b.session(env.ID)

	// No events yet: the stream connects, then reads the (empty) history.
	empty := startFollow(t, b.admin, sess.ID, client.StreamEventsParams{})
	<-empty.connected
	first, err := b.admin.SendEvents(b.ctx, sess.ID, []any{client.UserMessage("a"), client.UserMessage("b")})
	if err != nil {
		t.Fatal(err)
	}
	if e := empty.next(t); e.ID != first[0].ID {
		t.Fatalf("first event %s, want %s", e.ID, first[0].ID)
	}

	// Tail: starts at the newest event.
	tail := startFollow(t, b.admin, sess.ID, client.StreamEventsParams{})
	<-tail.connected
	later, err := b.admin.SendEvents(b.ctx, sess.ID, []any{client.UserMessage("c")})
	if err != nil {
		t.Fatal(err)
	}
	if e := tail.next(t); e.ID != later[0].ID {
		t.Fatalf("tail: first event %s, want %s (only what came after the call)", e.ID, later[0].ID)
	}

	// From an event: everything after it.
	from := startFollow(t, b.admin, sess.ID, client.StreamEventsParams{LastEventID: first[0].ID})
	for _, want := range []string{first[1].ID, later[0].ID} {
		if e := from.next(t); e.ID != want {
			t.Fatalf("after %s: %s, want %s", first[0].ID, e.ID, want)
		}
	}
	if e := empty.next(t); e.ID != first[1].ID {
		t.Fatalf("second event %s, want %s", e.ID, first[1].ID)
	}
}

// TestStreamEventsRefused: a 4xx other than 408 and 429 ends the stream with the error.
func TestStreamEventsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	sess := b.session(env.ID)
	other := b.session(b.selfHosted("other").ID)
	otherEv, err := b.admin.SendEvents(b.ctx, other.ID, []any{client.UserMessage("x")})
	if err != nil {
		t.Fatal(err)
	}
	drain := func(c *client.Client, id string, p client.StreamEventsParams) error {
		for _, err := range c.StreamEvents(b.ctx, id, p) {
			if err != nil {
				return err
			}
			t.Fatal("an event from a refused stream")
		}
		return errors.New("no error")
	}
	err = drain(b.admin, "sess_0000000000000000000000000000000f", client.StreamEventsParams{History: true})
	apiError(t, err, 404, "not_found_error")
	err = drain(b.admin, sess.ID, client.StreamEventsParams{LastEventID: otherEv[0].ID})
	if e := apiError(t, err, 400, "invalid_request_error"); e.Param != "Last-Event-ID" {
		t.Errorf("param %q", e.Param)
	}
	worker := b.client(b.token(api.RoleWorker, env.ID))
	err = drain(worker, other.ID, client.StreamEventsParams{LastEventID: otherEv[0].ID})
	if !client.IsNotFound(err) && !client.IsForbidden(err) {
		t.Errorf("a worker token of another environment: %v", err)
	}
	err = drain(b.client("pt-nope"), sess.ID, client.StreamEventsParams{History: true})
	apiError(t, err, 401, "authentication_error")
}

// cutter is a TCP proxy in front of a server whose connections the test cuts.
type cutter struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	conns   []net.Conn
}

func newCutter(t *testing.T, backend string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, backend: backend}
	go c.serve()
	t.Cleanup(func() { ln.Close(); c.cut() })
	return c
}

func (c *cutter) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.backend)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		c.conns = append(c.conns, in, out)
		c.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

// cut closes every connection made through the proxy so far.
func (c *cutter) cut() {
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
}

// TestStreamEventsResumesAfterCuts: while several writers post events, the stream's
// connection is cut again and again mid-stream; the stream reconnects with Last-Event-ID
// and yields the session's history exactly: no gap, no duplicate.
func TestStreamEventsResumesAfterCuts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	sess, err := b.admin.CreateSession(b.ctx, client.CreateSessionParams{Agent: "agent_x", EnvironmentID: env.ID,
		InitialEvents: []any{client.UserMessage("start")}})
	if err != nil {
		t.Fatal(err)
	}
	start := b.history(sess.ID)[0]

	proxy := newCutter(t, strings.TrimPrefix(b.url, "http://"))
	streamer, err := client.New("http://"+proxy.ln.Addr().String()+api.BasePath, b.token(api.RoleAdmin, ""),
		client.WithBackoff(time.Millisecond, 2*time.Millisecond),
		client.WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
	if err != nil {
		t.Fatal(err)
	}
	var reconnects atomic.Int64
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	type result struct {
		ids []string
		err error
	}
	const cuts = 5
	var cutsDone atomic.Int64
	got := make(chan result, 1)
	go func() {
		var r result
		for e, err := range streamer.StreamEvents(ctx, sess.ID, client.StreamEventsParams{
			LastEventID: start,
			OnReconnect: func(error, time.Duration) { reconnects.Add(1) },
		}) {
			if err != nil {
				r.err = err
				break
			}
			r.ids = append(r.ids, e.ID)
			if len(r.ids)%20 == 0 && cutsDone.Load() < cuts {
				proxy.cut()
				cutsDone.Add(1)
			}
		}
		got <- r
	}()

	// Writers post until every cut is done (and at least a few events each), so that
	// the cuts fall while events are being committed.
	const writers = 3
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < 10 || cutsDone.Load() < cuts; i++ {
				evs := []any{client.UserMessage(fmt.Sprintf("%d-%d", w, i))}
				if i%3 == 0 {
					evs = append(evs, map[string]any{"type": "system.message", "text": "note"})
				}
				if _, err := b.admin.SendEvents(b.ctx, sess.ID, evs); err != nil {
					t.Error(err)
					return
				}
				if i > 5000 {
					t.Error("the stream never got through its cuts")
					return
				}
			}
		})
	}
	wg.Wait()
	want := b.history(sess.ID)[1:]
	if _, err := b.admin.DeleteSession(b.ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("the stream ended with %v", r.err)
	}
	if n := len(r.ids); n == 0 || len(r.ids) != len(want)+1 {
		t.Fatalf("the stream yielded %d events, the history after %s holds %d (+ session.deleted)", n, start, len(want))
	}
	if !slices.Equal(r.ids[:len(want)], want) {
		for i := range want {
			if r.ids[i] != want[i] {
				t.Fatalf("event %d: the stream yielded %s, the history has %s", i, r.ids[i], want[i])
			}
		}
	}
	if reconnects.Load() < cuts {
		t.Errorf("%d reconnections for %d cuts", reconnects.Load(), cuts)
	}
	t.Logf("%d events, %d cuts, %d reconnections", len(want), cuts, reconnects.Load())
}
