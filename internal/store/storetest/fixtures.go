package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// fixture is one subtest's bundle: its own store and a context.
type fixture struct {
	ctx context.Context
	st  store.Store
}

func setup(t *testing.T, newStore newStoreFunc) *fixture {
	t.Helper()
	return &fixture{ctx: context.Background(), st: newStore(t)}
}

// env stores an environment of the given config type; mods adjust it first.
func (f *fixture) env(t *testing.T, configType string, mods ...func(*store.Environment)) store.Environment {
	t.Helper()
	e := store.Environment{
		ID:          id.New(id.Environment),
		Name:        "byoc",
		Description: "runners",
		ConfigType:  configType,
		Config:      json.RawMessage(`{"type":"` + configType + `"}`),
		Metadata:    work.Metadata{"team": "infra"},
		CreatedAt:   base,
		UpdatedAt:   base,
	}
	for _, m := range mods {
		m(&e)
	}
	if _, err := f.st.CreateEnvironment(f.ctx, e); err != nil {
		t.Fatalf("CreateEnvironment: %v", err)
	}
	return e
}

// draftSession returns a session of envID, not stored yet.
func draftSession(envID string, at time.Time) store.Session {
	return store.Session{
		ID:            id.New(id.Session),
		EnvironmentID: envID,
		Agent:         json.RawMessage(`{"id":"agent_x","type":"agent","version":null}`),
		Title:         "fix the flaky test",
		Metadata:      work.Metadata{"team": "infra"},
		CreatedAt:     at,
		UpdatedAt:     at,
	}
}

// draft returns a session of envID and its work item brought to state by the rules of
// internal/work, starting at at; neither is stored yet. The item's timeline:
//
//	at       created, acknowledged by the worker it was delivered to or by w-fixture
//	         (lease until at+60s)
//	at+1s    first heartbeat (lease until at+61s)
//	at+2s    graceful stop requested (stopping)
//	at+3s    forced stop (stopped)
func draft(envID string, state work.State, at time.Time) (store.Session, work.Item) {
	s := draftSession(envID, at)
	return s, advance(work.New(id.New(id.Work), envID, s.ID, s.Metadata, at), state, at)
}

// advance applies the rules to bring a queued item to state (see draft).
func advance(it work.Item, state work.State, at time.Time) work.Item {
	if state == work.Queued {
		return it
	}
	worker := it.DeliveredTo
	if worker == "" {
		worker = "w-fixture"
	}
	it, _, err := work.Ack(worker, at).Apply(it)
	if err != nil {
		panic(err)
	}
	if state == work.Starting {
		return it
	}
	if it, _, err = work.Heartbeat(work.AnyHeartbeat, work.DefaultTTL, at.Add(sec)).Apply(it); err != nil {
		panic(err)
	}
	switch state {
	case work.Stopping:
		it, _, _ = work.Stop(false, at.Add(2*sec)).Apply(it)
	case work.Stopped:
		it, _, _ = work.Stop(true, at.Add(3*sec)).Apply(it)
	}
	return it
}

// put stores a session with its item (nil: none).
func (f *fixture) put(t *testing.T, s store.Session, it *work.Item, events ...store.Event) {
	t.Helper()
	if _, err := f.st.CreateSession(f.ctx, s, events, it, nil); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
}

// item stores a new session of env with one item in state (see draft).
func (f *fixture) item(t *testing.T, env store.Environment, state work.State, at time.Time) (store.Session, work.Item) {
	t.Helper()
	s, it := draft(env.ID, state, at)
	f.put(t, s, &it)
	return s, it
}

// insertItem stores it as it is, whatever its session. The contract offers no other way to
// give a session a second live item, or to have a leased item whose session does not
// exist, so the item rides along with a throwaway session of its environment.
func (f *fixture) insertItem(t *testing.T, it work.Item) {
	t.Helper()
	f.put(t, draftSession(it.EnvironmentID, it.CreatedAt), &it)
}

func (f *fixture) getWork(t *testing.T, it work.Item) work.Item {
	t.Helper()
	got, err := f.st.GetWork(f.ctx, it.EnvironmentID, it.ID)
	if err != nil {
		t.Fatalf("GetWork %s: %v", it.ID, err)
	}
	return got
}

func (f *fixture) getSession(t *testing.T, sessionID string) store.Session {
	t.Helper()
	s, err := f.st.GetSession(f.ctx, sessionID)
	if err != nil {
		t.Fatalf("GetSession %s: %v", sessionID, err)
	}
	return s
}

// update runs UpdateWork with a transition that must succeed, and returns the item after.
func (f *fixture) update(t *testing.T, it work.Item, tr work.Transition) work.Item {
	t.Helper()
	ch, err := f.st.UpdateWork(f.ctx, it.EnvironmentID, it.ID, tr)
	if err != nil {
		t.Fatalf("UpdateWork %s: %v", it.ID, err)
	}
	return ch.After
}

func ackBy(worker string, now time.Time) work.Transition { return work.Ack(worker, now) }

func stopWith(force bool, now time.Time) work.Transition { return work.Stop(force, now) }

func heartbeat(exp work.Expectation, ttl int, now time.Time) work.Transition {
	return work.Heartbeat(exp, ttl, now)
}

// The expected item after a rule, for comparing with what a store returns: each applies
// the transition of internal/work to an item.

// deliverTo is the item delivered to worker at at (with a window that allows it).
func deliverTo(it work.Item, worker string, at time.Time) work.Item {
	next, _, _ := work.Deliver(work.Claim{WorkerID: worker, At: at}).Apply(it)
	return next
}

func beatItem(it work.Item, exp work.Expectation, ttl int, now time.Time) (work.Item, error) {
	next, _, err := work.Heartbeat(exp, ttl, now).Apply(it)
	return next, err
}

func stopItem(it work.Item, force bool, now time.Time) (work.Item, bool) {
	next, changed, _ := work.Stop(force, now).Apply(it)
	return next, changed
}

func cancelItem(it work.Item, now time.Time) (work.Item, bool) {
	next, changed, _ := work.Cancel(now).Apply(it)
	return next, changed
}

// expireItem is the item after its lease expired at now, whether its session is to be
// requeued, and whether it expired at all.
func expireItem(it work.Item, now time.Time) (work.Item, bool, bool) {
	next, ok, _ := work.ExpireLease(now).Apply(it)
	return next, ok && work.RequeuesAfterExpiry(it), ok
}

// listWork lists every item of an environment (states filter when not empty).
func (f *fixture) listWork(t *testing.T, envID string, states ...work.State) []work.Item {
	t.Helper()
	items, more, err := f.st.ListWork(f.ctx, envID, store.Page{Limit: 1000}, states)
	if err != nil {
		t.Fatalf("ListWork: %v", err)
	}
	if more {
		t.Fatalf("ListWork: more than 1000 items")
	}
	return items
}

func (f *fixture) listEvents(t *testing.T, sessionID string) []store.Event {
	t.Helper()
	events, more, err := f.st.ListEvents(f.ctx, sessionID, store.Page{Limit: 1000})
	if err != nil {
		t.Fatalf("ListEvents: %v", err)
	}
	if more {
		t.Fatalf("ListEvents: more than 1000 events")
	}
	return events
}

// event makes a client event of typ for a session, as the API stores it.
func event(sessionID, typ string, at time.Time) store.Event {
	evID := id.New(id.Event)
	at = work.Timestamp(at)
	body := fmt.Sprintf(`{"id":%q,"type":%q,"content":[{"type":"text","text":"h\u00e9llo \"x\" ✓"}],"created_at":%q}`,
		evID, typ, at.Format(work.TimeLayout))
	return store.Event{ID: evID, SessionID: sessionID, Type: typ, Body: json.RawMessage(body), CreatedAt: at}
}

func newWorkID() string { return id.New(id.Work) }

// inZone returns v with every non-zero time field moved to loc.
func inZone[T any](v T, loc *time.Location) T {
	rv := reflect.ValueOf(&v).Elem()
	for i := range rv.NumField() {
		if tm, ok := rv.Field(i).Interface().(time.Time); ok && !tm.IsZero() {
			rv.Field(i).Set(reflect.ValueOf(tm.In(loc)))
		}
	}
	return v
}

// race runs n copies of fn at once (fn gets its index) and waits for all of them.
func race(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// after is the item after an UpdateWork.
func after(ch store.Change, err error) (work.Item, error) { return ch.After, err }

// afterItems is each change's item after.
func afterItems(changes []store.Change) []work.Item {
	out := make([]work.Item, len(changes))
	for i, c := range changes {
		out[i] = c.After
	}
	return out
}
