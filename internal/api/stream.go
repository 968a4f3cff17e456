package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/stream"
)

const (
	// defaultStreamHeartbeat is how often an idle stream gets a ": heartbeat" comment:
	// API.md §7 promises at least every 15 s, and proxies commonly cut connections idle
	// for 30 to 60 s.
	defaultStreamHeartbeat = 15 * time.Second
	// streamWriteTimeout bounds each write of a stream: a reader that stops reading
	// altogether is cut by it, since the stream's buffer cuts only a reader that reads
	// too slowly.
	streamWriteTimeout = 30 * time.Second
	// historyBatch is the page size of the catch-up read of a resumed stream.
	historyBatch = 1000
)

var errStreamClosed = &apiError{Status: http.StatusServiceUnavailable, Type: typeAPI, Message: "The server is shutting down."}

// streamEvents serves a session's live event stream (API.md §7): the events after
// Last-Event-ID (header, or the last_event_id query parameter) if given, then every
// event committed after the stream began, as server-sent events, until the session is
// deleted (a session.deleted frame, then the end), the server shuts down (the end), the
// reader falls too far behind (the end; it resumes with Last-Event-ID) or the client
// hangs up, or its token is revoked (seen at the next heartbeat). event_deltas is accepted
// and ignored: berth sends whole events.
//
// A resumed stream has no gap and no duplicate: it subscribes first, which fixes the
// last event before its live part (stream.Sub.Start), reads the history after
// Last-Event-ID up to that event, and then sends the live events, each after the last
// one it sent.
func (s *Server) streamEvents(c *call) error {
	sess, err := c.loadSession()
	if err != nil {
		return err
	}
	last := c.r.Header.Get("Last-Event-ID")
	if last == "" {
		last = c.r.URL.Query().Get("last_event_id")
	}
	if last != "" {
		if !id.Valid(id.Event, last) {
			return errInvalid("Last-Event-ID", "Last-Event-ID must be an event ID (evt_…).")
		}
		if _, err := s.store.GetEvent(c.r.Context(), sess.ID, last); err != nil {
			return asAPIError(err, errInvalid("Last-Event-ID", "Last-Event-ID %s is not an event of session %s.", last, sess.ID))
		}
	}
	sub, err := s.hub.Subscribe(c.r.Context(), sess.ID)
	switch {
	case errors.Is(err, stream.ErrClosed):
		return errStreamClosed
	case err != nil:
		return asAPIError(err, errSessionNotFound)
	}
	defer sub.Close()
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	w := &frameWriter{w: c.w, rc: http.NewResponseController(c.w), sent: s.metrics.streamEvents}
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass frames on as they come
	c.w.WriteHeader(http.StatusOK)
	if err := w.flush(); err != nil {
		return nil
	}

	sent := last
	if last != "" && sub.Start > last {
		if sent, err = s.sendHistory(c, w, sess.ID, last, sub.Start); err != nil {
			return nil // the reader is gone, or the store failed mid-stream: end it
		}
	}
	beat := time.NewTicker(s.streamHeartbeat)
	defer beat.Stop()
	for {
		select {
		case e := <-sub.C():
			if sent, err = w.events(e, sent, sub.C()); err == nil {
				err = w.flush()
			}
		case <-sub.Done():
			// The events already handed over go out first (session.deleted among them).
			for {
				select {
				case e := <-sub.C():
					if sent, err = w.events(e, sent, nil); err != nil {
						return nil
					}
					continue
				default:
				}
				break
			}
			w.flush()
			return nil
		case <-beat.C:
			if s.tokenRevoked(c) {
				return nil // a reconnect gets its 401
			}
			if err = w.write([]byte(": heartbeat\n\n")); err == nil {
				err = w.flush()
			}
		case <-c.r.Context().Done():
			return nil
		}
		if err != nil {
			return nil
		}
	}
}

// tokenRevoked reports whether the stream's token was revoked (or deleted) since the
// stream opened: a stream outlives the authentication of its request, so it looks again
// at each heartbeat. A store that cannot answer now does not end the stream.
func (s *Server) tokenRevoked(c *call) bool {
	tok, err := s.store.TokenByHash(c.r.Context(), c.token.Hash)
	if errors.Is(err, store.ErrNotFound) {
		return true
	}
	return err == nil && !tok.RevokedAt.IsZero()
}

// sendHistory sends the session's events after from up to and including to, and
// returns the last one it sent.
func (s *Server) sendHistory(c *call, w *frameWriter, sessionID, from, to string) (string, error) {
	sent := from
	for {
		evs, more, err := s.store.ListEvents(c.r.Context(), sessionID, store.Page{Limit: historyBatch, AfterID: sent})
		if err != nil {
			return sent, err
		}
		for i := range evs {
			e := &evs[i]
			if e.ID > to {
				return sent, w.flush()
			}
			if err := w.event(e); err != nil {
				return sent, err
			}
			sent = e.ID
		}
		if err := w.flush(); err != nil || !more || sent == to {
			return sent, err
		}
	}
}

// frameWriter writes server-sent event frames.
type frameWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	sent interface{ Inc() }
	buf  bytes.Buffer
}

// events writes e and whatever more is waiting on more (nil: nothing), skipping events
// at or below sent, and returns the last event written.
func (f *frameWriter) events(e *store.Event, sent string, more <-chan *store.Event) (string, error) {
	for {
		if e.ID > sent {
			if err := f.event(e); err != nil {
				return sent, err
			}
			sent = e.ID
		}
		select {
		case e = <-more:
		default:
			return sent, nil
		}
	}
}

// event writes one frame: id, event (the type) and the stored event on one data line.
func (f *frameWriter) event(e *store.Event) error {
	f.buf.Reset()
	f.buf.WriteString("id: ")
	f.buf.WriteString(e.ID)
	f.buf.WriteString("\nevent: ")
	f.buf.WriteString(e.Type)
	f.buf.WriteString("\ndata: ")
	if bytes.ContainsAny(e.Body, "\r\n") {
		// Whitespace a client sent between values; inside strings a line break is
		// always escaped, so compacting leaves one line.
		if err := json.Compact(&f.buf, e.Body); err != nil {
			return err
		}
	} else {
		f.buf.Write(e.Body)
	}
	f.buf.WriteString("\n\n")
	if err := f.write(f.buf.Bytes()); err != nil {
		return err
	}
	f.sent.Inc()
	return nil
}

func (f *frameWriter) write(b []byte) error {
	f.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := f.w.Write(b)
	return err
}

func (f *frameWriter) flush() error { return f.rc.Flush() }
