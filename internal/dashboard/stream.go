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

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	send := func(parts ...[]byte) error {
		buf.Reset()
		for _, p := range parts {
			buf.Write(p)
		}
		rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		return rc.Flush()
	}
	event := func(body []byte) [][]byte {
		return [][]byte{[]byte("event: view\ndata: "), body, []byte("\n\n")}
	}
	first := append([][]byte{fmt.Appendf(nil, "retry: %d\n\n", retryMillis)}, event(v.body)...)
	if err := send(first...); err != nil || permanent(v.status) {
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
			if err := send([]byte(": heartbeat\n\n")); err != nil {
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
			if err := send(event(v.body)...); err != nil {
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
