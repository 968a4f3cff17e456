// Package stream fans the events of sessions out to their live streams (API.md §7).
//
// A Hub keeps one subscription per followed session (a topic), however many streams
// follow it: when told that a session has new events (Notify: by the store after a
// commit on this replica, by the store's listener for the other replicas), the topic
// reads the events after the last one it passed on, once, and hands them to every
// stream's buffer. Writers never wait for streams: they only make the notice. A stream
// whose buffer is full is cut (ErrSlow) rather than waited for; its reader resumes with
// Last-Event-ID.
//
// Events are read in ID order after a cursor, and the store makes a session's event IDs
// in commit order (store.Driver.Insert), so a read never misses an event committed
// before it and a lost notice only delays an event: the topic also reads on a schedule
// of its own (Config.CatchUp) and whenever Resync says notices may have been lost.
package stream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// Errors that end a subscription.
var (
	// ErrSlow: the stream fell more than Config.Buffer events behind and was cut.
	ErrSlow = errors.New("stream: reader too slow, cut")
	// ErrClosed: the hub closed (server shutdown).
	ErrClosed = errors.New("stream: closed")
	// ErrDeleted: the session was deleted; its last event was session.deleted.
	ErrDeleted = errors.New("stream: session deleted")
)

// Reader lists one page of a session's events (store.Store.ListEvents); it reports
// store.ErrNotFound once the session no longer exists.
type Reader func(ctx context.Context, sessionID string, p store.Page) ([]store.Event, bool, error)

// Config configures a Hub; zero values take the defaults.
type Config struct {
	// Buffer is how many events a stream may fall behind before it is cut: a reader
	// that slow is disconnected rather than let to hold events or writers back.
	Buffer int
	// CatchUp is how often a followed session is read without a notice, so that a lost
	// notice delays an event by at most this much.
	CatchUp time.Duration
	// Now is the clock of session.deleted events; nil means time.Now.
	Now func() time.Time
	// Slow is called each time a stream is cut for being slow (for metrics).
	Slow func()
}

// Defaults of Config.
const (
	DefaultBuffer  = 1024
	DefaultCatchUp = 5 * time.Second
	// readBatch is the page size of a topic's reads.
	readBatch = 500
)

// Hub fans sessions' events out to their streams. Create it with New; its methods are
// safe for concurrent use.
type Hub struct {
	read Reader
	cfg  Config
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu     sync.Mutex
	topics map[string]*topic
	closed bool
}

// New returns a hub that reads events with read.
func New(read Reader, cfg Config) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.CatchUp <= 0 {
		cfg.CatchUp = DefaultCatchUp
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Hub{read: read, cfg: cfg, ctx: ctx, stop: stop, topics: map[string]*topic{}}
}

// topic is one followed session. Its fields below mu are guarded by the hub's mu.
type topic struct {
	h    *Hub
	sid  string
	wake chan struct{} // a notice; capacity 1, so notices made during a read coalesce

	ready   chan struct{} // closed once cursor is set (or initErr)
	initErr error
	cursor  string // the last event passed on (at the start: the session's last event)
	subs    map[*Sub]struct{}
	joining int // subscribers waiting for ready; the topic stays while any do
}

// Sub is one stream's subscription: the events of its session committed after Start,
// in order, on C, until Done.
type Sub struct {
	// Start is the last event of the session before the subscription's first event
	// ("" if it had none): a stream that resumes reads the history up to Start itself.
	Start string

	t *topic
	// c carries pointers to the events the topic read, shared by its subscribers and
	// never written to: each stream's buffer of Config.Buffer slots costs 8 bytes a slot
	// rather than a whole store.Event (96 bytes), which for 1,000 streams of the default
	// buffer is 8 MiB instead of 96 MiB, all of it scanned by the garbage collector.
	c    chan *store.Event
	done chan struct{}
	err  error // set before done is closed
}

// C delivers the events.
func (s *Sub) C() <-chan *store.Event { return s.c }

// Done is closed when the subscription ends; the events on C before that are still to
// be read.
func (s *Sub) Done() <-chan struct{} { return s.done }

// Err tells why the subscription ended (ErrSlow, ErrClosed, ErrDeleted), once Done is
// closed.
func (s *Sub) Err() error {
	<-s.done
	return s.err
}

// end ends s with err; the hub's mu is held.
func (s *Sub) end(err error) {
	s.err = err
	close(s.done)
	delete(s.t.subs, s)
}

// Close ends the subscription.
func (s *Sub) Close() {
	h := s.t.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := s.t.subs[s]; ok {
		s.end(ErrClosed)
	}
}

// Subscribe follows a session from now on. It fails with the reader's error (such as
// store.ErrNotFound) if the session cannot be read, and with ErrClosed once the hub is
// closed.
func (h *Hub) Subscribe(ctx context.Context, sessionID string) (*Sub, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	t := h.topics[sessionID]
	if t == nil {
		t = &topic{h: h, sid: sessionID, wake: make(chan struct{}, 1), ready: make(chan struct{}), subs: map[*Sub]struct{}{}}
		h.topics[sessionID] = t
		h.wg.Add(1)
		go t.run()
	}
	t.joining++
	h.mu.Unlock()

	var waitErr error
	select {
	case <-t.ready:
	case <-ctx.Done():
		waitErr = ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t.joining--
	switch {
	case waitErr != nil:
		return nil, waitErr
	case t.initErr != nil:
		return nil, t.initErr
	case h.closed:
		return nil, ErrClosed
	}
	s := &Sub{Start: t.cursor, t: t, c: make(chan *store.Event, h.cfg.Buffer), done: make(chan struct{})}
	t.subs[s] = struct{}{}
	return s, nil
}

// Notify tells the hub that a session has new events, or was deleted. It never blocks.
func (h *Hub) Notify(sessionID string) {
	h.mu.Lock()
	t := h.topics[sessionID]
	h.mu.Unlock()
	if t != nil {
		t.poke()
	}
}

// Resync makes every followed session be read again: notices may have been lost.
func (h *Hub) Resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.topics {
		t.poke()
	}
}

// Streams counts the subscriptions open now.
func (h *Hub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, t := range h.topics {
		n += len(t.subs)
	}
	return n
}

// Close ends every subscription with ErrClosed, refuses new ones, and waits for the
// topics' readers to stop.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for _, t := range h.topics {
		for s := range t.subs {
			s.end(ErrClosed)
		}
	}
	h.mu.Unlock()
	h.stop()
	h.wg.Wait()
}

func (t *topic) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// run reads the session's events for its subscribers until none is left.
func (t *topic) run() {
	h := t.h
	defer h.wg.Done()
	last, _, err := h.read(h.ctx, t.sid, store.Page{Limit: 1, Desc: true})
	h.mu.Lock()
	if err != nil {
		t.initErr = err
		h.drop(t)
	} else if len(last) > 0 {
		t.cursor = last[0].ID
	}
	close(t.ready)
	h.mu.Unlock()
	if err != nil {
		return
	}
	tick := time.NewTicker(h.cfg.CatchUp)
	defer tick.Stop()
	for {
		select {
		case <-t.wake:
		case <-tick.C:
		case <-h.ctx.Done():
			return
		}
		if !t.catchUp() {
			return
		}
	}
}

// catchUp passes on every event after the cursor; it reports whether the topic goes on.
func (t *topic) catchUp() bool {
	h := t.h
	for {
		h.mu.Lock()
		cursor := t.cursor
		h.mu.Unlock()
		evs, more, err := h.read(h.ctx, t.sid, store.Page{Limit: readBatch, AfterID: cursor})
		h.mu.Lock()
		switch {
		case errors.Is(err, store.ErrNotFound):
			t.deleted()
			h.drop(t)
			h.mu.Unlock()
			return false
		case err != nil:
			// The store is unreachable for now: the next notice or tick reads again.
			more = false
		default:
			t.publish(evs)
		}
		if !more {
			keep := len(t.subs) > 0 || t.joining > 0
			if !keep {
				h.drop(t)
			}
			h.mu.Unlock()
			return keep
		}
		h.mu.Unlock()
	}
}

// publish hands evs to every subscriber, cutting those whose buffer is full; the hub's
// mu is held.
func (t *topic) publish(evs []store.Event) {
	if len(evs) == 0 {
		return
	}
	for s := range t.subs {
		for i := range evs {
			select {
			case s.c <- &evs[i]:
				continue
			default:
			}
			s.end(ErrSlow)
			if t.h.cfg.Slow != nil {
				t.h.cfg.Slow()
			}
			break
		}
	}
	t.cursor = evs[len(evs)-1].ID
}

// deleted ends every subscription with a session.deleted event; the hub's mu is held.
// The event is the stream's own: the session's events were deleted with it.
func (t *topic) deleted() {
	e := DeletedEvent(t.sid, t.h.cfg.Now())
	for s := range t.subs {
		select {
		case s.c <- &e:
		default: // a full buffer: the reader is cut anyway, and finds the session gone
		}
		s.end(ErrDeleted)
	}
}

// drop forgets t; the hub's mu is held.
func (h *Hub) drop(t *topic) {
	if h.topics[t.sid] == t {
		delete(h.topics, t.sid)
	}
}

// DeletedEvent is the session.deleted event that ends a deleted session's streams, made
// at now with a fresh event ID.
func DeletedEvent(sessionID string, now time.Time) store.Event {
	now = work.Timestamp(now)
	eid := id.New(id.Event)
	body := `{"id":"` + eid + `","type":"` + work.DeletedEvent + `","created_at":"` + now.Format(work.TimeLayout) + `"}`
	return store.Event{ID: eid, SessionID: sessionID, Type: work.DeletedEvent, Body: []byte(body), CreatedAt: now}
}
