package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
)

// historyLimit is how many of a session's latest events the live event list starts with:
// a page of the session's event history. Older ones are on the pages before it.
const historyLimit = eventLimit

// maxErrorAnswer bounds the error answer of the API's stream that the events route relays
// instead of a stream.
const maxErrorAnswer = 64 << 10

// The frames of the events route, besides comments:
//
//	event: event    a session event (id: its ID; data: the stored event, as the API's stream sends it)
//	event: history  the history is complete, live events follow (data: {"has_more": bool},
//	                has_more when older events than those sent exist)
//	event: end      the route ends the stream, and the page must not reconnect (data: the
//	                reason, {"status": …, "type": …, "message": …})
const (
	frameEvent   = "event"
	frameHistory = "history"
	frameEnd     = "end"
)

// events serves GET /ui/events?session=sess_…: the session's events live, as server-sent
// events, for the signed-in token. It relays the API's event stream
// (GET /sessions/{id}/events/stream, API.md §7), opened in-process with the cookie's
// token, so the API decides what the token may see.
//
// A fresh stream (no Last-Event-ID) starts with the history: the latest historyLimit
// events, then a history frame, then every event committed after them. The API's stream
// is opened first (it answers once it has subscribed), the history is read after that, and
// the live events at or below the history's last are skipped: no event is missed between
// the two, and none is sent twice. A browser that reconnects sends the Last-Event-ID of
// the last frame it got, and the API's stream resumes right after it, without history.
//
// The stream ends when the session is deleted (after its session.deleted event), the API
// ends its stream (server shutdown; a reader too slow, which the browser resumes), the
// dashboard's context ends, the client goes away, or the token stops being valid: it is
// checked every interval, and a token that the API no longer accepts (revoked) ends the
// stream with an end frame. A request that cannot have a stream (no valid token, an
// unknown session, a Last-Event-ID that is not one of its events) gets the API's error
// answer, not a stream: EventSource gives up on it.
func (d *Handler) events(w http.ResponseWriter, r *http.Request) {
	sess := r.URL.Query().Get("session")
	if !id.Valid(id.Session, sess) {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "session is required: the session ID (sess_ followed by 32 lowercase hex digits).")
		return
	}
	last := r.Header.Get("Last-Event-ID")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()
	tok := secret(r)

	up := d.openEvents(ctx, tok, sess, last)
	defer up.close()
	status, err := up.status()
	if err != nil {
		return // the client went away, or the dashboard stops
	}
	if status != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(up.body, maxErrorAnswer))
		if !json.Valid(b) {
			writeError(w, status, "api_error", http.StatusText(status))
			return
		}
		writeJSON(w, status, json.RawMessage(b))
		return
	}

	sse := startSSE(w)
	frame, flush := sse.frame, sse.flush
	end := func(a answer) {
		e := a.errorOf()
		b, _ := json.Marshal(e)
		frame(frameEnd, "", b)
		flush()
	}

	sent := last // the last event sent: the live events at or below it are skipped
	if last == "" {
		q := url.Values{"order": {"desc"}, "limit": {fmt.Sprint(historyLimit)}}
		a, err := d.call(ctx, tok, http.MethodGet, "/sessions/"+url.PathEscape(sess)+"/events?"+q.Encode(), nil)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("dashboard events", "session_id", sess, "err", err)
			}
			return
		}
		if a.status != http.StatusOK {
			end(a) // the token was revoked, or the session deleted, just now
			return
		}
		var page apiPage
		if err := json.Unmarshal(a.body, &page); err != nil {
			d.log.Error("dashboard events", "session_id", sess, "err", err)
			return
		}
		slices.Reverse(page.Data)
		for _, raw := range page.Data {
			var e struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				d.log.Error("dashboard events", "session_id", sess, "err", err)
				return
			}
			frame(frameEvent, e.ID, compact(raw))
			sent = e.ID
		}
		frame(frameHistory, "", fmt.Appendf(nil, `{"has_more":%t}`, page.HasMore))
	}
	if err := flush(); err != nil {
		return
	}

	frames := make(chan sseFrame)
	go up.read(frames)
	check := time.NewTicker(d.interval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f, ok := <-frames:
			if !ok {
				return // the API ended its stream: session.deleted was its last frame, or shutdown
			}
			switch {
			case f.comment:
				sse.heartbeat()
			case f.id == "" || f.id <= sent:
				continue // not an event, or one the history already had
			default:
				frame(frameEvent, f.id, f.data)
				sent = f.id
			}
			if err := flush(); err != nil {
				return
			}
		case <-check.C:
			a, err := d.call(api.Quiet(ctx), tok, http.MethodGet, "/sessions/"+url.PathEscape(sess), nil)
			if err != nil {
				return
			}
			if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden {
				end(a)
				return
			}
			// A 404 is a session just deleted: its stream ends by itself, after the
			// session.deleted event.
		}
	}
}

// compact returns a JSON value on one line, as an SSE data line must be.
func compact(raw []byte) []byte {
	if !bytes.ContainsAny(raw, "\r\n") {
		return raw
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// upstream is the API's event stream of one session, served in-process into a pipe.
type upstream struct {
	ctx    context.Context
	cancel context.CancelFunc
	w      *pipeWriter
	body   *io.PipeReader
	done   chan struct{} // closed when the API's handler has returned
}

// openEvents starts the API's event stream of session for secret, resumed after last if
// it is not "". The answer's status is known once the API has subscribed (or refused).
func (d *Handler) openEvents(ctx context.Context, secret, session, last string) *upstream {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	u := &upstream{ctx: ctx, cancel: cancel, body: pr, done: make(chan struct{}),
		w: &pipeWriter{header: http.Header{}, ready: make(chan struct{}), pipe: pw}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.BasePath+"/sessions/"+url.PathEscape(session)+"/events/stream", nil)
	if err != nil {
		panic("dashboard: " + err.Error()) // the path is an escaped session ID
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	go func() {
		defer close(u.done)
		defer u.w.finish()
		d.api.ServeHTTP(u.w, req)
	}()
	return u
}

// status waits for the API's answer status.
func (u *upstream) status() (int, error) {
	select {
	case <-u.w.ready:
		return u.w.code, nil
	case <-u.ctx.Done():
		return 0, u.ctx.Err()
	}
}

// close ends the API's stream and waits for its handler to return.
func (u *upstream) close() {
	u.cancel()
	u.body.CloseWithError(context.Canceled) // a write blocked on the pipe returns
	<-u.done
}

// sseFrame is one frame of the API's stream: an event, or a comment (a heartbeat).
type sseFrame struct {
	id      string
	data    []byte
	comment bool
}

// read parses the API's stream into frames, sent on out until the stream or the context
// ends; then out is closed.
func (u *upstream) read(out chan<- sseFrame) {
	defer close(out)
	br := bufio.NewReader(u.body)
	var f sseFrame
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		var emit bool
		switch {
		case len(line) == 0:
			emit = f.id != "" || f.data != nil
		case line[0] == ':':
			f, emit = sseFrame{comment: true}, true
		default:
			name, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(name) {
			case "id":
				f.id = string(value)
			case "data":
				f.data = value
			}
		}
		if !emit {
			continue
		}
		select {
		case out <- f:
		case <-u.ctx.Done():
			return
		}
		f = sseFrame{}
	}
}

// pipeWriter is the ResponseWriter the API's stream is served with in-process: its status
// is known at the first WriteHeader or Write, and its body goes into a pipe.
type pipeWriter struct {
	header http.Header
	once   sync.Once
	ready  chan struct{}
	code   int
	pipe   *io.PipeWriter
}

func (p *pipeWriter) Header() http.Header { return p.header }

func (p *pipeWriter) WriteHeader(code int) {
	p.once.Do(func() {
		p.code = code
		close(p.ready)
	})
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pipe.Write(b)
}

// FlushError flushes nothing: every write has reached the reader when it returns.
func (p *pipeWriter) FlushError() error { return nil }

// finish marks the end of the answer: a handler that wrote nothing answered 200 with no
// body, and the reader sees the end of the body.
func (p *pipeWriter) finish() {
	p.WriteHeader(http.StatusOK)
	p.pipe.Close()
}
