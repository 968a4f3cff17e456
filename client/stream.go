package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"time"
)

// maxFrameLine is the longest line of a stream the client reads, as the official SDKs
// carry: an event is one data line, and a session event may be large.
const maxFrameLine = 32 << 20

// healthyStream is how long a connection must stay up for the backoff to start over,
// as in the official SDKs' resumable stream.
const healthyStream = 5 * time.Second

// StreamEventsParams says where StreamEvents starts, and lets its caller watch the
// connections.
type StreamEventsParams struct {
	// LastEventID starts the stream after this event of the session: every event after
	// it first, then the live ones. It must be an event of the session (else 400).
	LastEventID string
	// History, when LastEventID is "", starts from the session's first event: the whole
	// history, then the live events. Without either, the stream yields the events
	// committed after StreamEvents was called.
	History bool
	// OnConnect, when set, is called each time a connection has been answered 200: every
	// event committed from then on will be yielded. It runs on the iterating goroutine.
	OnConnect func()
	// OnReconnect, when set, is called before each reconnection, with what ended the
	// connection (or failed to make it) and the wait before the next attempt. It runs on
	// the iterating goroutine.
	OnReconnect func(err error, wait time.Duration)
}

// ErrStreamEnded is what a stream ends with when the server sent "[DONE]": the server
// has nothing more to send. berth never sends it; it ends a session's stream with
// session.deleted.
var ErrStreamEnded = errors.New("berth: event stream: the server ended it ([DONE])")

// StreamEvents follows a session's events live (GET /sessions/{id}/events/stream,
// API.md §7), as the official SDKs' resumable stream does: it yields each event once, in
// order, and reconnects whenever the connection ends, fails or is cut (the server cuts a
// reader too slow for its buffer), after a jittered backoff (the client's, see
// WithBackoff, or the server's Retry-After), sending Last-Event-ID: the last event it
// yielded. berth then sends every event after that one, so there is no gap and no
// duplicate across reconnections, also to another replica. The backoff starts over
// after a connection that delivered an event or stayed up 5 s.
//
// The iteration ends:
//   - after yielding session.deleted (or session.status_terminated, the hosted
//     platform's other terminal event), with no error: the session is gone;
//   - with an error when a connection is refused with a 4xx other than 408 and 429 (an
//     *Error: 404 the session does not exist, 401/403 the token may not read it, 400 a
//     LastEventID that is not one of its events), or when x-should-retry: false says
//     not to retry; a 409 is never retried;
//   - with an error when the server sends an "error" event (an *Error), a "[DONE]" data
//     line (ErrStreamEnded), or data that is not an event;
//   - with ctx's error when ctx ends, and as soon as the loop breaks.
//
// Everything else (a transport error, 408, 429, 5xx, an end of stream before a terminal
// event) is reconnected, for as long as ctx lasts once a connection has been made: bound
// it with ctx, and watch the attempts with params.OnReconnect. Until then, the first
// connection is tried as often as any GET (see WithMaxRetries), and its last failure
// ends the iteration, so that a wrong URL or a server that is down is told at once. An
// http.Client with a Timeout (WithHTTPClient) cuts each connection after it; the stream
// then reconnects.
//
// Where it starts: params.LastEventID, else with params.History the session's first
// event, else the events committed after the call. For the latter it reads the newest
// event of the history first (ListEvents, order desc) and streams from it; a session with
// no events yet, and History, are served by connecting first and then reading the
// history, skipping on the stream what the history already gave (event IDs increase in
// commit order, API.md §3). comment lines (berth's ": heartbeat"), "ping" events and
// events without data are skipped.
func (c *Client) StreamEvents(ctx context.Context, sessionID string, params StreamEventsParams, opts ...RequestOption) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		sess, err := segment("session_id", sessionID)
		if err != nil {
			yield(Event{}, err)
			return
		}
		s := &eventStream{c: c, ctx: ctx, sessionID: sessionID, path: "sessions/" + sess + "/events/stream", params: params, opts: opts, yield: yield}
		if err := s.run(); err != nil {
			yield(Event{}, err)
		}
	}
}

// eventStream is one StreamEvents iteration.
type eventStream struct {
	c         *Client
	ctx       context.Context
	sessionID string
	path      string
	params    StreamEventsParams
	opts      []RequestOption
	yield     func(Event, error) bool

	last    string // the last event yielded (or the start): the next Last-Event-ID
	stopped bool   // the caller broke the loop
	ended   bool   // a terminal event was yielded
}

// errStop marks the end of the iteration without an error to yield.
var errStop = errors.New("stop")

func (s *eventStream) run() error {
	s.last = s.params.LastEventID
	fromStart := s.params.History
	if s.last == "" && !fromStart {
		// Start at the newest event, so that every later one comes, reconnections or not.
		page, err := s.c.ListEvents(s.ctx, s.sessionID, ListEventsParams{ListParams: ListParams{Limit: 1}, Order: OrderDesc}, s.opts...)
		if err != nil {
			return err
		}
		if len(page.Data) > 0 {
			s.last = page.Data[0].ID
		}
		// With no events yet, every event the session ever gets is one to yield:
		// from the start it is.
	}
	failures := 0
	connected := false
	for {
		began := time.Now()
		resp, err := s.connect()
		var yielded bool
		if err == nil {
			connected = true
			if s.params.OnConnect != nil {
				s.params.OnConnect()
			}
			yielded, err = s.read(resp.Body, s.last == "")
			resp.Body.Close()
		}
		switch {
		case s.stopped || s.ended:
			return nil
		case errors.Is(err, errStop):
			return nil
		case s.ctx.Err() != nil:
			return fmt.Errorf("berth: event stream of %s: %w", s.sessionID, context.Cause(s.ctx))
		case !retryableStreamError(err):
			return err
		case !connected && failures >= s.c.maxRetries:
			// Never connected: a wrong URL or a server that is down, told as any GET
			// tells it.
			return err
		}
		if yielded || time.Since(began) >= healthyStream {
			failures = 0
		}
		var h http.Header
		var ae *Error
		if errors.As(err, &ae) {
			h = ae.header
		}
		wait := s.c.backoff.delay(failures, h)
		failures++
		if s.params.OnReconnect != nil {
			s.params.OnReconnect(err, wait)
		}
		if sleep(s.ctx, wait) != nil {
			return fmt.Errorf("berth: event stream of %s: %w (while waiting to reconnect after: %v)", s.sessionID, context.Cause(s.ctx), err)
		}
	}
}

// connect opens one connection: 200, or an error (an *Error for another status).
func (s *eventStream) connect() (*http.Response, error) {
	r := &request{method: "GET", path: s.path, opts: s.opts}
	u, err := s.c.url(r)
	if err != nil {
		return nil, err
	}
	header := s.c.header(r)
	header.Set("Accept", "text/event-stream")
	if s.last != "" {
		header.Set("Last-Event-ID", s.last)
	}
	req, err := http.NewRequestWithContext(s.ctx, "GET", u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("berth: %w", err)
	}
	req.Header = header
	resp, err := s.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("berth: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("berth: GET %s: read response: %w", u.Redacted(), err)
	}
	e := newError(&response{status: resp.StatusCode, header: resp.Header, body: b})
	e.header = resp.Header
	return nil, e
}

// retryableStreamError reports whether a failed or ended connection is reconnected.
func retryableStreamError(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		// A transport error, or the end of the body: an error, or a clean end before a
		// terminal event.
		return !errors.Is(err, ErrStreamEnded) && !errors.Is(err, errBadFrame)
	}
	if e.header == nil {
		return false // an "error" event: an answer, not a failed connection
	}
	if e.StatusCode == http.StatusConflict {
		return false
	}
	switch e.header.Get("x-should-retry") {
	case "true":
		return true
	case "false":
		return false
	}
	return retryStatus(e.StatusCode)
}

// errBadFrame marks data that is not an event.
var errBadFrame = errors.New("berth: event stream: bad frame")

// read yields the events of one connection's body until it ends. With merge (the stream
// starts from the first event and none was yielded yet) it first yields the session's
// history, then skips the stream's events up to the last of it. It reports whether it
// yielded anything, and why the connection ended: errStop when the iteration is over
// (the caller broke, or a terminal event), else the read error or io.EOF.
func (s *eventStream) read(body io.Reader, merge bool) (yielded bool, err error) {
	skipThrough := ""
	if merge {
		for e, err := range s.c.AllEvents(s.ctx, s.sessionID, ListEventsParams{ListParams: ListParams{Limit: 1000}}, s.opts...) {
			if err != nil {
				return yielded, err
			}
			yielded = true
			if !s.emit(e) {
				return yielded, errStop
			}
		}
		skipThrough = s.last
	}
	fr := newFrameReader(body)
	for {
		f, err := fr.next()
		if err != nil {
			return yielded, err
		}
		switch {
		case f.event == "ping" || len(f.data) == 0:
			continue
		case bytes.Equal(f.data, []byte("[DONE]")):
			return yielded, ErrStreamEnded
		case f.event == "error":
			return yielded, newError(&response{status: http.StatusOK, header: http.Header{}, body: f.data})
		}
		var e Event
		if err := json.Unmarshal(f.data, &e); err != nil {
			return yielded, fmt.Errorf("%w: event %q (id %q): %v", errBadFrame, f.event, f.id, err)
		}
		if e.ID == "" {
			e.ID = f.id
		}
		if skipThrough != "" && e.ID <= skipThrough {
			continue
		}
		yielded = true
		if !s.emit(e) {
			return yielded, errStop
		}
	}
}

// emit yields e and records it; false ends the iteration.
func (s *eventStream) emit(e Event) bool {
	s.last = e.ID
	if !s.yield(e, nil) {
		s.stopped = true
		return false
	}
	if e.Type == "session.deleted" || e.Type == "session.status_terminated" {
		s.ended = true
		return false
	}
	return true
}

// frame is one server-sent event.
type frame struct {
	id, event string
	data      []byte
}

// frameReader parses server-sent events (the WHATWG "event stream" format): lines end in
// LF, CRLF or CR; a line starting with ":" is a comment; "field: value" (one space after
// the colon dropped) sets a field, data lines joining with LF; a blank line ends a frame.
// A leading byte order mark is skipped. Fields other than id, event and data are ignored.
type frameReader struct {
	sc    *bufio.Scanner
	first bool
}

func newFrameReader(r io.Reader) *frameReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxFrameLine)
	sc.Split(scanSSELines)
	return &frameReader{sc: sc, first: true}
}

// next returns the next frame that has any field set, or the read error (io.EOF at a
// clean end; a frame cut off by the end is dropped, as the format says).
func (r *frameReader) next() (frame, error) {
	var f frame
	var data [][]byte
	set := false
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if r.first {
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
			r.first = false
		}
		if len(line) == 0 {
			if set {
				f.data = bytes.Join(data, []byte("\n"))
				return f, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "id":
			if !bytes.ContainsRune(value, 0) {
				f.id = string(value)
				set = true
			}
		case "event":
			f.event = string(value)
			set = true
		case "data":
			data = append(data, bytes.Clone(value))
			set = true
		}
	}
	if err := r.sc.Err(); err != nil {
		return frame{}, err
	}
	return frame{}, io.EOF
}

// scanSSELines splits at LF, CRLF or CR.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		// CR: a CRLF counts as one end of line, so look at the next byte.
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // need the next byte
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}
