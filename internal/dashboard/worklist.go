package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The outcomes of a work item, from the exit_code metadata that berth worker records when
// its handler ends. Any value but an integer 0 is a failure: the worker records -1 when the
// handler could not run.
const (
	outcomeSucceeded = "succeeded" // exit_code 0
	outcomeFailed    = "failed"    // any other exit_code
	outcomeNone      = "none"      // no exit_code (yet): running, or not run by berth worker
)

// exitCodeKey is the metadata key berth worker records the handler's exit code under.
const exitCodeKey = "exit_code"

// outcomeOf classifies an item's metadata, and returns its exit code (nil when none).
func outcomeOf(metadata map[string]string) (string, *string) {
	code, ok := metadata[exitCodeKey]
	if !ok || code == "" {
		return outcomeNone, nil
	}
	if n, err := strconv.Atoi(code); err == nil && n == 0 {
		return outcomeSucceeded, &code
	}
	return outcomeFailed, &code
}

// A filtered work list reads the API's pages of the largest size until it has a page of
// matching items, for at most workScanPages pages per computation. A sparse match stops
// the reading with a short page whose cursor continues where it stopped.
const (
	workScanLimit = 100
	workScanPages = 5
)

// workRow is what the work list shows of an item beyond its API object.
type workRow struct {
	Outcome  string  `json:"outcome"`
	ExitCode *string `json:"exit_code"`
	// Worker is the Worker-ID that acknowledged the item, else the one its latest
	// delivery went to ("" when none is known).
	Worker string `json:"worker"`
	// SessionTitle is the title of the item's session, null when the API does not show
	// the session to this token (or it was deleted).
	SessionTitle *string `json:"session_title"`
}

// listedWork is the part of a work object the list reads.
type listedWork struct {
	ID   string `json:"id"`
	Data struct {
		ID string `json:"id"`
	} `json:"data"`
	Metadata map[string]string `json:"metadata"`
}

// apiPage is a list answer of the API, its objects kept as they came.
type apiPage struct {
	Data    []json.RawMessage `json:"data"`
	FirstID *string           `json:"first_id"`
	LastID  *string           `json:"last_id"`
	HasMore bool              `json:"has_more"`
}

// getFunc makes one in-process GET to the API.
type getFunc func(path string, q url.Values) (answer, error)

// workList sets v's "work" (a page of items, as the API's list answers it, or its error),
// "rows" (each item's outcome, worker and session title, by item ID) and, with an outcome
// filter, "scanned" (how many items it read for the page).
//
// Its requests: one API list request (up to workScanPages with an outcome filter), one
// store read for the workers of all the rows, and one API request per distinct session of
// the rows, for its title; none of these for an empty page.
func (d *Handler) workList(ctx context.Context, get getFunc, p viewParams, v map[string]any) error {
	path := "/environments/" + url.PathEscape(p.Env) + "/work"
	backward := p.After == ""
	q := url.Values{}
	if p.State != "" {
		q.Set("state", p.State)
	}
	p.cursorQuery(q, id.Work)
	// first is the store page that reads what the API's first request listed.
	first := store.Page{AfterID: q.Get("after_id"), BeforeID: q.Get("before_id")}

	var (
		items []listedWork // the listed items, decoded
		upTo  int          // how many items the store reads to find them (from first)
	)
	if p.Outcome == "" {
		q.Set("limit", strconv.Itoa(workLimit))
		a, err := get(path, q)
		if err != nil {
			return err
		}
		if a.status != http.StatusOK {
			v["work"] = bodyOrError(a)
			return nil
		}
		var page apiPage
		if err := json.Unmarshal(a.body, &page); err != nil {
			return fmt.Errorf("work list: %w", err)
		}
		if items, err = decodeWork(page.Data); err != nil {
			return err
		}
		upTo = len(items)
		v["work"] = json.RawMessage(a.body)
	} else {
		sc, failed, err := scanWork(get, path, q, p.Outcome, backward)
		if err != nil {
			return err
		}
		if failed != nil {
			v["work"] = bodyOrError(*failed)
			return nil
		}
		items, upTo = sc.items, sc.kept
		v["work"] = sc.page
		v["scanned"] = sc.read
	}

	rows := make(map[string]workRow, len(items))
	for _, it := range items {
		var r workRow
		r.Outcome, r.ExitCode = outcomeOf(it.Metadata)
		rows[it.ID] = r
	}
	if len(items) > 0 {
		if err := d.workers(ctx, p, first, upTo, items, rows); err != nil {
			return err
		}
		if err := sessionTitles(get, items, rows); err != nil {
			return err
		}
	}
	v["rows"] = rows
	return nil
}

func decodeWork(data []json.RawMessage) ([]listedWork, error) {
	items := make([]listedWork, len(data))
	for i, raw := range data {
		if err := json.Unmarshal(raw, &items[i]); err != nil {
			return nil, fmt.Errorf("work list: %w", err)
		}
	}
	return items, nil
}

// scan is a page of a filtered work list.
type scan struct {
	page  apiPage      // the page, ascending, as the API answers a list
	items []listedWork // page.Data, decoded
	read  int          // the items read
	kept  int          // the items read up to the last one kept, in the order of travel
}

// scanWork reads the list in the direction of travel from q's cursor, keeping the items of
// the outcome, until it has a page of them and knows whether there are more, the list
// ends, or it has read workScanPages pages. The page's first_id and last_id bound what was
// read rather than what was kept, so that the pager's cursors continue where the reading
// stopped and skip nothing. failed is set to the API's answer when it was not a list.
func scanWork(get getFunc, path string, q url.Values, outcome string, backward bool) (sc scan, failed *answer, err error) {
	q.Set("limit", strconv.Itoa(workScanLimit))
	var near, far string // the first and the last item read, in the order of travel
	for pages := 0; ; pages++ {
		if pages == workScanPages {
			sc.page.HasMore = true
			break
		}
		a, err := get(path, q)
		if err != nil {
			return sc, nil, err
		}
		if a.status != http.StatusOK {
			return sc, &a, nil
		}
		var got apiPage
		if err := json.Unmarshal(a.body, &got); err != nil {
			return sc, nil, fmt.Errorf("work list: %w", err)
		}
		decoded, err := decodeWork(got.Data)
		if err != nil {
			return sc, nil, err
		}
		for k := range decoded {
			i := k
			if backward {
				i = len(decoded) - 1 - k // the API's page is ascending: read it newest first
			}
			it := decoded[i]
			if o, _ := outcomeOf(it.Metadata); o == outcome {
				if len(sc.items) == workLimit {
					// One more than a page: there are more, and this page ends before it.
					sc.page.HasMore = true
					return sc.finish(near, far, backward), nil, nil
				}
				sc.page.Data = append(sc.page.Data, got.Data[i])
				sc.items = append(sc.items, it)
				sc.kept = sc.read + 1
			}
			sc.read++
			if near == "" {
				near = it.ID
			}
			far = it.ID
		}
		if !got.HasMore || len(decoded) == 0 {
			break
		}
		if backward {
			q.Set("before_id", decoded[0].ID)
		} else {
			q.Set("after_id", decoded[len(decoded)-1].ID)
		}
	}
	return sc.finish(near, far, backward), nil, nil
}

// finish puts the page in the API's order and bounds it by what was read.
func (sc scan) finish(near, far string, backward bool) scan {
	if backward {
		slices.Reverse(sc.page.Data)
		slices.Reverse(sc.items)
	}
	if sc.page.Data == nil {
		sc.page.Data = []json.RawMessage{}
	}
	if near != "" {
		if backward {
			sc.page.FirstID, sc.page.LastID = &far, &near
		} else {
			sc.page.FirstID, sc.page.LastID = &near, &far
		}
	}
	return sc
}

// workers fills in each row's worker from the store, which has it and the API object does
// not. The API has just listed these items to this token; one store read of the same
// list (the first page's cursor and state filter, as many items as were read) finds them
// all. An item that changed meanwhile and is not in it is read by itself.
func (d *Handler) workers(ctx context.Context, p viewParams, first store.Page, upTo int, items []listedWork, rows map[string]workRow) error {
	states, err := work.ParseStates(p.State)
	if err != nil {
		return nil // the API accepted it; a store that would not has nothing to add
	}
	first.Limit = max(upTo, 1)
	listed, _, err := d.store.ListWork(ctx, p.Env, first, states)
	if err != nil {
		return fmt.Errorf("list work: %w", err)
	}
	byID := make(map[string]work.Item, len(listed))
	for _, it := range listed {
		byID[it.ID] = it
	}
	for _, li := range items {
		it, ok := byID[li.ID]
		if !ok {
			it, err = d.store.GetWork(ctx, p.Env, li.ID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("get work %s: %w", li.ID, err)
			}
		}
		r := rows[li.ID]
		r.Worker = it.AckedBy
		if r.Worker == "" {
			r.Worker = it.DeliveredTo
		}
		rows[li.ID] = r
	}
	return nil
}

// sessionTitles fills in each row's session title, asking the API once per distinct
// session: it decides whether this token may see the session.
func sessionTitles(get getFunc, items []listedWork, rows map[string]workRow) error {
	titles := map[string]*string{}
	for _, it := range items {
		sid := it.Data.ID
		title, done := titles[sid]
		if !done {
			a, err := get("/sessions/"+url.PathEscape(sid), nil)
			if err != nil {
				return err
			}
			if a.status == http.StatusOK {
				var s struct {
					Title string `json:"title"`
				}
				if err := json.Unmarshal(a.body, &s); err != nil {
					return fmt.Errorf("session %s: %w", sid, err)
				}
				title = &s.Title
			}
			titles[sid] = title
		}
		r := rows[it.ID]
		r.SessionTitle = title
		rows[it.ID] = r
	}
	return nil
}
