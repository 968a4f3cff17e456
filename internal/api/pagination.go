package api

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
)

const (
	defaultLimit = 20
	maxLimit     = 100
	// maxLongLimit is the largest limit of the event list (API.md §3) and of every list
	// in the Anthropic dialect (§8).
	maxLongLimit = 1000
)

// pageParams reads limit, page, before_id and after_id (API.md §1 "Pagination") for a
// list of the call's dialect: limit up to 100, in the Anthropic dialect up to 1000.
func (c *call) pageParams(prefix string) (store.Page, error) {
	if c.anthropic() {
		return pageParams(c.r.URL.Query(), prefix, maxLongLimit)
	}
	return pageParams(c.r.URL.Query(), prefix, maxLimit)
}

// pageParams reads limit, page, before_id and after_id (API.md §1 "Pagination"); a limit
// above maxLimit is maxLimit. Cursors are IDs of the listed resource (prefix); page is the
// opaque next_page of an earlier answer, which is its last ID, so it reads as after_id.
func pageParams(q url.Values, prefix string, maxLimit int) (store.Page, error) {
	p := store.Page{Limit: defaultLimit}
	if q.Has("limit") {
		// Plain digits only, like every integer parameter: strconv alone would also take
		// a sign ("+5").
		v := q.Get("limit")
		n, err := strconv.Atoi(v)
		if errors.Is(err, strconv.ErrRange) {
			n, err = maxLimit, nil // a positive integer too large for int is above the maximum too
		}
		if v == "" || strings.Trim(v, "0123456789") != "" || err != nil || n <= 0 {
			return p, errInvalid("limit", "limit must be a positive integer")
		}
		p.Limit = min(n, maxLimit)
	}
	var cursors []string
	for _, name := range []string{"page", "before_id", "after_id"} {
		if q.Has(name) {
			cursors = append(cursors, name)
		}
	}
	if len(cursors) > 1 {
		return p, errInvalid(cursors[1], "Give at most one of page, before_id and after_id.")
	}
	if len(cursors) == 1 {
		name := cursors[0]
		v := q.Get(name)
		if !id.Valid(prefix, v) {
			return p, errInvalid(name, "%s must be an ID of the listed resource (%s_…).", name, prefix)
		}
		if name == "before_id" {
			p.BeforeID = v
		} else {
			p.AfterID = v
		}
	}
	return p, nil
}

// listPage is the answer of every list.
type listPage[T any] struct {
	Data     []T     `json:"data"`
	FirstID  *string `json:"first_id"`
	LastID   *string `json:"last_id"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

// newPage builds a list answer. next_page is last_id when a page has more in its direction
// of travel (forward, or down for a descending page), and always null on an ascending
// before_id page (continue backwards with before_id=<first_id>).
func newPage[R any, T any](rows []R, hasMore bool, p store.Page, idOf func(R) string, enc func(R) T) listPage[T] {
	out := listPage[T]{Data: make([]T, 0, len(rows)), HasMore: hasMore}
	for _, r := range rows {
		out.Data = append(out.Data, enc(r))
	}
	if len(rows) > 0 {
		first, last := idOf(rows[0]), idOf(rows[len(rows)-1])
		out.FirstID, out.LastID = &first, &last
		if hasMore && (p.BeforeID == "" || p.Desc) {
			out.NextPage = &last
		}
	}
	return out
}

// orderParam reads order=asc|desc (API.md §3's event list) into p: desc lists newest
// first, and its only cursor is page, which continues downwards (the next_page of a
// descending page is its last, lowest, ID). before_id and after_id name a direction of
// their own, so they do not combine with desc.
func orderParam(q url.Values, p *store.Page) error {
	if !q.Has("order") {
		return nil
	}
	switch q.Get("order") {
	case "asc":
		return nil
	case "desc":
	default:
		return errInvalid("order", "order must be asc or desc.")
	}
	for _, name := range []string{"before_id", "after_id"} {
		if q.Has(name) {
			return errInvalid(name, "%s cannot be combined with order=desc; continue a descending list with page.", name)
		}
	}
	p.Desc = true
	p.BeforeID, p.AfterID = p.AfterID, "" // page: below the cursor
	return nil
}

// boolParam reads an optional true/false query parameter.
func boolParam(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	switch q.Get(name) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errInvalid(name, "%s must be true or false.", name)
}
