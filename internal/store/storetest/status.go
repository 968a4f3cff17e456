package storetest

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// eventTypes lists the types of a session's events, in order.
func (f *fixture) eventTypes(t *testing.T, sessionID string) []string {
	t.Helper()
	var types []string
	for _, e := range f.listEvents(t, sessionID) {
		types = append(types, e.Type)
	}
	return types
}

// heard records the sessions that OnEvents reported.
type heard struct {
	mu  sync.Mutex
	ids []string
}

func (h *heard) add(sid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, sid)
}

func (h *heard) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.ids
	h.ids = nil
	return out
}

// testSessionStatus: the session status events of API.md §3, written by the operation
// that starts or ends a lease, in its transaction, and reported after the commit.
func testSessionStatus(t *testing.T, newStore newStoreFunc) {
	t.Run("AckAndStop", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var h heard
		f.st.OnEvents(h.add)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Queued, base)
		h.take()
		it = f.update(t, it, ackBy("w", base.Add(sec)))
		if got := f.eventTypes(t, s.ID); !slices.Equal(got, []string{work.StatusRunningEvent}) {
			t.Fatalf("after the ack: events %v, want session.status_running", got)
		}
		if got := h.take(); !slices.Equal(got, []string{s.ID}) {
			t.Errorf("after the ack OnEvents heard %v, want %s", got, s.ID)
		}
		// A heartbeat and a graceful stop keep the session running: no event.
		it = f.update(t, it, heartbeat(work.Expectation{}, 60, base.Add(2*sec)))
		it = f.update(t, it, stopWith(false, base.Add(3*sec)))
		if got := f.eventTypes(t, s.ID); len(got) != 1 {
			t.Fatalf("after a heartbeat and a graceful stop: events %v", got)
		}
		f.update(t, it, stopWith(true, base.Add(4*sec)))
		evs := f.listEvents(t, s.ID)
		if len(evs) != 2 || evs[1].Type != work.StatusIdleEvent {
			t.Fatalf("after the stop: events %v, want running then idle", f.eventTypes(t, s.ID))
		}
		var idle struct {
			ID         string
			Type       string
			StopReason struct{ Type string } `json:"stop_reason"`
			CreatedAt  string                `json:"created_at"`
		}
		if err := json.Unmarshal(evs[1].Body, &idle); err != nil {
			t.Fatal(err)
		}
		if idle.ID != evs[1].ID || idle.StopReason.Type != "end_turn" || idle.CreatedAt != base.Add(4*sec).Format(work.TimeLayout) {
			t.Errorf("idle event %s", evs[1].Body)
		}
		if got := h.take(); !slices.Equal(got, []string{s.ID}) {
			t.Errorf("after the stop OnEvents heard %v, want %s", got, s.ID)
		}
		if sess := f.getSession(t, s.ID); sess.Running {
			t.Errorf("session running after its item stopped")
		}
	})

	t.Run("StopOfAQueuedItemWritesNone", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Queued, base)
		f.update(t, it, stopWith(true, base.Add(sec)))
		if got := f.eventTypes(t, s.ID); len(got) != 0 {
			t.Fatalf("a queued item's stop wrote %v", got)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Queued, base)
		f.update(t, it, ackBy("w", base.Add(sec)))
		// A cancel of a starting item asks for a stop: still running.
		if _, err := f.st.UpdateSessionWork(f.ctx, s.ID, work.Cancel(base.Add(2*sec))); err != nil {
			t.Fatal(err)
		}
		if got := f.eventTypes(t, s.ID); len(got) != 1 {
			t.Fatalf("after a cancel: %v", got)
		}
		// A forced stop through the session ends it.
		if _, err := f.st.UpdateSessionWork(f.ctx, s.ID, work.Stop(true, base.Add(3*sec))); err != nil {
			t.Fatal(err)
		}
		if got := f.eventTypes(t, s.ID); !slices.Equal(got, []string{work.StatusRunningEvent, work.StatusIdleEvent}) {
			t.Fatalf("after a session's stop: %v", got)
		}
	})

	t.Run("LeaseExpiry", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var h heard
		f.st.OnEvents(h.add)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Queued, base)
		f.update(t, it, ackBy("w", base))
		h.take()
		exps, err := f.st.ExpireLeases(f.ctx, base.Add(time.Hour))
		if err != nil || len(exps) != 1 || exps[0].Requeue == nil {
			t.Fatalf("ExpireLeases: %v, %v", exps, err)
		}
		if got := f.eventTypes(t, s.ID); !slices.Equal(got, []string{work.StatusRunningEvent, work.StatusIdleEvent}) {
			t.Fatalf("after the expiry: %v", got)
		}
		if got := h.take(); !slices.Equal(got, []string{s.ID}) {
			t.Errorf("after the expiry OnEvents heard %v", got)
		}
	})

	t.Run("RefusedTransitionWritesNone", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Queued, base)
		f.update(t, it, ackBy("w", base))
		_, err := f.st.UpdateWork(f.ctx, it.EnvironmentID, it.ID, ackBy("other", base))
		if err == nil {
			t.Fatal("an ack by another worker succeeded")
		}
		if got := f.eventTypes(t, s.ID); len(got) != 1 {
			t.Fatalf("a refused ack wrote events: %v", got)
		}
	})

	t.Run("DeleteIsHeard", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var h heard
		f.st.OnEvents(h.add)
		e := f.env(t, selfHosted)
		s, _ := f.item(t, e, work.Queued, base)
		h.take()
		if _, err := f.st.DeleteSession(f.ctx, s.ID, base); err != nil {
			t.Fatal(err)
		}
		if got := h.take(); !slices.Equal(got, []string{s.ID}) {
			t.Errorf("after the delete OnEvents heard %v", got)
		}
	})
}

// testEventReads: one event by ID, and the history in descending order.
func testEventReads(t *testing.T, newStore newStoreFunc) {
	t.Run("GetEvent", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, cloud)
		s, other := draftSession(e.ID, base), draftSession(e.ID, base)
		ev := event(s.ID, "user.message", base)
		f.put(t, s, nil, ev)
		f.put(t, other, nil)
		got, err := f.st.GetEvent(f.ctx, s.ID, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkEqual(t, "GetEvent", got, ev)
		_, err = f.st.GetEvent(f.ctx, other.ID, ev.ID)
		wantNotFound(t, "GetEvent of another session's event", err)
		_, err = f.st.GetEvent(f.ctx, s.ID, id.New(id.Event))
		wantNotFound(t, "GetEvent of a missing event", err)
	})

	t.Run("Descending", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, cloud)
		s := draftSession(e.ID, base)
		var evs []store.Event
		for range 7 {
			evs = append(evs, event(s.ID, "user.message", base))
		}
		f.put(t, s, nil, evs...)
		ids := listIDs(evs, eventID)
		slices.Reverse(ids)
		var got []string
		p := store.Page{Limit: 3, Desc: true}
		for {
			page, more, err := f.st.ListEvents(f.ctx, s.ID, p)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, listIDs(page, eventID)...)
			if !more {
				break
			}
			p.AfterID = page[len(page)-1].ID
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("descending pages %v, want %v", got, ids)
		}
		// BeforeID in a descending list: the rows above the cursor, nearest first... in
		// the list's order.
		page, more, err := f.st.ListEvents(f.ctx, s.ID, store.Page{Limit: 2, Desc: true, BeforeID: ids[4]})
		if err != nil {
			t.Fatal(err)
		}
		if got := listIDs(page, eventID); !slices.Equal(got, ids[2:4]) || !more {
			t.Fatalf("descending before_id page %v (more %v), want %v and more", got, more, ids[2:4])
		}
	})
}
