package client

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"
)

// ListParams are the pagination parameters every list takes (API.md §1). Zero values are
// not sent. At most one of Page, BeforeID and AfterID may be set (the server answers 400
// otherwise).
type ListParams struct {
	// Limit is the page size: 0 means the server's default (20); above 100 reads as 100.
	Limit int
	// Page is the NextPage of an earlier answer.
	Page string
	// BeforeID asks for the Limit items just before this ID, still in ascending order.
	BeforeID string
	// AfterID asks for the items just after this ID.
	AfterID string
}

func (p ListParams) values() url.Values {
	q := url.Values{}
	if p.Limit != 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Page != "" {
		q.Set("page", p.Page)
	}
	if p.BeforeID != "" {
		q.Set("before_id", p.BeforeID)
	}
	if p.AfterID != "" {
		q.Set("after_id", p.AfterID)
	}
	return q
}

// Page is one page of a list, in ascending ID (= creation) order. The cursors are "" where
// the server sent null: an ID is never empty.
type Page[T any] struct {
	Data    []T    `json:"data"`
	FirstID string `json:"first_id"`
	LastID  string `json:"last_id"`
	// HasMore says whether more items exist in the direction of travel: after LastID for
	// a first page, a Page or an AfterID request; before FirstID for a BeforeID request.
	HasMore bool `json:"has_more"`
	// NextPage is the Page cursor of the next forward page, "" when there is none. It is
	// always "" on a BeforeID page: continue backwards with BeforeID = FirstID.
	NextPage string `json:"next_page"`
}

// pages iterates over the items of every page from first on, following next_page. It
// yields an error once and stops when a request fails, and stops when the caller breaks.
// A BeforeID request yields its one page, since next_page is always null there.
func pages[T any](ctx context.Context, first ListParams, list func(context.Context, ListParams) (*Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		p := first
		for {
			page, err := list(ctx, p)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, v := range page.Data {
				if !yield(v, nil) {
					return
				}
			}
			if !page.HasMore || page.NextPage == "" {
				return
			}
			if page.NextPage == p.Page {
				// Following it would loop for ever.
				yield(zero, fmt.Errorf("berth: list: next_page %q repeats the page just read", page.NextPage))
				return
			}
			p = ListParams{Limit: p.Limit, Page: page.NextPage}
		}
	}
}
