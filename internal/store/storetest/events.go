package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

func eventID(e store.Event) string { return e.ID }

// appendEvents is AppendEvents, answering the item it queued (nil: none).
func (f *fixture) appendEvents(sessionID string, events []store.Event, now time.Time) (*work.Item, error) {
	ap, err := f.st.AppendEvents(f.ctx, sessionID, events, now)
	return ap.Queued, err
}

func testAppendEvents(t *testing.T, newStore newStoreFunc) {
	t.Run("StoresInOrder", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, cloud)
		s := draftSession(e.ID, base)
		first := event(s.ID, "user.message", base)
		f.put(t, s, nil, first)
		batch := []store.Event{
			event(s.ID, "user.interrupt", base.Add(sec)),
			event(s.ID, "user.tool_result", base.Add(sec)),
			event(s.ID, "system.message", base.Add(sec)),
		}
		given := make([]store.Event, len(batch))
		for i, ev := range batch {
			given[i] = inZone(ev, elsewhere)
		}
		queued, err := f.appendEvents(s.ID, given, base.Add(sec))
		if err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		if queued != nil {
			t.Errorf("AppendEvents queued %s in a cloud environment", queued.ID)
		}
		want := append([]store.Event{first}, batch...)
		got := f.listEvents(t, s.ID)
		if len(got) != len(want) {
			t.Fatalf("ListEvents: %d events, want %d", len(got), len(want))
		}
		for i := range want {
			checkEqual(t, fmt.Sprintf("event %d", i), got[i], want[i])
		}
	})

	t.Run("WakesDormantSession", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			item work.State // "": the session never had an item
		}{{"StoppedItem", work.Stopped}, {"NoItem", ""}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := setup(t, newStore)
				e := f.env(t, selfHosted)
				s, it := draft(e.ID, work.Stopped, base)
				s.Metadata = work.Metadata{"team": "infra", "ticket": "T-9"}
				var before []string
				if tc.item != "" {
					f.put(t, s, &it)
					before = []string{it.ID}
				} else {
					f.put(t, s, nil)
				}
				now := base.Add(time.Hour)
				// Only the first waking event queues: one item for two user.messages.
				events := []store.Event{
					event(s.ID, "system.message", now),
					event(s.ID, "user.message", now),
					event(s.ID, "user.message", now),
				}
				queued, err := f.appendEvents(s.ID, events, now)
				if err != nil {
					t.Fatalf("AppendEvents: %v", err)
				}
				if queued == nil {
					t.Fatalf("AppendEvents with a user.message to a dormant session queued nothing")
				}
				want := work.New(queued.ID, e.ID, s.ID, s.Metadata, now)
				checkEqual(t, "queued item", *queued, want)
				items := f.listWork(t, e.ID)
				if ids := itemIDs(items); !slices.Equal(ids, append(before, queued.ID)) {
					t.Fatalf("ListWork = %v, want %v plus the one queued item %s", ids, before, queued.ID)
				}
				checkEqual(t, "stored queued item", f.getWork(t, *queued), want)
				if got := f.listEvents(t, s.ID); len(got) != len(events) {
					t.Errorf("ListEvents: %d events, want %d", len(got), len(events))
				}
			})
		}
	})

	t.Run("FollowsWakes", func(t *testing.T) {
		t.Parallel()
		// Each case appends [typ, system.message]; whether an item is queued is what
		// work.Wakes says for the session as it was before the call.
		for _, tc := range []struct {
			name     string
			config   string
			item     work.State
			archived bool
			typ      string
		}{
			{name: "DormantSession", config: selfHosted, item: work.Stopped, typ: "user.message"},
			{name: "LiveQueuedItem", config: selfHosted, item: work.Queued, typ: "user.message"},
			{name: "LiveStartingItem", config: selfHosted, item: work.Starting, typ: "user.message"},
			{name: "LiveActiveItem", config: selfHosted, item: work.Active, typ: "user.message"},
			{name: "LiveStoppingItem", config: selfHosted, item: work.Stopping, typ: "user.message"},
			{name: "CloudEnvironment", config: cloud, item: work.Stopped, typ: "user.message"},
			{name: "ArchivedSession", config: selfHosted, item: work.Stopped, archived: true, typ: "user.message"},
			{name: "ArchivedSessionLiveItem", config: selfHosted, item: work.Active, archived: true, typ: "user.message"},
			{name: "NotAUserMessage", config: selfHosted, item: work.Stopped, typ: "user.interrupt"},
		} {
			wakes := work.Wakes(tc.typ, tc.config == selfHosted,
				work.SessionState{Exists: true, Archived: tc.archived, HasLiveItem: tc.item.Live()})
			t.Run(fmt.Sprintf("%s/wakes=%v", tc.name, wakes), func(t *testing.T) {
				t.Parallel()
				f := setup(t, newStore)
				e := f.env(t, tc.config)
				s, it := draft(e.ID, tc.item, base)
				if tc.archived {
					s.ArchivedAt = base.Add(sec)
				}
				f.put(t, s, &it)
				now := base.Add(time.Hour)
				events := []store.Event{event(s.ID, tc.typ, now), event(s.ID, "system.message", now)}
				queued, err := f.appendEvents(s.ID, events, now)
				if err != nil {
					t.Fatalf("AppendEvents: %v", err)
				}
				want := []string{it.ID}
				switch {
				case wakes && queued == nil:
					t.Errorf("AppendEvents queued nothing; work.Wakes holds for this session")
				case wakes:
					checkEqual(t, "queued item", *queued, work.New(queued.ID, e.ID, s.ID, s.Metadata, now))
					want = append(want, queued.ID)
				case queued != nil:
					t.Errorf("AppendEvents queued %s; work.Wakes does not hold for this session", queued.ID)
				}
				if ids := itemIDs(f.listWork(t, e.ID)); !slices.Equal(ids, want) {
					t.Errorf("ListWork = %v, want %v", ids, want)
				}
				checkEqual(t, "the session's item", f.getWork(t, it), it)
				if got := f.listEvents(t, s.ID); len(got) != len(events) {
					t.Errorf("ListEvents: %d events, want %d", len(got), len(events))
				}
			})
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s := draftSession(e.ID, base)
		_, err := f.appendEvents(s.ID, []store.Event{event(s.ID, "user.message", base)}, base)
		wantNotFound(t, "AppendEvents to a missing session", err)
		f.put(t, s, nil)
		if events := f.listEvents(t, s.ID); len(events) != 0 {
			t.Errorf("events of a refused AppendEvents were stored: %d", len(events))
		}
		if items := f.listWork(t, e.ID); len(items) != 0 {
			t.Errorf("AppendEvents to a missing session queued %v", itemIDs(items))
		}
	})

	t.Run("ConcurrentWakesQueueOneItem", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Stopped, base)
		now := base.Add(time.Hour)
		queued := make([]*work.Item, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			queued[i], errs[i] = f.appendEvents(s.ID, []store.Event{event(s.ID, "user.message", now)}, now)
		})
		woke := 0
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("AppendEvents %d: %v", i, errs[i])
			}
			if queued[i] != nil {
				woke++
			}
		}
		if woke != 1 {
			t.Errorf("%d concurrent user.messages to a dormant session queued %d items, want 1", racers, woke)
		}
		if live := f.listWork(t, e.ID, work.Queued); len(live) != 1 {
			t.Errorf("queued items after concurrent wake-ups: %v, want 1", itemIDs(live))
		}
		checkEqual(t, "the stopped item", f.getWork(t, it), it)
		if got := f.listEvents(t, s.ID); len(got) != racers {
			t.Errorf("ListEvents: %d events, want %d", len(got), racers)
		}
	})
}

func testListEvents(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, cloud)
		s, other := draftSession(e.ID, base), draftSession(e.ID, base)
		var want, hidden []string
		initial := []store.Event{event(s.ID, "user.message", base), event(s.ID, "user.message", base)}
		f.put(t, s, nil, initial...)
		f.put(t, other, nil)
		want = append(want, initial[0].ID, initial[1].ID)
		for i := range 3 {
			mine := []store.Event{event(s.ID, "system.message", base), event(s.ID, "user.message", base)}
			theirs := event(other.ID, "user.message", base)
			if _, err := f.st.AppendEvents(f.ctx, other.ID, []store.Event{theirs}, base); err != nil {
				t.Fatalf("AppendEvents %d: %v", i, err)
			}
			if _, err := f.st.AppendEvents(f.ctx, s.ID, mine, base); err != nil {
				t.Fatalf("AppendEvents %d: %v", i, err)
			}
			want = append(want, mine[0].ID, mine[1].ID)
			hidden = append(hidden, theirs.ID)
		}
		checkPages(t, id.Event, listOf(func(p store.Page) ([]store.Event, bool, error) {
			return f.st.ListEvents(f.ctx, s.ID, p)
		}, eventID), want, hidden...)
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, cloud)
		s := draftSession(e.ID, base)
		var initial []store.Event
		for range 9 {
			initial = append(initial, event(s.ID, "user.message", base))
		}
		f.put(t, s, nil, initial...)
		fence := id.New(id.Event)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]store.Event, bool, error) {
			return f.st.ListEvents(f.ctx, s.ID, p)
		}, eventID), listIDs(initial, eventID), fence, func() (string, error) {
			ev := event(s.ID, "user.message", base)
			_, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{ev}, base)
			return ev.ID, err
		})
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, _, err := f.st.ListEvents(f.ctx, id.New(id.Session), store.Page{Limit: 10})
		wantNotFound(t, "ListEvents of a missing session", err)
	})
}
