package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

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
		if gv.Type() == reflect.TypeFor[work.Item]() && name == "Version" {
			continue // the store's bookkeeping: checked by the tests of compare-and-set
		}
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

func listIDs[T any](rows []T, idOf func(T) string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = idOf(r)
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
