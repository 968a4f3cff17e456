package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

func sessID(s store.Session) string { return s.ID }

func testCreateSession(t *testing.T, newStore newStoreFunc) {
	t.Run("RefusedInAnArchivedEnvironment", func(t *testing.T) {
		// The archived check is made in the transaction that creates the session, so
		// that no session lands in an environment archived before it.
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		if _, err := f.st.UpdateEnvironment(f.ctx, e.ID, func(env *store.Environment) error {
			env.ArchivedAt = base.Add(sec)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		it := work.New("", "", "", nil, base)
		_, err := f.st.CreateSession(f.ctx, newSession(e.ID), []store.Event{newEvent("user.message")}, &it, nil)
		if !errors.Is(err, store.ErrArchived) {
			t.Fatalf("CreateSession in an archived environment: %v, want ErrArchived", err)
		}
		if ss, _, err := f.st.ListSessions(f.ctx, store.Page{Limit: 10}, e.ID, true); err != nil || len(ss) != 0 {
			t.Errorf("sessions after the refused create: %d (%v)", len(ss), err)
		}
		if items := f.listWork(t, e.ID); len(items) != 0 {
			t.Errorf("items after the refused create: %v", itemIDs(items))
		}
	})

	t.Run("MakesIDsInCommitOrder", func(t *testing.T) {
		// A session, its events and its item given without IDs get IDs made in order,
		// above every ID made before; each event's body carries its ID.
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		before := id.New(id.Session)
		it := work.New("", "", "", work.Metadata{"k": "v"}, base)
		c, err := f.st.CreateSession(f.ctx, newSession(e.ID), []store.Event{newEvent("user.message"), newEvent("system.message")}, &it, nil)
		if err != nil {
			t.Fatal(err)
		}
		hex := func(s string) string { _, h, _ := strings.Cut(s, "_"); return h }
		ids := []string{hex(before), hex(c.Session.ID), hex(c.Events[0].ID), hex(c.Events[1].ID), hex(c.Item.ID)}
		if !slices.IsSorted(ids) || !id.Valid(id.Session, c.Session.ID) || !id.Valid(id.Event, c.Events[0].ID) || !id.Valid(id.Work, c.Item.ID) {
			t.Errorf("IDs made: session %s, events %s %s, item %s (after %s)", c.Session.ID, c.Events[0].ID, c.Events[1].ID, c.Item.ID, before)
		}
		if c.Item.SessionID != c.Session.ID || c.Item.EnvironmentID != e.ID {
			t.Errorf("item of session %s in %s, want %s in %s", c.Item.SessionID, c.Item.EnvironmentID, c.Session.ID, e.ID)
		}
		stored := f.listEvents(t, c.Session.ID)
		for i, ev := range stored {
			want := `{"id":"` + c.Events[i].ID + `","type":"` + ev.Type + `"}`
			if ev.ID != c.Events[i].ID || string(ev.Body) != want {
				t.Errorf("stored event %d: %s %s, want %s", i, ev.ID, ev.Body, want)
			}
		}
		checkEqual(t, "stored item", f.getWork(t, *c.Item), *c.Item)
	})

	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		want := store.Session{
			ID:            id.New(id.Session),
			EnvironmentID: e.ID,
			Agent:         json.RawMessage(`{"id":"agent_x","type":"agent","version":3}`),
			Title:         "Fix the flaky test ✓",
			Metadata:      work.Metadata{"team": "infra", "ticket": "T-1"},
			ArchivedAt:    base.Add(2 * sec),
			CreatedAt:     base,
			UpdatedAt:     base.Add(sec),
		}
		events := []store.Event{event(want.ID, "user.message", base), event(want.ID, "system.message", base.Add(us))}
		it := advance(work.New(id.New(id.Work), e.ID, want.ID, want.Metadata, base), work.Stopping, base)
		given := make([]store.Event, len(events))
		for i, ev := range events {
			given[i] = inZone(ev, elsewhere)
		}
		givenItem := inZone(it, elsewhere)
		if _, err := f.st.CreateSession(f.ctx, inZone(want, elsewhere), given, &givenItem, nil); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		want.Running = true // its item is stopping
		checkEqual(t, "GetSession", f.getSession(t, want.ID), want)
		list, _, err := f.st.ListSessions(f.ctx, store.Page{Limit: 10}, "", true)
		if err != nil || len(list) != 1 {
			t.Fatalf("ListSessions: %d rows, err %v; want 1", len(list), err)
		}
		checkEqual(t, "ListSessions", list[0], want)
		stored := f.listEvents(t, want.ID)
		if len(stored) != len(events) {
			t.Fatalf("ListEvents: %d events, want %d", len(stored), len(events))
		}
		for i := range events {
			checkEqual(t, fmt.Sprintf("event %d", i), stored[i], events[i])
		}
		checkEqual(t, "GetWork", f.getWork(t, it), it)
	})

	t.Run("WithoutItem", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s := draftSession(e.ID, base)
		f.put(t, s, nil)
		if items := f.listWork(t, e.ID); len(items) != 0 {
			t.Errorf("ListWork after CreateSession without an item = %v", itemIDs(items))
		}
		if events := f.listEvents(t, s.ID); len(events) != 0 {
			t.Errorf("ListEvents after CreateSession without events = %d events", len(events))
		}
		checkEqual(t, "GetSession", f.getSession(t, s.ID), s)
	})

	t.Run("UnknownEnvironmentWritesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		missing := id.New(id.Environment)
		s, it := draft(missing, work.Queued, base)
		_, err := f.st.CreateSession(f.ctx, s, []store.Event{event(s.ID, "user.message", base)}, &it, nil)
		wantNotFound(t, "CreateSession in an unknown environment", err)
		_, err = f.st.GetSession(f.ctx, s.ID)
		wantNotFound(t, "GetSession after a refused create", err)
		// Make the environment and the session for real: neither the event nor the item of
		// the refused call may show up.
		f.env(t, selfHosted, func(e *store.Environment) { e.ID = missing })
		f.put(t, s, nil)
		if events := f.listEvents(t, s.ID); len(events) != 0 {
			t.Errorf("events of a refused CreateSession were stored: %d", len(events))
		}
		if items := f.listWork(t, missing); len(items) != 0 {
			t.Errorf("item of a refused CreateSession was stored: %v", itemIDs(items))
		}
	})

	t.Run("AtomicOnFailure", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, taken := f.item(t, e, work.Queued, base)
		s, it := draft(e.ID, work.Queued, base)
		it.ID = taken.ID // the item cannot be stored: its ID is taken
		_, err := f.st.CreateSession(f.ctx, s, []store.Event{event(s.ID, "user.message", base)}, &it, nil)
		if err == nil {
			t.Fatalf("CreateSession with a work ID already in use succeeded")
		}
		_, err = f.st.GetSession(f.ctx, s.ID)
		wantNotFound(t, "GetSession after a failed CreateSession", err)
		f.put(t, s, nil)
		if events := f.listEvents(t, s.ID); len(events) != 0 {
			t.Errorf("events of a failed CreateSession were stored: %d", len(events))
		}
		checkEqual(t, "the item whose ID was taken", f.getWork(t, taken), taken)
	})
}

func testGetSession(t *testing.T, newStore newStoreFunc) {
	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, err := f.st.GetSession(f.ctx, id.New(id.Session))
		wantNotFound(t, "GetSession", err)
	})

	t.Run("RunningDerivedFromItems", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		running := map[work.State]bool{work.Starting: true, work.Active: true, work.Stopping: true}
		want := map[string]bool{}
		for _, state := range work.States {
			s, _ := f.item(t, e, state, base)
			want[s.ID] = running[state]
			if got := f.getSession(t, s.ID).Running; got != running[state] {
				t.Errorf("GetSession of a session whose item is %s: Running = %v, want %v", state, got, running[state])
			}
		}
		idle := draftSession(e.ID, base)
		f.put(t, idle, nil)
		want[idle.ID] = false
		if f.getSession(t, idle.ID).Running {
			t.Errorf("GetSession of a session without items: Running = true")
		}
		list, _, err := f.st.ListSessions(f.ctx, store.Page{Limit: 20}, e.ID, true)
		if err != nil {
			t.Fatalf("ListSessions: %v", err)
		}
		for _, s := range list {
			if s.Running != want[s.ID] {
				t.Errorf("ListSessions: session %s Running = %v, want %v", s.ID, s.Running, want[s.ID])
			}
		}
	})

	t.Run("RunningFollowsTransitions", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Queued, base)
		if f.getSession(t, s.ID).Running {
			t.Errorf("Running with a queued item")
		}
		f.update(t, it, ackBy("w1", base.Add(sec)))
		if !f.getSession(t, s.ID).Running {
			t.Errorf("not Running after the item was acknowledged")
		}
		got, err := f.st.UpdateSession(f.ctx, s.ID, func(*store.Session) error { return nil })
		if err != nil || !got.Running {
			t.Errorf("UpdateSession result: Running = %v, err %v; want true", got.Running, err)
		}
		f.update(t, it, stopWith(true, base.Add(2*sec)))
		if f.getSession(t, s.ID).Running {
			t.Errorf("Running after the item was stopped")
		}
	})
}

func testListSessions(t *testing.T, newStore newStoreFunc) {
	t.Run("PaginationAndFilters", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		a, b := f.env(t, selfHosted), f.env(t, cloud)
		type row struct {
			id       string
			env      string
			archived bool
		}
		var rows []row
		for i := range 9 {
			e := a
			if i%3 == 2 {
				e = b
			}
			s := draftSession(e.ID, base)
			if i == 1 || i == 5 || i == 8 {
				s.ArchivedAt = base.Add(sec)
			}
			f.put(t, s, nil)
			rows = append(rows, row{s.ID, e.ID, !s.ArchivedAt.IsZero()})
		}
		for _, tc := range []struct {
			env      string
			archived bool
		}{{"", true}, {"", false}, {a.ID, true}, {a.ID, false}, {b.ID, true}, {b.ID, false}} {
			t.Run(fmt.Sprintf("environment=%q,includeArchived=%v", tc.env, tc.archived), func(t *testing.T) {
				var want, hidden []string
				for _, r := range rows {
					if (tc.env == "" || r.env == tc.env) && (tc.archived || !r.archived) {
						want = append(want, r.id)
					} else {
						hidden = append(hidden, r.id)
					}
				}
				checkPages(t, id.Session, listOf(func(p store.Page) ([]store.Session, bool, error) {
					return f.st.ListSessions(f.ctx, p, tc.env, tc.archived)
				}, sessID), want, hidden...)
			})
		}
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		var initial []string
		for range 9 {
			s, _ := f.item(t, e, work.Queued, base)
			initial = append(initial, s.ID)
		}
		fence := id.New(id.Session)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]store.Session, bool, error) {
			return f.st.ListSessions(f.ctx, p, e.ID, false)
		}, sessID), initial, fence, func() (string, error) {
			s, it := draft(e.ID, work.Queued, base)
			_, err := f.st.CreateSession(f.ctx, s, nil, &it, nil)
			return s.ID, err
		})
	})
}

func testUpdateSession(t *testing.T, newStore newStoreFunc) {
	t.Run("WritesEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, _ := f.item(t, e, work.Active, base)
		before := f.getSession(t, s.ID)
		want := store.Session{
			ID:            s.ID,
			EnvironmentID: s.EnvironmentID,
			Agent:         s.Agent,
			Title:         "retitled",
			Metadata:      work.Metadata{"ticket": "T-2"},
			ArchivedAt:    base.Add(5 * sec),
			CreatedAt:     s.CreatedAt,
			UpdatedAt:     base.Add(5 * sec),
			Running:       true,
		}
		got, err := f.st.UpdateSession(f.ctx, s.ID, func(cur *store.Session) error {
			checkEqual(t, "fn's session (the stored row)", *cur, before)
			*cur = want
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateSession: %v", err)
		}
		checkEqual(t, "UpdateSession's result", got, want)
		checkEqual(t, "GetSession after UpdateSession", f.getSession(t, s.ID), want)
	})

	t.Run("WritesAgent", func(t *testing.T) {
		t.Parallel()
		// The API never changes a session's agent, but the contract says the result of fn
		// is written, and UpdateSession returns it as written.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s := draftSession(e.ID, base)
		f.put(t, s, nil)
		agent := json.RawMessage(`{"id":"agent_y","type":"agent","version":null}`)
		got, err := f.st.UpdateSession(f.ctx, s.ID, func(cur *store.Session) error {
			cur.Agent = agent
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateSession: %v", err)
		}
		want := s
		want.Agent = agent
		checkEqual(t, "UpdateSession's result", got, want)
		checkEqual(t, "GetSession after UpdateSession", f.getSession(t, s.ID), want)
	})

	t.Run("FnErrorWritesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, _ := f.item(t, e, work.Queued, base)
		before := f.getSession(t, s.ID)
		fnErr := errors.New("fn refused")
		_, err := f.st.UpdateSession(f.ctx, s.ID, func(cur *store.Session) error {
			cur.Title = "changed"
			cur.Metadata = work.Metadata{"x": "y"}
			cur.ArchivedAt = base.Add(sec)
			return fnErr
		})
		if err != fnErr {
			t.Errorf("UpdateSession: err = %v, want fn's error unchanged", err)
		}
		checkEqual(t, "GetSession after a failed fn", f.getSession(t, s.ID), before)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		called := false
		_, err := f.st.UpdateSession(f.ctx, id.New(id.Session), func(*store.Session) error {
			called = true
			return nil
		})
		wantNotFound(t, "UpdateSession", err)
		if called {
			t.Errorf("fn called for a missing session")
		}
	})

	t.Run("LeavesWorkItemsAlone", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Active, base)
		if _, err := f.st.UpdateSession(f.ctx, s.ID, func(cur *store.Session) error {
			cur.Metadata = work.Metadata{"team": "platform", "new": "1"}
			cur.ArchivedAt = base.Add(sec)
			return nil
		}); err != nil {
			t.Fatalf("UpdateSession: %v", err)
		}
		checkEqual(t, "the session's item", f.getWork(t, it), it)
	})

	t.Run("ConcurrentUpdatesNotLost", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s := draftSession(e.ID, base)
		s.Metadata = work.Metadata{"n": "0"}
		f.put(t, s, nil)
		errs := make([]error, racers)
		race(racers, func(i int) {
			_, errs[i] = f.st.UpdateSession(f.ctx, s.ID, func(cur *store.Session) error {
				n, err := strconv.Atoi(cur.Metadata["n"])
				if err != nil {
					return err
				}
				cur.Metadata = work.Metadata{"n": strconv.Itoa(n + 1)}
				return nil
			})
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		}
		if got := f.getSession(t, s.ID).Metadata["n"]; got != strconv.Itoa(racers) {
			t.Errorf("after %d concurrent increments n = %s: updates were lost", racers, got)
		}
	})
}

func testUpdateSessionWork(t *testing.T, newStore newStoreFunc) {
	t.Run("AppliesFnToLiveItemsOnly", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, done := f.item(t, e, work.Stopped, base)
		// Two more items of the same session: one that fn stops, one that fn edits but
		// reports unchanged.
		_, queued := draft(e.ID, work.Queued, base.Add(time.Minute))
		queued.SessionID = s.ID
		f.insertItem(t, queued)
		_, active := draft(e.ID, work.Active, base.Add(time.Minute))
		active.SessionID = s.ID
		f.insertItem(t, active)
		_, elsewhereItem := f.item(t, e, work.Active, base)

		now := base.Add(time.Hour)
		var mu sync.Mutex
		seen := map[string]work.State{}
		changes, err := f.st.UpdateSessionWork(f.ctx, s.ID, work.Func("test", func(it work.Item) (work.Item, bool, error) {
			mu.Lock()
			seen[it.ID] = it.State
			mu.Unlock()
			if it.ID == active.ID {
				it.Metadata = work.Metadata{"edited": "but not written"}
				return it, false, nil
			}
			return work.Cancel(now).Apply(it)
		}))
		got := afterItems(changes)
		if err != nil {
			t.Fatalf("UpdateSessionWork: %v", err)
		}
		if len(seen) != 2 || seen[queued.ID] != work.Queued || seen[active.ID] != work.Active {
			t.Errorf("fn saw %v, want exactly the live items %s (queued) and %s (active)", seen, queued.ID, active.ID)
		}
		wantQueued, _ := cancelItem(queued, now)
		wantActive := active.Clone()
		wantActive.Metadata = work.Metadata{"edited": "but not written"}
		gotByID := byID(got)
		if len(got) != 2 || len(gotByID) != 2 {
			t.Fatalf("UpdateSessionWork returned %v, want the 2 live items", itemIDs(got))
		}
		checkEqual(t, "returned stopped item", gotByID[queued.ID], wantQueued)
		checkEqual(t, "returned item fn left unchanged", gotByID[active.ID], wantActive)
		checkEqual(t, "stored item fn changed", f.getWork(t, queued), wantQueued)
		checkEqual(t, "stored item fn reported unchanged", f.getWork(t, active), active)
		checkEqual(t, "stored stopped item", f.getWork(t, done), done)
		checkEqual(t, "another session's item", f.getWork(t, elsewhereItem), elsewhereItem)
	})

	t.Run("NoLiveItems", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, done := f.item(t, e, work.Stopped, base)
		calls := 0
		got, err := f.st.UpdateSessionWork(f.ctx, s.ID, work.Func("test", func(it work.Item) (work.Item, bool, error) {
			calls++
			return work.Stop(true, base.Add(time.Hour)).Apply(it)
		}))
		if err != nil {
			t.Fatalf("UpdateSessionWork: %v", err)
		}
		if len(got) != 0 || calls != 0 {
			t.Errorf("UpdateSessionWork on a session without live items: %d items, fn called %d times; want none", len(got), calls)
		}
		checkEqual(t, "stopped item", f.getWork(t, done), done)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, err := f.st.UpdateSessionWork(f.ctx, id.New(id.Session), work.Cancel(base))
		wantNotFound(t, "UpdateSessionWork", err)
	})

	t.Run("ConcurrentCancelAndAck", func(t *testing.T) {
		t.Parallel()
		// A cancel and an ack racing on the same item: whichever runs second must see the
		// first one's write, so the item ends stopping (ack first) or stopped with the ack
		// refused (cancel first), never starting after a cancel succeeded.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		for range racers {
			s, it := f.item(t, e, work.Queued, base)
			now := base.Add(sec)
			var cancelled []work.Item
			var ackErr, cancelErr error
			race(2, func(i int) {
				if i == 0 {
					_, ackErr = f.st.UpdateWork(f.ctx, e.ID, it.ID, ackBy("w1", now))
					return
				}
				var changes []store.Change
				changes, cancelErr = f.st.UpdateSessionWork(f.ctx, s.ID, work.Cancel(now))
				cancelled = afterItems(changes)
			})
			if cancelErr != nil {
				t.Fatalf("UpdateSessionWork: %v", cancelErr)
			}
			stored := f.getWork(t, it)
			switch {
			case ackErr == nil:
				// Only an ack that ran first succeeds (a cancelled queued item is stopped and
				// refuses acks), and the cancel that followed must have seen it: stopping.
				if stored.State != work.Stopping || len(cancelled) != 1 || cancelled[0].State != work.Stopping {
					t.Errorf("ack succeeded: item %s, cancel returned %v; want stopping", stored.State, cancelled)
				}
			default:
				wantKind(t, "ack after cancel", ackErr, work.Conflict)
				if stored.State != work.Stopped {
					t.Errorf("ack refused: item %s, want stopped", stored.State)
				}
			}
		}
	})
}

func testDeleteSession(t *testing.T, newStore newStoreFunc) {
	t.Run("StopsLiveItemsAndDeletesEvents", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, done := draft(e.ID, work.Stopped, base)
		f.put(t, s, &done, event(s.ID, "user.message", base), event(s.ID, "system.message", base))
		if _, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{event(s.ID, "user.interrupt", base.Add(sec))}, base); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		_, queued := draft(e.ID, work.Queued, base)
		queued.SessionID = s.ID
		f.insertItem(t, queued)
		_, stopping := draft(e.ID, work.Stopping, base)
		stopping.SessionID = s.ID
		f.insertItem(t, stopping)
		_, active := draft(e.ID, work.Active, base)
		active.SessionID = s.ID
		f.insertItem(t, active)
		other, otherItem := f.item(t, e, work.Active, base)
		otherEvent := event(other.ID, "user.message", base)
		if _, err := f.st.AppendEvents(f.ctx, other.ID, []store.Event{otherEvent}, base); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}

		now := base.Add(time.Hour)
		got, err := f.st.DeleteSession(f.ctx, s.ID, now)
		if err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		want := map[string]work.Item{}
		for _, it := range []work.Item{queued, stopping, active} {
			next, _ := stopItem(it, true, now)
			want[it.ID] = next
		}
		gotByID := byID(got)
		if len(got) != len(want) || len(gotByID) != len(want) {
			t.Errorf("DeleteSession returned %v, want the stopped items %s, %s, %s", itemIDs(got), queued.ID, stopping.ID, active.ID)
		}
		for wid, w := range want {
			if g, ok := gotByID[wid]; ok {
				checkEqual(t, "returned item "+wid, g, w)
			}
			checkEqual(t, "stored item "+wid+" (readable after delete)", f.getWork(t, w), w)
		}
		checkEqual(t, "item that was already stopped", f.getWork(t, done), done)
		checkEqual(t, "another session's item", f.getWork(t, otherItem), otherItem)
		_, err = f.st.GetSession(f.ctx, s.ID)
		wantNotFound(t, "GetSession after delete", err)
		_, _, err = f.st.ListEvents(f.ctx, s.ID, store.Page{Limit: 10})
		wantNotFound(t, "ListEvents after delete", err)
		// A session made again with the same ID must not find the old events.
		f.put(t, s, nil)
		if events := f.listEvents(t, s.ID); len(events) != 0 {
			t.Errorf("events of a deleted session survived: %d", len(events))
		}
		if events := f.listEvents(t, other.ID); len(events) != 1 || events[0].ID != otherEvent.ID {
			t.Errorf("another session's events = %d, want its 1 event", len(events))
		}
	})

	t.Run("NoLiveItems", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s := draftSession(e.ID, base)
		f.put(t, s, nil)
		got, err := f.st.DeleteSession(f.ctx, s.ID, base.Add(sec))
		if err != nil || len(got) != 0 {
			t.Errorf("DeleteSession without items = %v, err %v; want none", itemIDs(got), err)
		}
		_, err = f.st.GetSession(f.ctx, s.ID)
		wantNotFound(t, "GetSession after delete", err)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, err := f.st.DeleteSession(f.ctx, id.New(id.Session), base)
		wantNotFound(t, "DeleteSession", err)
	})
}
