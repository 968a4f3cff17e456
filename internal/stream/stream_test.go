package stream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/stream"
)

// log is an in-memory session history that counts its reads.
type log struct {
	mu      sync.Mutex
	events  map[string][]store.Event
	deleted map[string]bool
	reads   atomic.Int64
	n       int
}

func newLog() *log { return &log{events: map[string][]store.Event{}, deleted: map[string]bool{}} }

func (l *log) add(sid string, k int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for range k {
		l.n++
		e := store.Event{ID: fmt.Sprintf("evt_%032d", l.n), SessionID: sid, Type: "user.message"}
		e.Body = []byte(`{"id":"` + e.ID + `","type":"user.message"}`)
		l.events[sid] = append(l.events[sid], e)
		ids = append(ids, e.ID)
	}
	return ids
}

func (l *log) remove(sid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deleted[sid] = true
}

// read implements stream.Reader.
func (l *log) read(_ context.Context, sid string, p store.Page) ([]store.Event, bool, error) {
	l.reads.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deleted[sid] {
		return nil, false, store.ErrNotFound
	}
	evs := slices.Clone(l.events[sid])
	if p.Desc {
		slices.Reverse(evs)
	}
	var out []store.Event
	for _, e := range evs {
		if p.AfterID == "" || (!p.Desc && e.ID > p.AfterID) || (p.Desc && e.ID < p.AfterID) {
			out = append(out, e)
		}
	}
	if len(out) > p.Limit {
		return out[:p.Limit], true, nil
	}
	return out, false, nil
}

// collect reads n events from s.
func collect(t *testing.T, s *stream.Sub, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		select {
		case e := <-s.C():
			ids = append(ids, e.ID)
		case <-s.Done():
			select {
			case e := <-s.C(): // handed over before the end
				ids = append(ids, e.ID)
			default:
				t.Fatalf("subscription ended (%v) after %d of %d events", s.Err(), len(ids), n)
			}
		}
	}
	return ids
}

// TestOneReadPerNoticeForManyStreams: 50 streams of one session share its reads: each
// notice is one read, whatever the number of streams, and every stream gets every event
// committed after it began, in order.
func TestOneReadPerNoticeForManyStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog()
		l.add("s", 3) // before the streams: not on them
		h := stream.New(l.read, stream.Config{CatchUp: time.Hour})
		defer h.Close()
		var subs []*stream.Sub
		for range 50 {
			s, err := h.Subscribe(context.Background(), "s")
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
		synctest.Wait()
		before := l.reads.Load()
		var want []string
		for range 10 {
			want = append(want, l.add("s", 2)...)
			h.Notify("s")
			synctest.Wait()
		}
		if got := l.reads.Load() - before; got != 10 {
			t.Errorf("10 notices made %d reads for 50 streams, want 10", got)
		}
		for i, s := range subs {
			if got := collect(t, s, len(want)); !slices.Equal(got, want) {
				t.Fatalf("stream %d got %v, want %v", i, got, want)
			}
			if s.Start != "evt_00000000000000000000000000000003" {
				t.Fatalf("stream %d starts after %s", i, s.Start)
			}
		}
		if n := h.Streams(); n != 50 {
			t.Errorf("Streams() = %d, want 50", n)
		}
	})
}

// TestSlowSubscriberIsCut: a stream whose buffer is full is cut with ErrSlow and
// counted; the others go on, and the writer never waited.
func TestSlowSubscriberIsCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog()
		var slow atomic.Int64
		h := stream.New(l.read, stream.Config{Buffer: 2, CatchUp: time.Hour, Slow: func() { slow.Add(1) }})
		defer h.Close()
		lazy, _ := h.Subscribe(context.Background(), "s")
		eager, _ := h.Subscribe(context.Background(), "s")
		synctest.Wait()
		var want []string
		for range 5 {
			want = append(want, l.add("s", 1)...)
			h.Notify("s")
			synctest.Wait()
			collect(t, eager, 1)
		}
		<-lazy.Done()
		if !errors.Is(lazy.Err(), stream.ErrSlow) || slow.Load() != 1 {
			t.Fatalf("the lazy stream ended with %v (slow count %d), want ErrSlow once", lazy.Err(), slow.Load())
		}
		if got := collect(t, lazy, 2); !slices.Equal(got, want[:2]) {
			t.Fatalf("the cut stream still holds %v, want %v", got, want[:2])
		}
		select {
		case <-eager.Done():
			t.Fatalf("the eager stream ended: %v", eager.Err())
		default:
		}
	})
}

// TestLostNoticeIsCaughtUp: without a notice, the topic's own schedule delivers the
// event; Resync reads at once.
func TestLostNoticeIsCaughtUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog()
		h := stream.New(l.read, stream.Config{CatchUp: 5 * time.Second})
		defer h.Close()
		s, _ := h.Subscribe(context.Background(), "s")
		want := l.add("s", 1)
		start := time.Now()
		if got := collect(t, s, 1); !slices.Equal(got, want) || time.Since(start) != 5*time.Second {
			t.Fatalf("got %v after %v, want %v after the 5 s catch-up", got, time.Since(start), want)
		}
		want = l.add("s", 1)
		h.Resync()
		start = time.Now()
		if got := collect(t, s, 1); !slices.Equal(got, want) || time.Since(start) != 0 {
			t.Fatalf("after Resync got %v after %v", got, time.Since(start))
		}
	})
}

// TestDeletedSessionEndsStreams: a session found gone ends its streams with a
// session.deleted event and ErrDeleted; a new stream of it is refused.
func TestDeletedSessionEndsStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog()
		l.add("s", 1)
		h := stream.New(l.read, stream.Config{CatchUp: time.Hour})
		defer h.Close()
		s, _ := h.Subscribe(context.Background(), "s")
		l.remove("s")
		h.Notify("s")
		e := <-s.C()
		if e.Type != "session.deleted" || e.SessionID != "s" {
			t.Fatalf("got %+v, want session.deleted", e)
		}
		if !errors.Is(s.Err(), stream.ErrDeleted) {
			t.Fatalf("ended with %v", s.Err())
		}
		if _, err := h.Subscribe(context.Background(), "s"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Subscribe to a deleted session: %v", err)
		}
	})
}

// TestCloseEndsEverything: Close ends every stream with ErrClosed and refuses new ones.
func TestCloseEndsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog()
		h := stream.New(l.read, stream.Config{})
		a, _ := h.Subscribe(context.Background(), "a")
		b, _ := h.Subscribe(context.Background(), "b")
		h.Close()
		for _, s := range []*stream.Sub{a, b} {
			if !errors.Is(s.Err(), stream.ErrClosed) {
				t.Fatalf("ended with %v", s.Err())
			}
		}
		if _, err := h.Subscribe(context.Background(), "a"); !errors.Is(err, stream.ErrClosed) {
			t.Fatalf("Subscribe after Close: %v", err)
		}
	})
}

// TestTopicEndsWithItsLastStream: a session nobody follows is not read any more.
func TestTopicEndsWithItsLastStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog()
		h := stream.New(l.read, stream.Config{CatchUp: time.Second})
		defer h.Close()
		s, _ := h.Subscribe(context.Background(), "s")
		s.Close()
		time.Sleep(2 * time.Second) // one catch-up read finds no stream and ends the topic
		synctest.Wait()
		n := l.reads.Load()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := l.reads.Load(); got != n {
			t.Fatalf("%d reads of a session nobody follows", got-n)
		}
		// Following it again starts afresh.
		s, _ = h.Subscribe(context.Background(), "s")
		want := l.add("s", 1)
		h.Notify("s")
		if got := collect(t, s, 1); !slices.Equal(got, want) {
			t.Fatalf("got %v", got)
		}
	})
}
