package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

const (
	// heartbeatEvery sends an SSE comment on a quiet stream, so that proxies and load
	// balancers with idle timeouts of a minute or less keep the connection.
	heartbeatEvery = 15 * time.Second
	// writeWait is the longest one write to a stream may take. It replaces the server's
	// WriteTimeout, which would cut every stream after a minute: a client that stops
	// reading is still dropped, one that reads is kept.
	writeWait = 30 * time.Second
	// retryMillis is how soon a browser reconnects a dropped stream.
	retryMillis = 2000
)

// stream serves a live view as server-sent events: the view at once, then again each time
// it changes, computed every interval with in-process API requests, until the client goes
// away, the dashboard's context ends (server shutdown), the token stops being valid, or
// the view becomes an error that asking again will not change (a 4xx: the environment,
// item or session does not exist, or the token may not see it).
func (d *Handler) stream(w http.ResponseWriter, r *http.Request) {
	p, err := parseView(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()
	tok := secret(r)

	v, err := d.compute(ctx, tok, p)
	if err != nil {
		d.streamFailed(ctx, p, err)
		if ctx.Err() == nil {
			writeError(w, http.StatusInternalServerError, "api_error", "Internal server error.")
		}
		return
	}
	if v.status == http.StatusUnauthorized {
		// Not a stream: EventSource gives up on a non-200 answer, and the page signs in.
		writeJSON(w, v.status, json.RawMessage(v.body))
		return
	}

	sse := startSSE(w)
	send := func(body []byte) error {
		sse.frame("view", "", body)
		return sse.flush()
	}
	if err := send(v.body); err != nil || permanent(v.status) {
		return
	}
	last := v.body

	tick := time.NewTicker(d.interval)
	defer tick.Stop()
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			sse.heartbeat()
			if err := sse.flush(); err != nil {
				return
			}
		case <-tick.C:
			v, err := d.compute(ctx, tok, p)
			if err != nil {
				d.streamFailed(ctx, p, err)
				return
			}
			if bytes.Equal(v.body, last) {
				continue
			}
			last = v.body
			if err := send(v.body); err != nil {
				return
			}
			if v.status == http.StatusUnauthorized || permanent(v.status) {
				return // the token was revoked (the page signs in again), or the view is gone
			}
		}
	}
}

func (d *Handler) streamFailed(ctx context.Context, p viewParams, err error) {
	if ctx.Err() == nil {
		d.log.Error("dashboard stream", "view", p.Name, "err", err)
	}
}

// sseWriter writes a text/event-stream answer: frames gather in a buffer, and each flush
// writes them with a deadline (writeWait), so that a reader that stops reading is cut.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

// startSSE sends the stream's headers and queues its retry field.
func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	fmt.Fprintf(&s.buf, "retry: %d\n\n", retryMillis)
	return s
}

// frame queues an event named name, with an id field when id is not empty; data is one
// line.
func (s *sseWriter) frame(name, id string, data []byte) {
	if id != "" {
		s.buf.WriteString("id: ")
		s.buf.WriteString(id)
		s.buf.WriteByte('\n')
	}
	s.buf.WriteString("event: ")
	s.buf.WriteString(name)
	s.buf.WriteString("\ndata: ")
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
}

// heartbeat queues a comment that keeps a quiet stream open through proxies.
func (s *sseWriter) heartbeat() { s.buf.WriteString(": heartbeat\n\n") }

// flush writes what is queued.
func (s *sseWriter) flush() error {
	s.rc.SetWriteDeadline(time.Now().Add(writeWait))
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	return s.rc.Flush()
}
