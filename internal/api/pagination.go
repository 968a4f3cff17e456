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
	// maxEventLimit is the event history's larger page (API.md §3): the official workers
	// read a session's history with limit=1000.
	maxEventLimit = 1000
	// maxAnthropicLimit is the largest page of every list in the Anthropic dialect
	// (API.md §8).
	maxAnthropicLimit = 1000
)

// pageParams reads limit, page, before_id and after_id (API.md §1 "Pagination") for a
// list of the call's dialect: limit up to 100, in the Anthropic dialect (API.md §8) up
// to 1000.
func (c *call) pageParams(prefix string) (store.Page, error) {
	if c.anthropic() {
		return pageParamsUpTo(c.r.URL.Query(), prefix, maxAnthropicLimit)
	}
	return pageParams(c.r.URL.Query(), prefix)
}

// pageParams reads limit, page, before_id and after_id (API.md §1 "Pagination"). Cursors
// are IDs of the listed resource (prefix); page is the opaque next_page of an earlier
// answer, which is its last ID, so it reads as after_id.
func pageParams(q url.Values, prefix string) (store.Page, error) {
	return pageParamsUpTo(q, prefix, maxLimit)
}

// pageParamsUpTo is pageParams for a list whose limit goes up to max.
func pageParamsUpTo(q url.Values, prefix string, max int) (store.Page, error) {
	p := store.Page{Limit: defaultLimit}
	if q.Has("limit") {
		// Plain digits only, like every integer parameter: strconv alone would also take
		// a sign ("+5").
		v := q.Get("limit")
		n, err := strconv.Atoi(v)
		if errors.Is(err, strconv.ErrRange) {
			n, err = max, nil // a positive integer too large for int is above max too
		}
		if v == "" || strings.Trim(v, "0123456789") != "" || err != nil || n <= 0 {
			return p, errInvalid("limit", "limit must be a positive integer")
		}
		p.Limit = min(n, max)
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

// newPage builds a list answer. next_page is last_id when a forward page has more, and
// always null on a before_id page (continue backwards with before_id=<first_id>).
func newPage[R any, T any](rows []R, hasMore bool, p store.Page, idOf func(R) string, enc func(R) T) listPage[T] {
	out := listPage[T]{Data: make([]T, 0, len(rows)), HasMore: hasMore}
	for _, r := range rows {
		out.Data = append(out.Data, enc(r))
	}
	if len(rows) > 0 {
		first, last := idOf(rows[0]), idOf(rows[len(rows)-1])
		out.FirstID, out.LastID = &first, &last
		if hasMore && p.BeforeID == "" {
			out.NextPage = &last
		}
	}
	return out
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
