// Package storetest is the conformance suite of the storage contract (package store):
// every store runs Run from its own tests and must pass it unchanged.
//
// The suite follows River's riverdrivertest: subtests are grouped by the contract's
// methods, every subtest starts with t.Parallel() and makes its own empty store, and the
// assertions state the contract in the words of store.go's doc comments. Time is a
// parameter: every call gets an explicit now on one fixed timeline (base plus offsets), so
// nothing sleeps. The race subtests use a bounded number of goroutines and are meant to be
// run with -race.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
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

// base is the origin of the suite's timeline. Its microsecond digits catch a store that
// keeps only milliseconds or seconds.
var base = time.Date(2026, 7, 1, 8, 15, 6, 120394000, time.UTC)

// elsewhere is a zone the round-trip tests write times in, so that a store that hands
// back the caller's location instead of UTC is caught.
var elsewhere = time.FixedZone("CEST", 2*60*60)

const (
	us  = time.Microsecond
	sec = time.Second

	selfHosted = "self_hosted"
	cloud      = "cloud"

	// racers is how many goroutines a race subtest runs against one row or queue: enough
	// to interleave on any store, few enough to stay quick under -race.
	racers = 8
)

// newStoreFunc makes a fresh, empty store for one subtest and closes it when t ends.
type newStoreFunc = func(t *testing.T) store.Store

// Run runs the conformance suite against the stores newStore makes. Every subtest calls
// newStore itself, so stores never share rows; newStore must return an empty store and
// close it when its t ends (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	groups := []struct {
		name string
		run  func(*testing.T, newStoreFunc)
	}{
		{"Ping", testPing},
		{"CreateEnvironment", testCreateEnvironment},
		{"GetEnvironment", testGetEnvironment},
		{"ListEnvironments", testListEnvironments},
		{"UpdateEnvironment", testUpdateEnvironment},
		{"DeleteEnvironment", testDeleteEnvironment},
		{"CreateSession", testCreateSession},
		{"CreateSessionAndClaim", testCreateSessionAndClaim},
		{"GetSession", testGetSession},
		{"ListSessions", testListSessions},
		{"UpdateSession", testUpdateSession},
		{"UpdateSessionWork", testUpdateSessionWork},
		{"DeleteSession", testDeleteSession},
		{"AppendEvents", testAppendEvents},
		{"ListEvents", testListEvents},
		{"ClaimWork", testClaimWork},
		{"NextReclaim", testNextReclaim},
		{"GetWork", testGetWork},
		{"ListWork", testListWork},
		{"UpdateWork", testUpdateWork},
		{"WorkStats", testWorkStats},
		{"CountWork", testCountWork},
		{"RecordPoll", testRecordPoll},
		{"ExpireLeases", testExpireLeases},
		{"NextLeaseExpiry", testNextLeaseExpiry},
		{"CreateToken", testCreateToken},
		{"CreateFirstToken", testCreateFirstToken},
		{"TokenByHash", testTokenByHash},
		{"ListTokens", testListTokens},
		{"RevokeToken", testRevokeToken},
		{"TouchToken", testTouchToken},
		{"CountTokens", testCountTokens},
		{"ReserveIdempotencyKey", testReserveIdempotencyKey},
		{"CompleteIdempotencyKey", testCompleteIdempotencyKey},
		{"ReleaseIdempotencyKey", testReleaseIdempotencyKey},
		{"PruneIdempotencyKeys", testPruneIdempotencyKeys},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newStore)
		})
	}
}

// ---------------------------------------------------------------------------------------
// Fixtures

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
	if err := f.st.CreateEnvironment(f.ctx, e); err != nil {
		t.Fatalf("CreateEnvironment: %v", err)
	}
	return e
}

func archivedEnv(e *store.Environment) { e.ArchivedAt = base.Add(sec) }

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
	it, _, err := work.Ack(it, worker, at)
	if err != nil {
		panic(err)
	}
	if state == work.Starting {
		return it
	}
	if it, err = work.Heartbeat(it, work.AnyHeartbeat, work.DefaultTTL, at.Add(sec)); err != nil {
		panic(err)
	}
	switch state {
	case work.Stopping:
		it, _ = work.Stop(it, false, at.Add(2*sec))
	case work.Stopped:
		it, _ = work.Stop(it, true, at.Add(3*sec))
	}
	return it
}

// put stores a session with its item (nil: none).
func (f *fixture) put(t *testing.T, s store.Session, it *work.Item, events ...store.Event) {
	t.Helper()
	if err := f.st.CreateSession(f.ctx, s, events, it); err != nil {
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

// update runs UpdateWork with a rule that must succeed.
func (f *fixture) update(t *testing.T, it work.Item, fn func(work.Item) (work.Item, bool, error)) work.Item {
	t.Helper()
	got, err := f.st.UpdateWork(f.ctx, it.EnvironmentID, it.ID, fn)
	if err != nil {
		t.Fatalf("UpdateWork %s: %v", it.ID, err)
	}
	return got
}

func ackBy(worker string, now time.Time) func(work.Item) (work.Item, bool, error) {
	return func(it work.Item) (work.Item, bool, error) { return work.Ack(it, worker, now) }
}

func stopWith(force bool, now time.Time) func(work.Item) (work.Item, bool, error) {
	return func(it work.Item) (work.Item, bool, error) {
		next, changed := work.Stop(it, force, now)
		return next, changed, nil
	}
}

func heartbeat(exp work.Expectation, ttl int, now time.Time) func(work.Item) (work.Item, bool, error) {
	return func(it work.Item) (work.Item, bool, error) {
		next, err := work.Heartbeat(it, exp, ttl, now)
		return next, err == nil, err
	}
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

func draftToken(envID string) store.Token {
	return store.Token{
		ID:            id.New(id.Token),
		Name:          "ci",
		Role:          "worker",
		EnvironmentID: envID,
		Hash:          "sha256:" + id.New("h"),
		CreatedAt:     base,
	}
}

func (f *fixture) token(t *testing.T, mods ...func(*store.Token)) store.Token {
	t.Helper()
	tok := draftToken("")
	tok.Role = "admin"
	for _, m := range mods {
		m(&tok)
	}
	if err := f.st.CreateToken(f.ctx, tok); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return tok
}

// workIDs hands out work IDs for ExpireLeases and remembers them, so that a test can tell
// that a requeued item's ID came from newID.
type workIDs struct {
	mu   sync.Mutex
	made map[string]bool
}

func (w *workIDs) next() string {
	s := id.New(id.Work)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.made == nil {
		w.made = map[string]bool{}
	}
	w.made[s] = true
	return s
}

func newWorkID() string { return id.New(id.Work) }

func (w *workIDs) has(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.made[s]
}

// ---------------------------------------------------------------------------------------
// Assertions

// diff compares two records of the same struct type field by field: times with Equal (a
// non-zero time must also be in UTC), JSON and byte fields byte for byte, metadata as a
// map (nil equals empty). It returns one line per differing field.
func diff(got, want any) []string {
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	if gv.Type() != wv.Type() {
		return []string{fmt.Sprintf("type %s, want %s", gv.Type(), wv.Type())}
	}
	var out []string
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		switch w := w.(type) {
		case time.Time:
			g := g.(time.Time)
			switch {
			case g.IsZero() != w.IsZero() || !g.Equal(w):
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, fmtTime(g), fmtTime(w)))
			case !g.IsZero() && g.Location() != time.UTC:
				out = append(out, fmt.Sprintf("%s = %s: not in UTC", name, g))
			}
		case json.RawMessage:
			if !bytes.Equal(g.(json.RawMessage), w) {
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, g, w))
			}
		case []byte:
			if !bytes.Equal(g.([]byte), w) {
				out = append(out, fmt.Sprintf("%s = %q, want %q", name, g, w))
			}
		case work.Metadata:
			if !maps.Equal(g.(work.Metadata), w) {
				out = append(out, fmt.Sprintf("%s = %v, want %v", name, g, w))
			}
		default:
			if !reflect.DeepEqual(g, w) {
				out = append(out, fmt.Sprintf("%s = %v, want %v", name, g, w))
			}
		}
	}
	return out
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.Format(time.RFC3339Nano)
}

// checkEqual reports every field in which got differs from want.
func checkEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	for _, d := range diff(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func wantConflict(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("%s: err = %v, want ErrConflict", what, err)
	}
}

// wantKind checks that err is a *work.Error of kind k.
func wantKind(t *testing.T, what string, err error, k work.Kind) {
	t.Helper()
	var we *work.Error
	if !errors.As(err, &we) || we.Kind != k {
		t.Errorf("%s: err = %v (%T), want *work.Error of kind %d", what, err, err, k)
	}
}

func itemIDs(items []work.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func byID(items []work.Item) map[string]work.Item {
	out := make(map[string]work.Item, len(items))
	for _, it := range items {
		out[it.ID] = it
	}
	return out
}

// ---------------------------------------------------------------------------------------
// Pagination

// lister lists one page and returns its rows' IDs.
type lister func(p store.Page) (ids []string, hasMore bool, err error)

func listOf[T any](list func(store.Page) ([]T, bool, error), idOf func(T) string) lister {
	return func(p store.Page) ([]string, bool, error) {
		rows, more, err := list(p)
		out := make([]string, len(rows))
		for i, r := range rows {
			out[i] = idOf(r)
		}
		return out, more, err
	}
}

func envID(e store.Environment) string { return e.ID }
func sessID(s store.Session) string    { return s.ID }
func eventID(e store.Event) string     { return e.ID }
func workID(it work.Item) string       { return it.ID }
func tokenID(t store.Token) string     { return t.ID }

// checkPages checks every page a client can ask for against want, the IDs (ascending)
// that the list's filters let through: the first page, and an after_id and a before_id
// page at every row and at every extra cursor (rows the filters hide, IDs before and after
// every row), each for limits 1 to 3 and beyond the row count. Pages must be ascending,
// hold the limit rows nearest the cursor in the direction of travel, and hasMore must
// tell whether more rows lie in that direction.
func checkPages(t *testing.T, prefix string, list lister, want []string, extra ...string) {
	t.Helper()
	if !slices.IsSorted(want) {
		t.Fatalf("checkPages: want is not ascending")
	}
	cursors := slices.Concat(want, extra, []string{
		prefix + "_" + strings.Repeat("0", 32),
		prefix + "_" + strings.Repeat("f", 32),
	})
	check := func(p store.Page, wantIDs []string, wantMore bool) {
		t.Helper()
		got, more, err := list(p)
		if err != nil {
			t.Errorf("page %+v: %v", p, err)
			return
		}
		if !slices.Equal(got, wantIDs) || more != wantMore {
			t.Errorf("page %+v:\n got  %v hasMore=%v\n want %v hasMore=%v", p, got, more, wantIDs, wantMore)
		}
	}
	for _, limit := range []int{1, 2, 3, len(want), len(want) + 1} {
		if limit < 1 {
			continue
		}
		check(store.Page{Limit: limit}, want[:min(limit, len(want))], len(want) > limit)
		for _, c := range cursors {
			var after, before []string
			for _, w := range want {
				if w > c {
					after = append(after, w)
				}
				if w < c {
					before = append(before, w)
				}
			}
			check(store.Page{Limit: limit, AfterID: c}, after[:min(limit, len(after))], len(after) > limit)
			check(store.Page{Limit: limit, BeforeID: c}, before[max(0, len(before)-limit):], len(before) > limit)
		}
	}
}

// checkPagesUnderInserts pages through a list while a goroutine inserts rows into it: a
// forward walk from the start and a backward walk from fence (an ID made after every
// initial row and before any insert). Neither may skip or repeat a row of initial, and
// the forward walk may show nothing but initial and inserted rows, ascending. At least one
// insert lands between any two page reads.
func checkPagesUnderInserts(t *testing.T, list lister, initial []string, fence string, insert func() (string, error)) {
	t.Helper()
	const inserts = 24
	inserted := make(chan string, inserts)
	var insertErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(inserted)
		for range inserts {
			s, err := insert()
			if err != nil {
				insertErr = err
				return
			}
			inserted <- s
		}
	})
	var added []string
	waitInsert := func() {
		if s, ok := <-inserted; ok {
			added = append(added, s)
		}
	}

	// A walk reads at most one page per two rows plus one; more means it is not advancing.
	maxPages := (len(initial)+inserts)/2 + 2
	var forward []string
	for p, n := (store.Page{Limit: 2}), 0; ; n++ {
		if n == maxPages {
			t.Fatalf("forward walk: no end after %d pages", n)
		}
		waitInsert()
		ids, more, err := list(p)
		if err != nil {
			t.Fatalf("page %+v: %v", p, err)
		}
		forward = append(forward, ids...)
		if !more || len(ids) == 0 {
			break
		}
		p.AfterID = ids[len(ids)-1]
	}
	var backward []string
	for p, n := (store.Page{Limit: 2, BeforeID: fence}), 0; ; n++ {
		if n == maxPages {
			t.Fatalf("backward walk: no end after %d pages", n)
		}
		waitInsert()
		ids, more, err := list(p)
		if err != nil {
			t.Fatalf("page %+v: %v", p, err)
		}
		backward = append(ids, backward...)
		if !more || len(ids) == 0 {
			break
		}
		p.BeforeID = ids[0]
	}
	wg.Wait()
	for s := range inserted {
		added = append(added, s)
	}
	if insertErr != nil {
		t.Fatalf("insert: %v", insertErr)
	}
	if len(added) == 0 {
		t.Fatalf("no row was inserted while paging")
	}

	known := map[string]bool{}
	for _, s := range slices.Concat(initial, added) {
		known[s] = true
	}
	for i, s := range forward {
		if i > 0 && s <= forward[i-1] {
			t.Errorf("forward walk: %s after %s: rows repeated or out of order", s, forward[i-1])
		}
		if !known[s] {
			t.Errorf("forward walk: %s is neither an initial nor an inserted row", s)
		}
	}
	for _, s := range initial {
		if n := countOf(forward, s); n != 1 {
			t.Errorf("forward walk: initial row %s seen %d times, want once", s, n)
		}
	}
	if !slices.Equal(backward, initial) {
		t.Errorf("backward walk from %s:\n got  %v\n want %v", fence, backward, initial)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
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

// ---------------------------------------------------------------------------------------
// Ping

func testPing(t *testing.T, newStore newStoreFunc) {
	t.Run("Reachable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		if err := f.st.Ping(f.ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Environments

func testCreateEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		want := store.Environment{
			ID:          id.New(id.Environment),
			Name:        "byoc ✓",
			Description: "runners in \"rack 4\"",
			ConfigType:  selfHosted,
			Config:      json.RawMessage(`{"type":"self_hosted","setup_script":"echo \"hi\"\n"}`),
			Metadata:    work.Metadata{"team": "infra", "cost_center": "42"},
			ArchivedAt:  base.Add(2 * sec),
			CreatedAt:   base,
			UpdatedAt:   base.Add(sec),
		}
		if err := f.st.CreateEnvironment(f.ctx, inZone(want, elsewhere)); err != nil {
			t.Fatalf("CreateEnvironment: %v", err)
		}
		got, err := f.st.GetEnvironment(f.ctx, want.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment", got, want)
		list, _, err := f.st.ListEnvironments(f.ctx, store.Page{Limit: 10}, true)
		if err != nil || len(list) != 1 {
			t.Fatalf("ListEnvironments: %d rows, err %v; want 1", len(list), err)
		}
		checkEqual(t, "ListEnvironments", list[0], want)
	})

	t.Run("ZeroFields", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		want := store.Environment{ID: id.New(id.Environment), Name: "n", ConfigType: cloud,
			Config: json.RawMessage(`{"type":"cloud"}`), CreatedAt: base, UpdatedAt: base}
		if err := f.st.CreateEnvironment(f.ctx, want); err != nil {
			t.Fatalf("CreateEnvironment: %v", err)
		}
		got, err := f.st.GetEnvironment(f.ctx, want.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment", got, want)
		if got.SelfHosted() {
			t.Errorf("SelfHosted() = true for config type %s", got.ConfigType)
		}
	})
}

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

func testGetEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		f.env(t, selfHosted)
		_, err := f.st.GetEnvironment(f.ctx, id.New(id.Environment))
		wantNotFound(t, "GetEnvironment", err)
	})
}

func testListEnvironments(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var all, live, archived []string
		for i := range 7 {
			var mods []func(*store.Environment)
			if i == 1 || i == 4 {
				mods = append(mods, archivedEnv)
			}
			e := f.env(t, selfHosted, mods...)
			all = append(all, e.ID)
			if e.ArchivedAt.IsZero() {
				live = append(live, e.ID)
			} else {
				archived = append(archived, e.ID)
			}
		}
		t.Run("IncludeArchived", func(t *testing.T) {
			checkPages(t, id.Environment, listOf(func(p store.Page) ([]store.Environment, bool, error) {
				return f.st.ListEnvironments(f.ctx, p, true)
			}, envID), all)
		})
		t.Run("ExcludeArchived", func(t *testing.T) {
			checkPages(t, id.Environment, listOf(func(p store.Page) ([]store.Environment, bool, error) {
				return f.st.ListEnvironments(f.ctx, p, false)
			}, envID), live, archived...)
		})
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		envs, more, err := f.st.ListEnvironments(f.ctx, store.Page{Limit: 20}, true)
		if err != nil || len(envs) != 0 || more {
			t.Errorf("ListEnvironments on an empty store = %d rows, hasMore %v, err %v", len(envs), more, err)
		}
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var initial []string
		for range 9 {
			initial = append(initial, f.env(t, cloud).ID)
		}
		fence := id.New(id.Environment)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]store.Environment, bool, error) {
			return f.st.ListEnvironments(f.ctx, p, false)
		}, envID), initial, fence, func() (string, error) {
			e := store.Environment{ID: id.New(id.Environment), Name: "n", ConfigType: cloud,
				Config: json.RawMessage(`{"type":"cloud"}`), CreatedAt: base, UpdatedAt: base}
			return e.ID, f.st.CreateEnvironment(f.ctx, e)
		})
	})
}

func testUpdateEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("WritesEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		want := store.Environment{
			ID:          e.ID,
			Name:        "renamed",
			Description: "new description",
			ConfigType:  cloud,
			Config:      json.RawMessage(`{"type":"cloud","networking":{"type":"limited"}}`),
			Metadata:    work.Metadata{"owner": "ops"},
			ArchivedAt:  base.Add(5 * sec),
			CreatedAt:   e.CreatedAt,
			UpdatedAt:   base.Add(5 * sec),
		}
		calls := 0
		got, err := f.st.UpdateEnvironment(f.ctx, e.ID, func(cur *store.Environment) error {
			calls++
			checkEqual(t, "fn's environment (the stored row)", *cur, e)
			*cur = want
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateEnvironment: %v", err)
		}
		if calls == 0 {
			t.Errorf("fn was not called")
		}
		checkEqual(t, "UpdateEnvironment's result", got, want)
		stored, err := f.st.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment after UpdateEnvironment", stored, want)
	})

	t.Run("FnErrorWritesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		fnErr := errors.New("fn refused")
		_, err := f.st.UpdateEnvironment(f.ctx, e.ID, func(cur *store.Environment) error {
			cur.Name = "changed"
			cur.Metadata = work.Metadata{"x": "y"}
			cur.ArchivedAt = base.Add(sec)
			return fnErr
		})
		if err != fnErr {
			t.Errorf("UpdateEnvironment: err = %v, want fn's error unchanged", err)
		}
		stored, err := f.st.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment after a failed fn", stored, e)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		called := false
		_, err := f.st.UpdateEnvironment(f.ctx, id.New(id.Environment), func(*store.Environment) error {
			called = true
			return nil
		})
		wantNotFound(t, "UpdateEnvironment", err)
		if called {
			t.Errorf("fn called for a missing environment")
		}
	})

	t.Run("ConcurrentUpdatesNotLost", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted, func(e *store.Environment) { e.Metadata = work.Metadata{"n": "0"} })
		errs := make([]error, racers)
		race(racers, func(i int) {
			_, errs[i] = f.st.UpdateEnvironment(f.ctx, e.ID, func(cur *store.Environment) error {
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
		stored, err := f.st.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		if got := stored.Metadata["n"]; got != strconv.Itoa(racers) {
			t.Errorf("after %d concurrent increments n = %s: updates were lost", racers, got)
		}
	})
}

func testDeleteEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("Deletes", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		other := f.env(t, selfHosted)
		if err := f.st.DeleteEnvironment(f.ctx, e.ID); err != nil {
			t.Fatalf("DeleteEnvironment: %v", err)
		}
		_, err := f.st.GetEnvironment(f.ctx, e.ID)
		wantNotFound(t, "GetEnvironment after delete", err)
		envs, _, err := f.st.ListEnvironments(f.ctx, store.Page{Limit: 10}, true)
		if err != nil {
			t.Fatalf("ListEnvironments: %v", err)
		}
		if ids := listIDs(envs, envID); !slices.Equal(ids, []string{other.ID}) {
			t.Errorf("ListEnvironments after delete = %v, want [%s]", ids, other.ID)
		}
	})

	t.Run("ConflictWhileReferenced", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		// Even an archived session whose only item is stopped keeps its environment.
		s, it := draft(e.ID, work.Stopped, base)
		s.ArchivedAt = base.Add(sec)
		f.put(t, s, &it)
		err := f.st.DeleteEnvironment(f.ctx, e.ID)
		wantConflict(t, "DeleteEnvironment with a session", err)
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteEnvironment with a session: ErrNotFound as well")
		}
		if _, err := f.st.GetEnvironment(f.ctx, e.ID); err != nil {
			t.Errorf("GetEnvironment after a refused delete: %v", err)
		}
		checkEqual(t, "work item after a refused delete", f.getWork(t, it), it)
	})

	t.Run("DeletesWorkItems", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		other := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Active, base)
		_, keep := f.item(t, other, work.Queued, base)
		if _, err := f.st.DeleteSession(f.ctx, s.ID, base.Add(time.Minute)); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		if err := f.st.DeleteEnvironment(f.ctx, e.ID); err != nil {
			t.Fatalf("DeleteEnvironment: %v", err)
		}
		_, err := f.st.GetWork(f.ctx, e.ID, it.ID)
		wantNotFound(t, "GetWork of a deleted environment's item", err)
		// An environment made again with the same ID must not find the old items.
		f.env(t, selfHosted, func(n *store.Environment) { n.ID = e.ID })
		if items := f.listWork(t, e.ID); len(items) != 0 {
			t.Errorf("ListWork of a re-created environment = %v, want none", itemIDs(items))
		}
		_, err = f.st.GetWork(f.ctx, e.ID, it.ID)
		wantNotFound(t, "GetWork in a re-created environment", err)
		checkEqual(t, "another environment's item", f.getWork(t, keep), keep)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		wantNotFound(t, "DeleteEnvironment", f.st.DeleteEnvironment(f.ctx, id.New(id.Environment)))
	})
}

func listIDs[T any](rows []T, idOf func(T) string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = idOf(r)
	}
	return out
}

// ---------------------------------------------------------------------------------------
// Sessions

func testCreateSession(t *testing.T, newStore newStoreFunc) {
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
		if err := f.st.CreateSession(f.ctx, inZone(want, elsewhere), given, &givenItem); err != nil {
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
		err := f.st.CreateSession(f.ctx, s, []store.Event{event(s.ID, "user.message", base)}, &it)
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
		err := f.st.CreateSession(f.ctx, s, []store.Event{event(s.ID, "user.message", base)}, &it)
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
			return s.ID, f.st.CreateSession(f.ctx, s, nil, &it)
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
		got, err := f.st.UpdateSessionWork(f.ctx, s.ID, func(it work.Item) (work.Item, bool) {
			mu.Lock()
			seen[it.ID] = it.State
			mu.Unlock()
			if it.ID == active.ID {
				it.Metadata = work.Metadata{"edited": "but not written"}
				return it, false
			}
			return work.Cancel(it, now)
		})
		if err != nil {
			t.Fatalf("UpdateSessionWork: %v", err)
		}
		if len(seen) != 2 || seen[queued.ID] != work.Queued || seen[active.ID] != work.Active {
			t.Errorf("fn saw %v, want exactly the live items %s (queued) and %s (active)", seen, queued.ID, active.ID)
		}
		wantQueued, _ := work.Cancel(queued, now)
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
		got, err := f.st.UpdateSessionWork(f.ctx, s.ID, func(it work.Item) (work.Item, bool) {
			calls++
			return work.Stop(it, true, base.Add(time.Hour))
		})
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
		_, err := f.st.UpdateSessionWork(f.ctx, id.New(id.Session), func(it work.Item) (work.Item, bool) { return it, false })
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
				cancelled, cancelErr = f.st.UpdateSessionWork(f.ctx, s.ID, func(it work.Item) (work.Item, bool) {
					return work.Cancel(it, now)
				})
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
		if _, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{event(s.ID, "user.interrupt", base.Add(sec))}, nil); err != nil {
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
		if _, err := f.st.AppendEvents(f.ctx, other.ID, []store.Event{otherEvent}, nil); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}

		now := base.Add(time.Hour)
		got, err := f.st.DeleteSession(f.ctx, s.ID, now)
		if err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		want := map[string]work.Item{}
		for _, it := range []work.Item{queued, stopping, active} {
			next, _ := work.Stop(it, true, now)
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

// ---------------------------------------------------------------------------------------
// Events

// newItemAt is the newItem of AppendEvents as the API writes it.
func newItemAt(now time.Time) func(store.Session) work.Item {
	return func(s store.Session) work.Item {
		return work.New(id.New(id.Work), s.EnvironmentID, s.ID, s.Metadata, now)
	}
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
		queued, err := f.st.AppendEvents(f.ctx, s.ID, given, newItemAt(base.Add(sec)))
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
				queued, err := f.st.AppendEvents(f.ctx, s.ID, events, newItemAt(now))
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
		// work.Wakes says for the session as it was before the call (nil newItem: never).
		for _, tc := range []struct {
			name     string
			config   string
			item     work.State
			archived bool
			typ      string
			nilFn    bool
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
			{name: "NilNewItem", config: selfHosted, item: work.Stopped, typ: "user.message", nilFn: true},
		} {
			wakes := !tc.nilFn && work.Wakes(tc.typ, tc.config == selfHosted,
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
				newItem := newItemAt(now)
				if tc.nilFn {
					newItem = nil
				}
				queued, err := f.st.AppendEvents(f.ctx, s.ID, events, newItem)
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
		_, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{event(s.ID, "user.message", base)}, newItemAt(base))
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
			queued[i], errs[i] = f.st.AppendEvents(f.ctx, s.ID, []store.Event{event(s.ID, "user.message", now)}, newItemAt(now))
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
			if _, err := f.st.AppendEvents(f.ctx, other.ID, []store.Event{theirs}, nil); err != nil {
				t.Fatalf("AppendEvents %d: %v", i, err)
			}
			if _, err := f.st.AppendEvents(f.ctx, s.ID, mine, nil); err != nil {
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
			_, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{ev}, nil)
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

// ---------------------------------------------------------------------------------------
// Work

func testClaimWork(t *testing.T, newStore newStoreFunc) {
	t.Run("DeliversOldestDeliverable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		// IDs ascend in draft order; the items are stored out of that order so that a
		// store delivering in insertion order is caught.
		_, elsewhereItem := draft(other.ID, work.Queued, base)
		_, acked := draft(e.ID, work.Starting, base)
		s1, first := draft(e.ID, work.Queued, base)
		s2, second := draft(e.ID, work.Queued, base)
		s3, third := draft(e.ID, work.Queued, base)
		f.put(t, s3, &third)
		f.insertItem(t, elsewhereItem)
		f.put(t, s2, &second)
		f.insertItem(t, acked)
		f.put(t, s1, &first)

		now := base.Add(time.Minute).In(elsewhere)
		got, ok, err := f.st.ClaimWork(f.ctx, e.ID, "w1", work.DefaultReclaim, now)
		if err != nil || !ok {
			t.Fatalf("ClaimWork = ok %v, err %v; want an item", ok, err)
		}
		want := work.Deliver(first, "w1", now)
		checkEqual(t, "claimed item", got, want)
		checkEqual(t, "stored claimed item", f.getWork(t, first), want)
		for _, it := range []work.Item{second, third, acked, elsewhereItem} {
			checkEqual(t, "item not claimed", f.getWork(t, it), it)
		}
		got, ok, err = f.st.ClaimWork(f.ctx, e.ID, "w1", work.DefaultReclaim, now)
		if err != nil || !ok || got.ID != second.ID {
			t.Errorf("second ClaimWork = %s, ok %v, err %v; want %s", got.ID, ok, err, second.ID)
		}
	})

	t.Run("RespectsReclaimWindow", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, first := f.item(t, e, work.Queued, base)
		_, second := f.item(t, e, work.Queued, base)
		const reclaim = 5 * time.Second
		t0 := base.Add(time.Minute)
		claim := func(worker string, now time.Time) (work.Item, bool) {
			t.Helper()
			it, ok, err := f.st.ClaimWork(f.ctx, e.ID, worker, reclaim, now)
			if err != nil {
				t.Fatalf("ClaimWork at %s: %v", now, err)
			}
			return it, ok
		}
		if it, ok := claim("w1", t0); !ok || it.ID != first.ID {
			t.Fatalf("first claim = %s (ok %v), want %s", it.ID, ok, first.ID)
		}
		// Inside the window the delivered item is passed over for the next one.
		if it, ok := claim("w2", t0.Add(reclaim-us)); !ok || it.ID != second.ID {
			t.Fatalf("claim inside the window = %s (ok %v), want %s", it.ID, ok, second.ID)
		}
		if it, ok := claim("w3", t0.Add(reclaim-us)); ok {
			t.Errorf("claim with both items inside their windows delivered %s", it.ID)
		}
		// At exactly the window's end the first item is deliverable again.
		it, ok := claim("w3", t0.Add(reclaim))
		if !ok || it.ID != first.ID {
			t.Fatalf("claim at the window's end = %s (ok %v), want %s again", it.ID, ok, first.ID)
		}
		want := work.Deliver(work.Deliver(first, "w1", t0), "w3", t0.Add(reclaim))
		if want.Deliveries != 2 {
			t.Fatalf("fixture: Deliveries = %d", want.Deliveries)
		}
		checkEqual(t, "reclaimed item", it, want)
		checkEqual(t, "stored reclaimed item", f.getWork(t, first), want)
		checkEqual(t, "stored second item", f.getWork(t, second), work.Deliver(second, "w2", t0.Add(reclaim-us)))
	})

	t.Run("ZeroReclaimRedelivers", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		for i := range 3 {
			got, ok, err := f.st.ClaimWork(f.ctx, e.ID, "", 0, base.Add(sec))
			if err != nil || !ok || got.ID != it.ID || got.Deliveries != i+1 || got.DeliveredTo != "" {
				t.Errorf("claim %d with a zero window = %s deliveries %d to %q (ok %v, err %v), want %s delivery %d to \"\"",
					i, got.ID, got.Deliveries, got.DeliveredTo, ok, err, it.ID, i+1)
			}
		}
	})

	t.Run("NothingDeliverable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		now := base.Add(time.Hour)
		if it, ok, err := f.st.ClaimWork(f.ctx, e.ID, "w1", work.DefaultReclaim, now); ok || err != nil {
			t.Errorf("ClaimWork on an empty queue = %s, ok %v, err %v; want ok false", it.ID, ok, err)
		}
		var items []work.Item
		for _, state := range []work.State{work.Starting, work.Active, work.Stopping, work.Stopped} {
			_, it := f.item(t, e, state, base)
			items = append(items, it)
		}
		_, foreign := f.item(t, other, work.Queued, base)
		items = append(items, foreign)
		if it, ok, err := f.st.ClaimWork(f.ctx, e.ID, "w1", work.DefaultReclaim, now); ok || err != nil {
			t.Errorf("ClaimWork with no queued item = %s, ok %v, err %v; want ok false", it.ID, ok, err)
		}
		for _, it := range items {
			checkEqual(t, "item after an empty claim", f.getWork(t, it), it)
		}
	})

	t.Run("ConcurrentClaimsDeliverEachItemOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const items = 3 * racers
		want := map[string]bool{}
		for range items {
			_, it := f.item(t, e, work.Queued, base)
			want[it.ID] = true
		}
		now := base.Add(time.Minute)
		got := make([][]string, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			// More claims than items means some item came back inside its window: stop
			// there rather than loop on a store that never records deliveries.
			for range items + 1 {
				it, ok, err := f.st.ClaimWork(f.ctx, e.ID, fmt.Sprintf("w%d", i), time.Hour, now)
				if err != nil {
					errs[i] = err
					return
				}
				if !ok {
					return
				}
				got[i] = append(got[i], it.ID)
			}
		})
		seen := map[string]int{}
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("claimer %d: %v", i, errs[i])
			}
			for _, wid := range got[i] {
				seen[wid]++
			}
		}
		for wid, n := range seen {
			if n != 1 {
				t.Errorf("item %s delivered %d times inside the reclaim window", wid, n)
			}
			if !want[wid] {
				t.Errorf("unknown item %s delivered", wid)
			}
		}
		if len(seen) != items {
			t.Errorf("%d of %d items delivered", len(seen), items)
		}
		for _, it := range f.listWork(t, e.ID) {
			if it.Deliveries != 1 || it.DeliveredAt.IsZero() || !strings.HasPrefix(it.DeliveredTo, "w") {
				t.Errorf("stored item %s: Deliveries %d, DeliveredAt %s, DeliveredTo %q; want one recorded delivery",
					it.ID, it.Deliveries, fmtTime(it.DeliveredAt), it.DeliveredTo)
			}
		}
	})
}

func testNextReclaim(t *testing.T, newStore newStoreFunc) {
	t.Run("EarliestUnacknowledgedDelivery", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		const reclaim = 5 * time.Second
		next := func() (time.Time, bool) {
			t.Helper()
			at, ok, err := f.st.NextReclaim(f.ctx, e.ID, reclaim)
			if err != nil {
				t.Fatalf("NextReclaim: %v", err)
			}
			return at, ok
		}
		if at, ok := next(); ok {
			t.Errorf("NextReclaim of an empty queue = %s, want ok false", at)
		}
		_, first := f.item(t, e, work.Queued, base)
		_, second := f.item(t, e, work.Queued, base)
		if at, ok := next(); ok {
			t.Errorf("NextReclaim with nothing delivered = %s, want ok false", at)
		}
		// Another environment's earlier delivery does not count.
		f.item(t, other, work.Queued, base)
		if _, ok, err := f.st.ClaimWork(f.ctx, other.ID, "w9", reclaim, base.Add(time.Second)); !ok || err != nil {
			t.Fatalf("ClaimWork in the other environment: ok %v, err %v", ok, err)
		}
		t1, t2 := base.Add(time.Minute), base.Add(time.Minute+3*sec)
		for _, now := range []time.Time{t1, t2} {
			if _, ok, err := f.st.ClaimWork(f.ctx, e.ID, "w1", reclaim, now); !ok || err != nil {
				t.Fatalf("ClaimWork at %s: ok %v, err %v", now, ok, err)
			}
		}
		if at, ok := next(); !ok || !at.Equal(t1.Add(reclaim)) {
			t.Errorf("NextReclaim = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(t1.Add(reclaim)))
		}
		f.update(t, first, ackBy("w1", t2))
		if at, ok := next(); !ok || !at.Equal(t2.Add(reclaim)) {
			t.Errorf("NextReclaim after the earliest was acknowledged = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(t2.Add(reclaim)))
		}
		f.update(t, second, stopWith(false, t2))
		if at, ok := next(); ok {
			t.Errorf("NextReclaim with no delivered queued item = %s, want ok false", at)
		}
	})
}

func testGetWork(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		// Between them the two items have every field set.
		s, stopping := draft(e.ID, work.Queued, base)
		stopping.Metadata = work.Metadata{"team": "infra", "attempt": "2"}
		stopping = work.Deliver(work.Deliver(stopping, "w1", base.Add(us)), "w2", base.Add(sec+us))
		stopping = advance(stopping, work.Stopping, base.Add(2*sec))
		stopping, err := work.Heartbeat(stopping, work.AnyHeartbeat, 120, base.Add(4*sec+7*us))
		if err != nil {
			t.Fatal(err)
		}
		given := inZone(stopping, elsewhere)
		f.put(t, s, &given)
		checkEqual(t, "GetWork of a stopping item", f.getWork(t, stopping), stopping)
		_, stopped := draft(e.ID, work.Stopped, base.Add(time.Minute))
		givenStopped := inZone(stopped, elsewhere)
		f.insertItem(t, givenStopped)
		checkEqual(t, "GetWork of a stopped item", f.getWork(t, stopped), stopped)
		list := byID(f.listWork(t, e.ID))
		checkEqual(t, "ListWork's stopping item", list[stopping.ID], stopping)
		checkEqual(t, "ListWork's stopped item", list[stopped.ID], stopped)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, err := f.st.GetWork(f.ctx, e.ID, id.New(id.Work))
		wantNotFound(t, "GetWork", err)
	})

	t.Run("WrongEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		_, err := f.st.GetWork(f.ctx, other.ID, it.ID)
		wantNotFound(t, "GetWork through another environment", err)
	})
}

func testListWork(t *testing.T, newStore newStoreFunc) {
	t.Run("PaginationAndStateFilter", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		type row struct {
			id    string
			state work.State
		}
		var rows []row
		var foreign []string
		for i := range 2 {
			for _, state := range work.States {
				_, it := f.item(t, e, state, base)
				rows = append(rows, row{it.ID, state})
				if i == 0 {
					_, x := f.item(t, other, state, base)
					foreign = append(foreign, x.ID)
				}
			}
		}
		for _, states := range [][]work.State{
			nil,
			{work.Queued},
			{work.Stopping, work.Starting},
			{work.Stopped, work.Active, work.Stopped},
			work.States,
		} {
			t.Run(fmt.Sprint(states), func(t *testing.T) {
				var want []string
				hidden := slices.Clone(foreign)
				for _, r := range rows {
					if len(states) == 0 || slices.Contains(states, r.state) {
						want = append(want, r.id)
					} else {
						hidden = append(hidden, r.id)
					}
				}
				checkPages(t, id.Work, listOf(func(p store.Page) ([]work.Item, bool, error) {
					return f.st.ListWork(f.ctx, e.ID, p, states)
				}, workID), want, hidden...)
			})
		}
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		var initial []string
		for range 9 {
			_, it := f.item(t, e, work.Queued, base)
			initial = append(initial, it.ID)
		}
		fence := id.New(id.Work)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]work.Item, bool, error) {
			return f.st.ListWork(f.ctx, e.ID, p, []work.State{work.Queued})
		}, workID), initial, fence, func() (string, error) {
			s, it := draft(e.ID, work.Queued, base)
			return it.ID, f.st.CreateSession(f.ctx, s, nil, &it)
		})
	})
}

func testUpdateWork(t *testing.T, newStore newStoreFunc) {
	t.Run("AppliesFnToStoredItem", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		claimed, ok, err := f.st.ClaimWork(f.ctx, e.ID, "w1", work.DefaultReclaim, base.Add(sec))
		if err != nil || !ok {
			t.Fatalf("ClaimWork: ok %v, err %v", ok, err)
		}
		now := base.Add(2 * sec)
		want, _, err := work.Ack(claimed, "w1", now)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, func(cur work.Item) (work.Item, bool, error) {
			checkEqual(t, "fn's item (the stored row)", cur, claimed)
			return work.Ack(cur, "w1", now)
		})
		if err != nil {
			t.Fatalf("UpdateWork: %v", err)
		}
		checkEqual(t, "UpdateWork's result", got, want)
		checkEqual(t, "stored item", f.getWork(t, it), want)
	})

	t.Run("UnchangedWritesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		if _, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, func(cur work.Item) (work.Item, bool, error) {
			cur.State = work.Stopped
			cur.Metadata = work.Metadata{"edited": "but not written"}
			cur.StoppedAt = base.Add(time.Hour)
			return cur, false, nil
		}); err != nil {
			t.Fatalf("UpdateWork: %v", err)
		}
		checkEqual(t, "item after fn reported no change", f.getWork(t, it), it)
	})

	t.Run("FnErrorReturnedUnchanged", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Stopping, base)
		var fnErr error
		_, err := f.st.UpdateWork(f.ctx, e.ID, it.ID, func(cur work.Item) (work.Item, bool, error) {
			next, _, err := work.Ack(cur, "w1", base.Add(time.Hour))
			fnErr = err
			next.Metadata = work.Metadata{"edited": "but not written"}
			next.State = work.Stopped
			return next, true, err
		})
		if fnErr == nil {
			t.Fatalf("fixture: ack of a stopping item succeeded")
		}
		if err != fnErr {
			t.Errorf("UpdateWork: err = %v (%T), want fn's *work.Error unchanged", err, err)
		}
		wantKind(t, "UpdateWork", err, work.Conflict)
		checkEqual(t, "item after fn failed", f.getWork(t, it), it)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		for _, tc := range []struct{ name, env, id string }{
			{"MissingItem", e.ID, id.New(id.Work)},
			{"WrongEnvironment", other.ID, it.ID},
		} {
			called := false
			_, err := f.st.UpdateWork(f.ctx, tc.env, tc.id, func(cur work.Item) (work.Item, bool, error) {
				called = true
				return stopWith(true, base.Add(time.Hour))(cur)
			})
			wantNotFound(t, "UpdateWork "+tc.name, err)
			if called {
				t.Errorf("UpdateWork %s: fn called", tc.name)
			}
		}
		checkEqual(t, "item", f.getWork(t, it), it)
	})

	t.Run("ConcurrentHeartbeatsOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Starting, base)
		now := base.Add(10 * sec) // every heartbeat at the same instant
		exp := work.ExpectNoHeartbeat
		var winner work.Item
		for round := range 3 {
			results := make([]work.Item, racers)
			errs := make([]error, racers)
			fnErrs := make([]error, racers)
			race(racers, func(i int) {
				results[i], errs[i] = f.st.UpdateWork(f.ctx, e.ID, it.ID, func(cur work.Item) (work.Item, bool, error) {
					next, err := work.Heartbeat(cur, exp, work.DefaultTTL, now)
					fnErrs[i] = err
					return next, err == nil, err
				})
			})
			wins := 0
			for i := range racers {
				if errs[i] == nil {
					wins++
					winner = results[i]
					continue
				}
				wantKind(t, fmt.Sprintf("round %d heartbeat %d", round, i), errs[i], work.Precondition)
				if errs[i] != fnErrs[i] {
					t.Errorf("round %d heartbeat %d: err = %v, want fn's *work.Error unchanged", round, i, errs[i])
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d of %d heartbeats with the same expectation succeeded, want exactly 1", round, wins, racers)
			}
			stored := f.getWork(t, it)
			checkEqual(t, fmt.Sprintf("round %d stored item", round), stored, winner)
			if stored.State != work.Active {
				t.Errorf("round %d: state %s, want active", round, stored.State)
			}
			exp = work.ExpectHeartbeatAt(winner.LatestHeartbeatAt)
		}
	})

	t.Run("ConcurrentAcksOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Queued, base)
		now := base.Add(sec)
		changed := make([]bool, racers)
		results := make([]work.Item, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			results[i], errs[i] = f.st.UpdateWork(f.ctx, e.ID, it.ID, func(cur work.Item) (work.Item, bool, error) {
				next, ch, err := work.Ack(cur, fmt.Sprintf("w%d", i), now)
				changed[i] = ch
				return next, ch, err
			})
		})
		winners := 0
		var winner work.Item
		for i := range racers {
			switch {
			case errs[i] == nil && changed[i]:
				winners++
				winner = results[i]
			case errs[i] == nil:
				t.Errorf("ack %d by w%d: succeeded without a change after another worker acknowledged", i, i)
			default:
				wantKind(t, fmt.Sprintf("ack %d", i), errs[i], work.Conflict)
			}
		}
		if winners != 1 {
			t.Fatalf("%d of %d acks by different workers changed the item, want exactly 1", winners, racers)
		}
		stored := f.getWork(t, it)
		checkEqual(t, "stored item", stored, winner)
		if stored.State != work.Starting || stored.AckedBy != winner.AckedBy {
			t.Errorf("stored item: state %s acked by %q, want starting acked by %q", stored.State, stored.AckedBy, winner.AckedBy)
		}
	})

	t.Run("ConcurrentStopsFollowTheTable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		// next is API.md §4's stop table.
		next := func(from work.State, force bool) work.State {
			switch {
			case from == work.Stopped:
				return work.Stopped
			case !force && (from == work.Starting || from == work.Active):
				return work.Stopping
			default:
				return work.Stopped
			}
		}
		type call struct {
			force     bool
			from, to  work.State
			changed   bool
			err       error
			committed work.Item
		}
		const perItem = 4
		var items []work.Item
		for range 2 {
			for _, state := range []work.State{work.Queued, work.Starting, work.Active, work.Stopping} {
				_, it := f.item(t, e, state, base)
				items = append(items, it)
			}
		}
		calls := make([][]call, len(items))
		for i := range calls {
			calls[i] = make([]call, perItem)
		}
		now := base.Add(time.Minute)
		race(len(items)*perItem, func(k int) {
			i, j := k/perItem, k%perItem
			c := &calls[i][j]
			c.force = j%2 == 1
			c.committed, c.err = f.st.UpdateWork(f.ctx, e.ID, items[i].ID, func(cur work.Item) (work.Item, bool, error) {
				n, ch := work.Stop(cur, c.force, now)
				c.from, c.to, c.changed = cur.State, n.State, ch
				return n, ch, nil
			})
		})
		for i, it := range items {
			stored := f.getWork(t, it)
			if stored.State != work.Stopped || stored.StoppedAt.IsZero() || !stored.LeaseExpiresAt.IsZero() {
				t.Errorf("item %s (from %s): state %s, stopped_at %s, lease %s after a forced stop; want stopped, no lease",
					it.ID, it.State, stored.State, fmtTime(stored.StoppedAt), fmtTime(stored.LeaseExpiresAt))
			}
			// The writes must chain: each changed stop starts from the state the previous
			// one left, beginning at the item's state, so no stop ran on a stale row.
			steps := map[work.State]call{}
			for _, c := range calls[i] {
				if c.err != nil {
					t.Errorf("item %s: stop: %v", it.ID, c.err)
					continue
				}
				if c.to != next(c.from, c.force) {
					t.Errorf("item %s: stop force=%v took %s to %s, the table says %s", it.ID, c.force, c.from, c.to, next(c.from, c.force))
				}
				if !c.changed {
					if c.from != work.Stopped {
						t.Errorf("item %s: stop force=%v on %s changed nothing", it.ID, c.force, c.from)
					}
					continue
				}
				if prev, dup := steps[c.from]; dup {
					t.Errorf("item %s: two stops were applied to the same %s row (force=%v and force=%v): one overwrote the other",
						it.ID, c.from, prev.force, c.force)
				}
				steps[c.from] = c
			}
			state, used := it.State, 0
			for state != work.Stopped {
				c, ok := steps[state]
				if !ok {
					t.Errorf("item %s: no committed stop from %s; steps %v", it.ID, state, steps)
					break
				}
				state = c.to
				used++
			}
			if used != len(steps) {
				t.Errorf("item %s: %d committed stops, but only %d chain from %s to stopped", it.ID, len(steps), used, it.State)
			}
			wantRequested := it.State == work.Stopping
			if c, ok := steps[it.State]; ok && c.to == work.Stopping {
				wantRequested = true
			}
			if got := !stored.StopRequestedAt.IsZero(); got != wantRequested {
				t.Errorf("item %s (from %s): stop_requested_at set = %v, want %v", it.ID, it.State, got, wantRequested)
			}
		}
	})
}

func testWorkStats(t *testing.T, newStore newStoreFunc) {
	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		st, err := f.st.WorkStats(f.ctx, e.ID, base)
		if err != nil {
			t.Fatalf("WorkStats: %v", err)
		}
		checkEqual(t, "WorkStats of an empty queue", st, store.Stats{})
	})

	t.Run("DepthPendingOldest", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		now := base.Add(time.Hour)
		put := func(envID string, state work.State, created time.Time, deliveredAt time.Time) {
			_, it := draft(envID, state, created)
			if !deliveredAt.IsZero() {
				it = work.Deliver(it, "w1", deliveredAt)
			}
			f.insertItem(t, it)
		}
		put(e.ID, work.Queued, base.Add(sec), time.Time{})                                   // depth: never delivered
		put(e.ID, work.Queued, base, now.Add(-sec))                                          // pending, and the oldest queued
		put(e.ID, work.Queued, base.Add(2*sec), now.Add(-work.DefaultReclaim))               // depth: window just ended
		put(e.ID, work.Queued, base.Add(3*sec), now.Add(-work.DefaultReclaim+us))            // pending: window ends in 1µs
		put(e.ID, work.Starting, base.Add(-time.Hour), time.Time{})                          // not queued
		put(e.ID, work.Stopped, base.Add(-2*time.Hour), time.Time{})                         // not queued
		put(other.ID, work.Queued, base.Add(-3*time.Hour), time.Time{})                      // another queue
		put(other.ID, work.Queued, base.Add(-3*time.Hour), now.Add(-work.DefaultReclaim+us)) // another queue
		st, err := f.st.WorkStats(f.ctx, e.ID, now)
		if err != nil {
			t.Fatalf("WorkStats: %v", err)
		}
		checkEqual(t, "WorkStats", st, store.Stats{Depth: 2, Pending: 2, OldestQueuedAt: base})
	})

	t.Run("WorkersPolling", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		now := base.Add(time.Hour)
		polls := []struct {
			env, worker string
			at          time.Time
		}{
			{e.ID, "w1", now.Add(-40 * sec)},
			{e.ID, "w2", now.Add(-sec)},
			{e.ID, "w1", now.Add(-2 * sec)},                // again: its latest poll counts, once
			{e.ID, "w3", now.Add(-work.PollerWindow - us)}, // too long ago
			{other.ID, "w4", now},                          // another environment
		}
		for _, p := range polls {
			if err := f.st.RecordPoll(f.ctx, p.env, p.worker, p.at); err != nil {
				t.Fatalf("RecordPoll: %v", err)
			}
		}
		stats := func(at time.Time) int {
			t.Helper()
			st, err := f.st.WorkStats(f.ctx, e.ID, at)
			if err != nil {
				t.Fatalf("WorkStats: %v", err)
			}
			return st.WorkersPolling
		}
		if n := stats(now); n != 2 {
			t.Errorf("workers_polling = %d, want 2 (w1, w2)", n)
		}
		// 29 s later w1's latest poll (now-2s) is 31 s old; w2's (now-1s) is 30 s old.
		if n := stats(now.Add(29*sec - us)); n != 1 {
			t.Errorf("workers_polling 29s later = %d, want 1 (w2)", n)
		}
		if n := stats(now.Add(time.Minute)); n != 0 {
			t.Errorf("workers_polling a minute later = %d, want 0", n)
		}
		st, err := f.st.WorkStats(f.ctx, other.ID, now)
		if err != nil || st.WorkersPolling != 1 {
			t.Errorf("other environment's workers_polling = %d (err %v), want 1", st.WorkersPolling, err)
		}
	})
}

func testRecordPoll(t *testing.T, newStore newStoreFunc) {
	t.Run("ConcurrentPollsCountDistinctWorkers", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		now := base.Add(time.Hour)
		errs := make([]error, 4*racers)
		race(4*racers, func(i int) {
			errs[i] = f.st.RecordPoll(f.ctx, e.ID, fmt.Sprintf("w%d", i%racers), now.Add(-time.Duration(i)*us))
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("RecordPoll %d: %v", i, err)
			}
		}
		st, err := f.st.WorkStats(f.ctx, e.ID, now)
		if err != nil || st.WorkersPolling != racers {
			t.Errorf("workers_polling = %d (err %v), want %d", st.WorkersPolling, err, racers)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Lease expiry

func testExpireLeases(t *testing.T, newStore newStoreFunc) {
	t.Run("StopsAndRequeues", func(t *testing.T) {
		t.Parallel()
		for _, state := range []work.State{work.Starting, work.Active} {
			t.Run(string(state), func(t *testing.T) {
				t.Parallel()
				f := setup(t, newStore)
				e := f.env(t, selfHosted)
				s, it := draft(e.ID, state, base)
				it.Metadata = work.Metadata{"team": "infra", "attempt": "1"} // the item's own, not the session's
				f.put(t, s, &it)
				_, later := f.item(t, e, state, base.Add(time.Hour))
				lease := it.LeaseExpiresAt
				ids := &workIDs{}

				// At its expiry instant the lease has not yet passed.
				exps, err := f.st.ExpireLeases(f.ctx, lease, ids.next)
				if err != nil || len(exps) != 0 {
					t.Fatalf("ExpireLeases at the expiry instant = %d expiries, err %v; want none", len(exps), err)
				}
				checkEqual(t, "item at its expiry instant", f.getWork(t, it), it)

				now := lease.Add(us)
				exps, err = f.st.ExpireLeases(f.ctx, now, ids.next)
				if err != nil {
					t.Fatalf("ExpireLeases: %v", err)
				}
				if len(exps) != 1 || exps[0].Item.ID != it.ID {
					t.Fatalf("ExpireLeases = %v, want exactly %s", expiredIDs(exps), it.ID)
				}
				wantStopped, requeue, ok := work.ExpireLease(it, now)
				if !ok || !requeue {
					t.Fatalf("fixture: ExpireLease = ok %v requeue %v", ok, requeue)
				}
				checkEqual(t, "expired item", exps[0].Item, wantStopped)
				checkEqual(t, "stored expired item", f.getWork(t, it), wantStopped)
				fresh := exps[0].Requeue
				if fresh == nil {
					t.Fatalf("no item was requeued for session %s", s.ID)
				}
				if !ids.has(fresh.ID) {
					t.Errorf("requeued item's ID %s did not come from newID", fresh.ID)
				}
				want := work.New(fresh.ID, e.ID, s.ID, it.Metadata, now)
				checkEqual(t, "requeued item", *fresh, want)
				checkEqual(t, "stored requeued item", f.getWork(t, *fresh), want)
				checkEqual(t, "item whose lease runs on", f.getWork(t, later), later)
				if f.getSession(t, s.ID).Running {
					t.Errorf("session still running after its item expired")
				}
			})
		}
	})

	t.Run("RequeuePerRule", func(t *testing.T) {
		t.Parallel()
		// Whether an expired item's session gets a fresh item is what work.ExpireLease and
		// work.RequeueAllowed say for the session as it is at expiry.
		for _, tc := range []struct {
			name  string
			state work.State
			sess  work.SessionState
			setup func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item)
		}{
			{name: "StoppingItem", state: work.Stopping, sess: work.SessionState{Exists: true}},
			{name: "ArchivedSession", state: work.Active, sess: work.SessionState{Exists: true, Archived: true},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					s.ArchivedAt = base.Add(sec)
				}},
			{name: "DeletedSession", state: work.Active, sess: work.SessionState{},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					it.SessionID = id.New(id.Session) // never stored
				}},
			{name: "SessionHasAnotherLiveItem", state: work.Starting, sess: work.SessionState{Exists: true, HasLiveItem: true},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					_, other := draft(env.ID, work.Queued, base.Add(time.Hour))
					other.SessionID = s.ID
					f.insertItem(t, other)
				}},
			{name: "SessionHasAnotherStoppedItem", state: work.Starting, sess: work.SessionState{Exists: true},
				setup: func(t *testing.T, f *fixture, env store.Environment, s *store.Session, it *work.Item) {
					_, other := draft(env.ID, work.Stopped, base.Add(-time.Hour))
					other.SessionID = s.ID
					f.insertItem(t, other)
				}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := setup(t, newStore)
				e := f.env(t, selfHosted)
				s, it := draft(e.ID, tc.state, base)
				if tc.setup != nil {
					tc.setup(t, f, e, &s, &it)
				}
				if it.SessionID == s.ID {
					f.put(t, s, &it)
				} else {
					f.insertItem(t, it)
				}
				before := f.listWork(t, e.ID)
				now := it.LeaseExpiresAt.Add(time.Second)
				wantStopped, requeue, ok := work.ExpireLease(it, now)
				if !ok {
					t.Fatalf("fixture: lease not expired")
				}
				wantRequeue := requeue && work.RequeueAllowed(tc.sess)
				exps, err := f.st.ExpireLeases(f.ctx, now, newWorkID)
				if err != nil {
					t.Fatalf("ExpireLeases: %v", err)
				}
				if len(exps) != 1 || exps[0].Item.ID != it.ID {
					t.Fatalf("ExpireLeases = %v, want exactly %s", expiredIDs(exps), it.ID)
				}
				checkEqual(t, "expired item", exps[0].Item, wantStopped)
				checkEqual(t, "stored expired item", f.getWork(t, it), wantStopped)
				after := f.listWork(t, e.ID)
				switch fresh := exps[0].Requeue; {
				case wantRequeue && fresh == nil:
					t.Errorf("nothing requeued; work.RequeueAllowed holds")
				case wantRequeue:
					checkEqual(t, "requeued item", *fresh, work.New(fresh.ID, e.ID, it.SessionID, it.Metadata, now))
					if len(after) != len(before)+1 {
						t.Errorf("ListWork after expiry: %d items, want %d", len(after), len(before)+1)
					}
				case fresh != nil:
					t.Errorf("ExpireLeases requeued %s; the rules say no requeue", fresh.ID)
				default:
					if len(after) != len(before) {
						t.Errorf("ListWork after expiry: %v, want the same %d items as before", itemIDs(after), len(before))
					}
				}
			})
		}
	})

	t.Run("LeaseNotYetExpired", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		var items []work.Item
		for _, state := range work.States {
			_, it := f.item(t, e, state, base)
			items = append(items, it)
		}
		// The latest lease fixture: active, heartbeat at base+1s, lease until base+61s.
		exps, err := f.st.ExpireLeases(f.ctx, base.Add(61*sec), newWorkID)
		if err != nil {
			t.Fatalf("ExpireLeases: %v", err)
		}
		var wantIDs []string
		for _, it := range items {
			if it.State == work.Starting {
				wantIDs = append(wantIDs, it.ID) // its lease ended at base+60s
			}
		}
		if got := expiredIDs(exps); !slices.Equal(got, wantIDs) {
			t.Errorf("ExpireLeases = %v, want only the starting item %v", got, wantIDs)
		}
		for _, it := range items {
			if it.State != work.Starting {
				checkEqual(t, "item "+string(it.State), f.getWork(t, it), it)
			}
		}
	})

	t.Run("SecondCallDoesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		for range 3 {
			f.item(t, e, work.Active, base)
		}
		now := base.Add(time.Hour)
		exps, err := f.st.ExpireLeases(f.ctx, now, newWorkID)
		if err != nil || len(exps) != 3 {
			t.Fatalf("ExpireLeases = %d expiries, err %v; want 3", len(exps), err)
		}
		before := f.listWork(t, e.ID)
		exps, err = f.st.ExpireLeases(f.ctx, now, newWorkID)
		if err != nil || len(exps) != 0 {
			t.Errorf("second ExpireLeases at the same time = %v, err %v; want nothing", expiredIDs(exps), err)
		}
		after := f.listWork(t, e.ID)
		if len(after) != len(before) {
			t.Fatalf("second ExpireLeases changed the item count from %d to %d", len(before), len(after))
		}
		for i := range before {
			checkEqual(t, "item after the second call", after[i], before[i])
		}
	})

	t.Run("SubMicrosecondNow", func(t *testing.T) {
		t.Parallel()
		// The contract's clock is the caller's: a now one nanosecond after the lease's
		// expiry is after it (work.LeaseExpired), even though stored times are microseconds.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		now := it.LeaseExpiresAt.Add(time.Nanosecond)
		if !work.LeaseExpired(it, now) {
			t.Fatalf("fixture: lease not expired at %s", now)
		}
		exps, err := f.st.ExpireLeases(f.ctx, now, newWorkID)
		if err != nil {
			t.Fatalf("ExpireLeases: %v", err)
		}
		if len(exps) != 1 || exps[0].Item.ID != it.ID {
			t.Errorf("ExpireLeases 1ns after the lease's expiry = %v, want %s", expiredIDs(exps), it.ID)
		}
	})

	t.Run("EveryExpiredItem", func(t *testing.T) {
		t.Parallel()
		// More expired leases than any one batch a store might scan for.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		if testing.Short() {
			t.Skip("creates 1001 items; skipped with -short")
		}
		const n = 1001
		for range n {
			f.item(t, e, work.Starting, base)
		}
		exps, err := f.st.ExpireLeases(f.ctx, base.Add(time.Hour), newWorkID)
		if err != nil {
			t.Fatalf("ExpireLeases: %v", err)
		}
		if len(exps) != n {
			t.Errorf("ExpireLeases stopped %d of %d expired leases", len(exps), n)
		}
		if left := f.listWork(t, e.ID, work.Starting); len(left) != 0 {
			t.Errorf("%d items with expired leases are still starting", len(left))
		}
	})

	t.Run("ConcurrentCallsExpireEachItemOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const n = 2 * racers
		sessions := map[string]string{} // item → session
		for range n {
			s, it := f.item(t, e, work.Active, base)
			sessions[it.ID] = s.ID
		}
		now := base.Add(time.Hour)
		results := make([][]store.Expiry, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			results[i], errs[i] = f.st.ExpireLeases(f.ctx, now, newWorkID)
		})
		expired := map[string]int{}
		requeued := map[string]int{} // session → fresh items
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("ExpireLeases %d: %v", i, errs[i])
			}
			for _, x := range results[i] {
				expired[x.Item.ID]++
				if x.Requeue != nil {
					requeued[x.Requeue.SessionID]++
				}
			}
		}
		for wid, sid := range sessions {
			if expired[wid] != 1 {
				t.Errorf("item %s expired %d times, want once", wid, expired[wid])
			}
			if requeued[sid] != 1 {
				t.Errorf("session %s requeued %d times, want once", sid, requeued[sid])
			}
		}
		queued := f.listWork(t, e.ID, work.Queued)
		perSession := map[string]int{}
		for _, it := range queued {
			perSession[it.SessionID]++
		}
		for sid, k := range perSession {
			if k != 1 {
				t.Errorf("session %s has %d queued items, want 1", sid, k)
			}
		}
		if len(queued) != n {
			t.Errorf("%d queued items after expiry, want %d", len(queued), n)
		}
	})

	t.Run("NeverExpiresExtendedLease", func(t *testing.T) {
		t.Parallel()
		// Heartbeats race one ExpireLeases call: an item whose lease a heartbeat extended
		// must not be expired, whether the heartbeat landed before or after the scan.
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const n = 2 * racers
		var items []work.Item
		for range n {
			_, it := f.item(t, e, work.Starting, base)
			items = append(items, it)
		}
		now := base.Add(61 * sec) // every lease ended at base+60s
		var exps []store.Expiry
		var expErr error
		beats := make([]work.Item, n)
		beatErrs := make([]error, n)
		race(n+1, func(i int) {
			if i == n {
				exps, expErr = f.st.ExpireLeases(f.ctx, now, newWorkID)
				return
			}
			beats[i], beatErrs[i] = f.st.UpdateWork(f.ctx, e.ID, items[i].ID, heartbeat(work.AnyHeartbeat, work.DefaultTTL, now))
		})
		if expErr != nil {
			t.Fatalf("ExpireLeases: %v", expErr)
		}
		expired := map[string]int{}
		for _, x := range exps {
			expired[x.Item.ID]++
		}
		for i, it := range items {
			stored := f.getWork(t, it)
			switch {
			case beatErrs[i] == nil:
				if expired[it.ID] != 0 {
					t.Errorf("item %s: expired although a heartbeat had extended its lease to %s",
						it.ID, fmtTime(beats[i].LeaseExpiresAt))
				}
				checkEqual(t, "heartbeated item", stored, beats[i])
			default:
				wantKind(t, "heartbeat after expiry", beatErrs[i], work.Conflict)
				if expired[it.ID] != 1 {
					t.Errorf("item %s: heartbeat refused (%v) but expired %d times", it.ID, beatErrs[i], expired[it.ID])
				}
				if stored.State != work.Stopped {
					t.Errorf("item %s: heartbeat refused but state %s", it.ID, stored.State)
				}
			}
		}
	})
}

func expiredIDs(exps []store.Expiry) []string {
	out := make([]string, len(exps))
	for i, x := range exps {
		out[i] = x.Item.ID
	}
	slices.Sort(out)
	return out
}

func testNextLeaseExpiry(t *testing.T, newStore newStoreFunc) {
	t.Run("EarliestLease", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		next := func() (time.Time, bool) {
			t.Helper()
			at, ok, err := f.st.NextLeaseExpiry(f.ctx)
			if err != nil {
				t.Fatalf("NextLeaseExpiry: %v", err)
			}
			return at, ok
		}
		if at, ok := next(); ok {
			t.Errorf("NextLeaseExpiry with no items = %s, want ok false", at)
		}
		f.item(t, e, work.Queued, base)
		f.item(t, e, work.Stopped, base)
		if at, ok := next(); ok {
			t.Errorf("NextLeaseExpiry with no leased item = %s, want ok false", at)
		}
		_, a := f.item(t, e, work.Starting, base)                // lease until base+60s
		_, b := f.item(t, other, work.Active, base.Add(-10*sec)) // lease until base+51s
		_, c := f.item(t, e, work.Stopping, base.Add(-5*sec))    // lease until base+56s
		if at, ok := next(); !ok || !at.Equal(b.LeaseExpiresAt) {
			t.Errorf("NextLeaseExpiry = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(b.LeaseExpiresAt))
		}
		b = f.update(t, b, heartbeat(work.AnyHeartbeat, work.MaxTTL, base))
		if at, ok := next(); !ok || !at.Equal(c.LeaseExpiresAt) {
			t.Errorf("NextLeaseExpiry after extending the earliest = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(c.LeaseExpiresAt))
		}
		f.update(t, c, stopWith(false, base))
		if at, ok := next(); !ok || !at.Equal(a.LeaseExpiresAt) {
			t.Errorf("NextLeaseExpiry after stopping = %s (ok %v), want %s", fmtTime(at), ok, fmtTime(a.LeaseExpiresAt))
		}
		f.update(t, a, stopWith(true, base))
		f.update(t, b, stopWith(true, base))
		if at, ok := next(); ok {
			t.Errorf("NextLeaseExpiry after every lease ended = %s, want ok false", at)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Tokens

func testCreateToken(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		want := draftToken(id.New(id.Environment))
		want.LastUsedAt = base.Add(sec)
		want.RevokedAt = base.Add(2 * sec)
		if err := f.st.CreateToken(f.ctx, inZone(want, elsewhere)); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		got, err := f.st.TokenByHash(f.ctx, want.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "TokenByHash", got, want)
		list, _, err := f.st.ListTokens(f.ctx, store.Page{Limit: 10})
		if err != nil || len(list) != 1 {
			t.Fatalf("ListTokens: %d rows, err %v; want 1", len(list), err)
		}
		checkEqual(t, "ListTokens", list[0], want)
	})
}

func testCreateFirstToken(t *testing.T, newStore newStoreFunc) {
	t.Run("OnlyIntoAnEmptyStore", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		first := draftToken("")
		created, err := f.st.CreateFirstToken(f.ctx, first)
		if err != nil || !created {
			t.Fatalf("CreateFirstToken on an empty store = %t, %v; want true", created, err)
		}
		got, err := f.st.TokenByHash(f.ctx, first.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "TokenByHash", got, first)
		second := draftToken("")
		created, err = f.st.CreateFirstToken(f.ctx, second)
		if err != nil || created {
			t.Fatalf("CreateFirstToken on a store with a token = %t, %v; want false", created, err)
		}
		if n, err := f.st.CountTokens(f.ctx); err != nil || n != 1 {
			t.Fatalf("CountTokens = %d, %v; want 1", n, err)
		}
	})

	t.Run("ConcurrentCallersOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var wg sync.WaitGroup
		wins := make(chan bool, racers)
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				created, err := f.st.CreateFirstToken(f.ctx, draftToken(""))
				if err != nil {
					t.Errorf("CreateFirstToken: %v", err)
				}
				wins <- created
			}()
		}
		wg.Wait()
		close(wins)
		n := 0
		for w := range wins {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d concurrent CreateFirstToken calls succeeded, want 1", n)
		}
		if count, err := f.st.CountTokens(f.ctx); err != nil || count != 1 {
			t.Fatalf("CountTokens = %d, %v; want 1", count, err)
		}
	})
}

func testTokenByHash(t *testing.T, newStore newStoreFunc) {
	t.Run("FindsByHash", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		a := f.token(t)
		b := f.token(t, func(tok *store.Token) { tok.RevokedAt = base.Add(sec) })
		for _, want := range []store.Token{a, b} {
			got, err := f.st.TokenByHash(f.ctx, want.Hash)
			if err != nil {
				t.Fatalf("TokenByHash: %v", err)
			}
			checkEqual(t, "TokenByHash", got, want)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		_, err := f.st.TokenByHash(f.ctx, tok.Hash+"x")
		wantNotFound(t, "TokenByHash", err)
	})
}

func testListTokens(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var want []string
		for i := range 7 {
			tok := f.token(t, func(tok *store.Token) {
				if i%3 == 0 {
					tok.RevokedAt = base.Add(sec)
				}
			})
			want = append(want, tok.ID)
		}
		checkPages(t, id.Token, listOf(func(p store.Page) ([]store.Token, bool, error) {
			return f.st.ListTokens(f.ctx, p)
		}, tokenID), want)
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var initial []string
		for range 9 {
			initial = append(initial, f.token(t).ID)
		}
		fence := id.New(id.Token)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]store.Token, bool, error) {
			return f.st.ListTokens(f.ctx, p)
		}, tokenID), initial, fence, func() (string, error) {
			tok := draftToken("")
			return tok.ID, f.st.CreateToken(f.ctx, tok)
		})
	})
}

func testRevokeToken(t *testing.T, newStore newStoreFunc) {
	t.Run("SetsRevokedAtOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		other := f.token(t)
		want := tok
		want.RevokedAt = base.Add(time.Minute)
		got, err := f.st.RevokeToken(f.ctx, tok.ID, want.RevokedAt)
		if err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
		checkEqual(t, "RevokeToken's result", got, want)
		got, err = f.st.RevokeToken(f.ctx, tok.ID, base.Add(time.Hour))
		if err != nil {
			t.Fatalf("second RevokeToken: %v", err)
		}
		checkEqual(t, "second RevokeToken's result", got, want)
		stored, err := f.st.TokenByHash(f.ctx, tok.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "stored token", stored, want)
		stored, err = f.st.TokenByHash(f.ctx, other.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "another token", stored, other)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, err := f.st.RevokeToken(f.ctx, id.New(id.Token), base)
		wantNotFound(t, "RevokeToken", err)
	})

	t.Run("ConcurrentRevokesAgree", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		got := make([]store.Token, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			got[i], errs[i] = f.st.RevokeToken(f.ctx, tok.ID, base.Add(time.Duration(i+1)*sec))
		})
		stored, err := f.st.TokenByHash(f.ctx, tok.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		if stored.RevokedAt.IsZero() {
			t.Fatalf("token not revoked")
		}
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("RevokeToken %d: %v", i, errs[i])
				continue
			}
			if !got[i].RevokedAt.Equal(stored.RevokedAt) {
				t.Errorf("RevokeToken %d returned revoked_at %s, stored is %s: the first revocation was overwritten",
					i, fmtTime(got[i].RevokedAt), fmtTime(stored.RevokedAt))
			}
		}
	})
}

func testTouchToken(t *testing.T, newStore newStoreFunc) {
	t.Run("SetsLastUsedAt", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		other := f.token(t)
		for _, at := range []time.Time{base.Add(time.Minute), base.Add(time.Hour)} {
			if err := f.st.TouchToken(f.ctx, tok.ID, at); err != nil {
				t.Fatalf("TouchToken: %v", err)
			}
			want := tok
			want.LastUsedAt = at
			got, err := f.st.TokenByHash(f.ctx, tok.Hash)
			if err != nil {
				t.Fatalf("TokenByHash: %v", err)
			}
			checkEqual(t, "touched token", got, want)
		}
		got, err := f.st.TokenByHash(f.ctx, other.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "another token", got, other)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		wantNotFound(t, "TouchToken of a missing token", f.st.TouchToken(f.ctx, id.New(id.Token), base))
	})
}

func testCountTokens(t *testing.T, newStore newStoreFunc) {
	t.Run("CountsRevoked", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		count := func() int {
			t.Helper()
			n, err := f.st.CountTokens(f.ctx)
			if err != nil {
				t.Fatalf("CountTokens: %v", err)
			}
			return n
		}
		if n := count(); n != 0 {
			t.Errorf("CountTokens of an empty store = %d", n)
		}
		f.token(t)
		tok := f.token(t)
		f.token(t, func(tok *store.Token) { tok.RevokedAt = base })
		if _, err := f.st.RevokeToken(f.ctx, tok.ID, base); err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
		if n := count(); n != 3 {
			t.Errorf("CountTokens = %d, want 3 (revoked ones included)", n)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Idempotency keys

func draftKey(tokenID string) store.Idempotency {
	return store.Idempotency{TokenID: tokenID, Key: "key-" + id.New("k"), Fingerprint: "fp-1", CreatedAt: base}
}

// reserve reserves rec and fails the test on an error.
func (f *fixture) reserve(t *testing.T, rec store.Idempotency) (store.Idempotency, bool) {
	t.Helper()
	existing, existed, err := f.st.ReserveIdempotencyKey(f.ctx, rec)
	if err != nil {
		t.Fatalf("ReserveIdempotencyKey: %v", err)
	}
	return existing, existed
}

func testReserveIdempotencyKey(t *testing.T, newStore newStoreFunc) {
	t.Run("FirstReservesSecondFindsIt", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		if _, existed := f.reserve(t, inZone(rec, elsewhere)); existed {
			t.Fatalf("first ReserveIdempotencyKey: existed = true")
		}
		again := rec
		again.Fingerprint = "fp-2"
		again.CreatedAt = base.Add(time.Minute)
		existing, existed := f.reserve(t, again)
		if !existed {
			t.Fatalf("second ReserveIdempotencyKey: existed = false")
		}
		checkEqual(t, "stored reservation", existing, rec)
		// The second call wrote nothing: a third still finds the first fingerprint.
		existing, _ = f.reserve(t, again)
		checkEqual(t, "reservation after a second reserve", existing, rec)
	})

	t.Run("ScopedByToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		f.reserve(t, rec)
		other := rec
		other.TokenID = id.New(id.Token)
		other.Fingerprint = "fp-other"
		if _, existed := f.reserve(t, other); existed {
			t.Errorf("the same key under another token: existed = true")
		}
		for _, want := range []store.Idempotency{rec, other} {
			again := want
			again.Fingerprint = "fp-again"
			existing, existed := f.reserve(t, again)
			if !existed {
				t.Errorf("token %s: reservation not found", want.TokenID)
			}
			checkEqual(t, "token "+want.TokenID+"'s reservation", existing, want)
		}
	})

	t.Run("ConcurrentReservesOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		existed := make([]bool, racers)
		found := make([]store.Idempotency, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			r := rec
			r.Fingerprint = fmt.Sprintf("fp-%d", i)
			found[i], existed[i], errs[i] = f.st.ReserveIdempotencyKey(f.ctx, r)
		})
		winner := -1
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("ReserveIdempotencyKey %d: %v", i, errs[i])
			}
			if !existed[i] {
				if winner >= 0 {
					t.Errorf("reserves %d and %d both reserved the key", winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("no reserve reserved the key")
		}
		for i := range racers {
			if existed[i] && found[i].Fingerprint != fmt.Sprintf("fp-%d", winner) {
				t.Errorf("reserve %d found fingerprint %s, want the winner's fp-%d", i, found[i].Fingerprint, winner)
			}
		}
	})
}

func testCompleteIdempotencyKey(t *testing.T, newStore newStoreFunc) {
	t.Run("StoresResponse", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		f.reserve(t, rec)
		body := []byte("{\"id\":\"env_1\",\"name\":\"b\\u00e9\"}\n")
		if err := f.st.CompleteIdempotencyKey(f.ctx, rec.TokenID, rec.Key, 201, body); err != nil {
			t.Fatalf("CompleteIdempotencyKey: %v", err)
		}
		existing, existed := f.reserve(t, rec)
		want := rec
		want.Status, want.Body = 201, body
		if !existed {
			t.Fatalf("completed key not found")
		}
		checkEqual(t, "completed record", existing, want)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		err := f.st.CompleteIdempotencyKey(f.ctx, id.New(id.Token), "never-reserved", 200, []byte("{}"))
		wantNotFound(t, "CompleteIdempotencyKey without a reservation", err)
	})
}

func testReleaseIdempotencyKey(t *testing.T, newStore newStoreFunc) {
	t.Run("ForgetsReservation", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec, kept := draftKey(id.New(id.Token)), draftKey(id.New(id.Token))
		f.reserve(t, rec)
		f.reserve(t, kept)
		if err := f.st.ReleaseIdempotencyKey(f.ctx, rec.TokenID, rec.Key); err != nil {
			t.Fatalf("ReleaseIdempotencyKey: %v", err)
		}
		if _, existed := f.reserve(t, rec); existed {
			t.Errorf("released key still reserved")
		}
		if _, existed := f.reserve(t, kept); !existed {
			t.Errorf("another key was released too")
		}
	})

	t.Run("KeepsCompletedRecord", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		f.reserve(t, rec)
		if err := f.st.CompleteIdempotencyKey(f.ctx, rec.TokenID, rec.Key, 200, []byte(`{"ok":true}`)); err != nil {
			t.Fatalf("CompleteIdempotencyKey: %v", err)
		}
		_ = f.st.ReleaseIdempotencyKey(f.ctx, rec.TokenID, rec.Key) // an error is allowed; a deletion is not
		existing, existed := f.reserve(t, rec)
		if !existed || existing.Status != 200 || string(existing.Body) != `{"ok":true}` {
			t.Errorf("completed record after release = existed %v, status %d, body %q; want it kept", existed, existing.Status, existing.Body)
		}
	})
}

func testPruneIdempotencyKeys(t *testing.T, newStore newStoreFunc) {
	t.Run("DeletesOlderThanCutoff", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tokenID := id.New(id.Token)
		old, atCutoff, young := draftKey(tokenID), draftKey(tokenID), draftKey(tokenID)
		old.CreatedAt = base.Add(-us)
		atCutoff.CreatedAt = base
		young.CreatedAt = base.Add(sec)
		f.reserve(t, old)
		f.reserve(t, atCutoff)
		f.reserve(t, young)
		if err := f.st.CompleteIdempotencyKey(f.ctx, tokenID, old.Key, 200, []byte("{}")); err != nil {
			t.Fatalf("CompleteIdempotencyKey: %v", err)
		}
		if err := f.st.PruneIdempotencyKeys(f.ctx, base.In(elsewhere)); err != nil {
			t.Fatalf("PruneIdempotencyKeys: %v", err)
		}
		for _, tc := range []struct {
			name string
			rec  store.Idempotency
			kept bool
		}{{"created before the cutoff", old, false}, {"created at the cutoff", atCutoff, true}, {"created after the cutoff", young, true}} {
			if _, existed := f.reserve(t, tc.rec); existed != tc.kept {
				t.Errorf("record %s: kept = %v, want %v", tc.name, existed, tc.kept)
			}
		}
	})
}
